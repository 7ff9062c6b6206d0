# Reasoning-aware SQL against generated models: loop detection stops a model
# that repeats itself (finish_reason 'repetition', r1.stats.repetitions, the
# r1.repetition_* settings); voting over a model whose answer depends on the
# seed (r1_reason_vote is reproducible, sample i is r1_reason with seed + i - 1,
# every sample traced, r1_reason_vote_many row ord equals r1_reason_vote with
# seed + (ord - 1) * n).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(run timeout);
use Test::More;

plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)' unless $ENV{R1_TEST_MODEL};

my $r1 = "$FindBin::Bin/../../bin/r1";
my ($out, $err) = ('', '');

sub serve
{
	my ($dir) = @_;
	system('chmod', '-R', 'a+rX', $dir);
	set_conf("r1.model = '$dir'");
	ok(wait_for("$dir is served", sub { status('state') eq 'ready' && status('model_path') eq $dir }, 60),
		"engine serves $dir");
}

# ---- loop detection
my $cyc = "$ENV{R1_TEST_TMP}/cycle-model";
ok(run([$r1, 'demo-model', '--out', $cyc, '--cycle', '--text', ' Wait, let me check that again.'],
	'>', \$out, '2>', \$err), 'a model that repeats its text forever') or diag($err);
serve($cyc);
my $before = query('SELECT repetitions FROM r1.stats');
is(query("SELECT format('%s|%s|%s', finish_reason, completion_tokens, answer IS NULL)
	FROM r1_reason('Check it.', max_tokens => 2000, temperature => 0)"),
	'repetition|256|t', 'r1_reason: the loop is stopped after 256 tokens (the defaults)');
is(query('SELECT repetitions FROM r1.stats'), $before + 1, 'r1.stats counts it');
is(query("SET r1.repetition_max_span = 0;
	SELECT format('%s|%s', finish_reason, completion_tokens) FROM r1_reason('Check it.', max_tokens => 400, temperature => 0)"),
	'length|400', 'r1.repetition_max_span = 0 turns it off');
is(query("SET r1.repetition_min_tokens = 16; SET r1.repetition_min_repeats = 2;
	SELECT format('%s|%s', finish_reason, completion_tokens) FROM r1_reason('Check it.', max_tokens => 400, temperature => 0)"),
	'repetition|16', 'tuned: two copies of the 8-token span');
is(query("SELECT string_agg(format('%s|%s', finish_reason, completion_tokens), ',' ORDER BY ord)
	FROM r1_reason_many(ARRAY['a', 'b'], max_tokens => 2000, temperature => 0.6, seed => 1)"),
	'repetition|256,repetition|256', 'r1_reason_many too');
is(query('SELECT repetitions FROM r1.stats'), $before + 4, 'r1.stats counted every one');
my ($rc, $o, $e) = psql('SET r1.repetition_min_repeats = 1');
ok($rc != 0 && $e =~ /repetition_min_repeats/, 'r1.repetition_min_repeats has a lower bound');
is(query("SET r1.debug_ignore_eos = on;
	SELECT finish_reason FROM r1_reason('Check it.', max_tokens => 300, temperature => 0)"),
	'length', 'a request that ignores EOS runs to max_tokens');

# ---- voting: a model whose boxed answer is 41, 42 or 43 depending on the seed
my $ans = "$ENV{R1_TEST_TMP}/answers-model";
ok(run([$r1, 'demo-model', '--out', $ans, '--answers', '13'], '>', \$out, '2>', \$err),
	'a model whose answer depends on the seed') or diag($err);
serve($ans);
my $p = 'What is 6*7?';
my $vote = "SELECT format('%s|%s|%s|%s|%s|%s', boxed, share, votes, n_boxed, n, answers)
	FROM r1_reason_vote('$p', n => 8, seed => 5)";
my $v1 = query($vote);
like($v1, qr/^4[123]\|[0-9.]+\|\d\|8\|8\|\{4[123](,4[123]){7}\}$/, "r1_reason_vote: $v1");
is(query($vote), $v1, 'the same seed gives the same vote');
isnt(query("SELECT answers FROM r1_reason_vote('$p', n => 8, seed => 105)"),
	query("SELECT answers FROM r1_reason_vote('$p', n => 8, seed => 5)"), 'another seed, other samples');
is(query("SELECT bool_and(a = (SELECT boxed FROM r1_reason('$p', seed => 5 + i - 1)))
	FROM r1_reason_vote('$p', n => 8, seed => 5) v, unnest(v.answers) WITH ORDINALITY AS u(a, i)"),
	't', 'sample i is r1_reason with seed + i - 1');
is(query("SELECT v.votes = (SELECT count(*) FROM unnest(v.answers) a WHERE r1_answers_equal(a, v.boxed))
	AND v.votes = (SELECT max(c) FROM (SELECT count(*) c FROM unnest(v.answers) a GROUP BY a) g)
	AND v.share = v.votes / 8.0 AND v.answer LIKE '%\\boxed{' || v.boxed || '}%'
	AND array_length(v.finish_reasons, 1) = 8
	FROM r1_reason_vote('$p', n => 8, seed => 5) v"), 't',
	'the majority answer, its votes and share, and the answer of a sample that gave it');
is(query("SELECT format('%s|%s|%s', boxed, share, answers) FROM r1_reason_vote('$p', n => 4, temperature => 0)"),
	'41|1|{41,41,41,41}', 'greedy: every sample the same');

# set-based: one statement for a table of problems
is(query("SELECT bool_and(format('%s|%s', m.boxed, m.answers) =
		(SELECT format('%s|%s', boxed, answers) FROM r1_reason_vote(p.q, n => 4, seed => 7 + (m.ord - 1) * 4)))
		AND count(*) = 3
	FROM r1_reason_vote_many(ARRAY['$p', 'Again: $p', 'Once more: $p'], n => 4, seed => 7) m
	JOIN unnest(ARRAY['$p', 'Again: $p', 'Once more: $p']) WITH ORDINALITY AS p(q, ord) ON p.ord = m.ord"),
	't', 'r1_reason_vote_many row ord = r1_reason_vote with seed + (ord - 1) * n');
is(query("SELECT string_agg(format('%s:%s', ord, coalesce(error, 'ok')), ',' ORDER BY ord)
	FROM r1_reason_vote_many(ARRAY['$p', NULL], n => 2, seed => 1)"),
	'1:ok,2:22004: prompt is NULL', 'a NULL prompt is an error row');

# traces: every sample is recorded
query("SET r1.log_traces = on; SELECT r1_reason_vote('$p', n => 3, seed => 42)");
ok(wait_for('three samples traced', sub {
	query("SELECT string_agg(seed::text, ',' ORDER BY seed) FROM r1.traces WHERE source = 'r1_reason_vote'") eq '42,43,44' }, 30),
	'every sample is traced, with its seed');

reset_conf('r1.model');
ok(wait_for('the test model is back', sub { status('state') eq 'ready' && status('model_path') eq $ENV{R1_TEST_MODEL} }, 60),
	'back to the test model');
like(query($GREEDY), qr/\|42\|stop$/, 'and it answers as before');

# ---- a vote reserves every sample against the role's quota: usage never passes it
{
	query(q{DROP ROLE IF EXISTS regress_voter});
	query(q{CREATE ROLE regress_voter LOGIN IN ROLE r1_user});
	set_conf(q{r1.role_quota = 'regress_voter=200'});
	ok(wait_for('quota reloaded', sub { query('SHOW r1.role_quota') eq 'regress_voter=200' }, 10), 'a quota of 200 tokens');
	my ($rc, undef, $err) = psql(q{SELECT boxed FROM r1_reason_vote('What is 6*7?', n => 8, max_tokens => 50, temperature => 0)},
		user => 'regress_voter');
	isnt($rc, 0, 'a vote of 8 samples that cannot all fit fails');
	like($err, qr/quota/, 'saying the quota is the reason');
	cmp_ok(query(q{SELECT tokens_used FROM r1_quota_usage()}, user => 'regress_voter'), '<=', 200,
		'usage stays within the quota');
	reset_conf('r1.role_quota');
	query(q{DROP ROLE regress_voter});
}
done_testing();
