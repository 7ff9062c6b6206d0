# Limits against the running test cluster: per-role daily token quotas
# (r1.role_quota, counted in shared memory), and text in a LATIN1 database:
# prompts converted to UTF-8 for the engine, output converted back, and a
# clear error (22P05) for output the database encoding cannot hold.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(run);
use Time::HiRes qw(time);
use Test::More;

my $model = $ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $tmp = $ENV{R1_TEST_TMP};
my $r1 = $ENV{R1_BIN} // "$FindBin::Bin/../../bin/r1";

ok(wait_ready(), 'engine is ready');
my $expected = query($GREEDY);
my $T = query(q{SELECT prompt_tokens + completion_tokens FROM r1_reason('What is 6*7?', temperature => 0)});
cmp_ok($T, '>', 0, "a greedy call costs $T tokens");

# SQLSTATE of a statement, run as $user
sub sqlstate
{
	my ($sql, %opt) = @_;
	my (undef, $out, $err) = psql(qq{DO \$\$ BEGIN PERFORM ($sql); RAISE NOTICE 'sqlstate none';
	  EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'sqlstate %', SQLSTATE; END \$\$}, %opt);
	return $err =~ /sqlstate (\w+)/ ? $1 : "?: $err";
}

# wait until new sessions see a reloaded setting
sub wait_setting
{
	my ($name, $want) = @_;
	return wait_for("$name = $want", sub { query("SHOW $name") eq $want }, 10);
}

# ---- per-role daily quotas
{
	query(q{DROP ROLE IF EXISTS regress_alice, regress_bob, regress_carol, regress_aud});
	query(q{CREATE ROLE regress_bob NOLOGIN IN ROLE r1_user});
	query(q{CREATE ROLE regress_alice LOGIN IN ROLE r1_user, regress_bob});
	query(q{CREATE ROLE regress_carol LOGIN IN ROLE r1_user});
	# a call reserves prompt bytes + 16 (chat template) + max_tokens before it runs
	my $M = 64;
	my $Q = qq{SELECT format('%s|%s|%s|%s', think, answer, boxed, finish_reason)
	  FROM r1_reason('What is 6*7?', temperature => 0, max_tokens => $M)};
	my $E = length('What is 6*7?') + 16 + $M;
	is(query($Q), $expected, "max_tokens $M gives the same greedy result");
	my $quota = 2 * $T + $E;
	set_conf(qq{r1.role_quota = 'regress_alice=$quota'});
	ok(wait_setting('r1.role_quota', "regress_alice=$quota"), 'r1.role_quota reloaded');

	is(query($Q, user => 'regress_alice'), $expected, 'alice: first call under the quota');
	is(query(q{SELECT format('%s|%s|%s', daily_quota, tokens_used, tokens_left) FROM r1_quota_usage()}, user => 'regress_alice'),
		"$quota|$T|" . ($quota - $T), 'r1_quota_usage() shows her usage');
	is(query($Q, user => 'regress_alice'), $expected, 'second call');
	is(query($Q, user => 'regress_alice'), $expected, "third call (its $E-token reservation still fits)");
	my $used = 3 * $T;
	my ($rc, $out, $err) = psql($Q, user => 'regress_alice');
	isnt($rc, 0, 'fourth call refused: its reservation does not fit');
	like($err, qr/ERROR:  a call that could use $E tokens \(prompt bytes, chat template and max_tokens\) does not fit in what role "regress_alice" has left today: \d+ of $quota/,
		'the error says what the call could cost and what is left');
	like($err, qr/HINT:  Pass a smaller max_tokens/, 'hint');
	is(sqlstate(q{SELECT r1_reason('x')}, user => 'regress_alice'), '53400', 'SQLSTATE 53400');
	cmp_ok(query(q{SELECT tokens_used FROM r1_quota_usage()}, user => 'regress_alice'), '<=', $quota, 'usage never passes the quota');
	is(sqlstate(qq{SELECT r1_reason('x', max_tokens => $quota)}, user => 'regress_carol'), 'none', 'carol has no quota');

	# the quota lowered to what she used: used up
	set_conf(qq{r1.role_quota = 'regress_alice=$used'});
	ok(wait_setting('r1.role_quota', "regress_alice=$used"), 'quota lowered to her usage');
	($rc, $out, $err) = psql($GREEDY, user => 'regress_alice');
	like($err, qr/ERROR:  role "regress_alice" has used its daily token quota/, 'quota error');
	like($err, qr/DETAIL:  It has used $used of its $used tokens today \(r1.role_quota\); the quota resets at \d{4}-\d\d-\d\d 00:00:00\+00/,
		'detail: usage, quota and reset time (00:00 UTC)');
	like($err, qr/HINT:  Wait until the quota resets at 00:00 UTC/, 'hint');
	is(sqlstate(q{SELECT r1_reason('x')}, user => 'regress_alice', db => 'postgres'), '53400', 'refused again in another database');
	(undef, $out, $err) = psql("SET ROLE regress_bob; $GREEDY", user => 'regress_alice');
	like($err, qr/has used its daily token quota/, 'SET ROLE does not escape it: the session user is charged');
	is(query($GREEDY, user => 'regress_carol'), $expected, 'an unlisted role is not limited');
	is(query(q{SELECT string_agg(format('%s=%s/%s', role, tokens_used, daily_quota), ',') FROM r1_quota_usage()}),
		"regress_alice=$used/$used", 'superuser sees every row of r1_quota_usage()');
	is(query(q{SELECT count(*) FROM r1_quota_usage()}, user => 'regress_carol'), '0', 'carol sees only her own (none)');

	# one r1_reason_many call cannot overshoot (issue 13: quota 60, 40 prompts used 1148)
	my $q2 = $used + 3 * $E;
	set_conf(qq{r1.role_quota = 'regress_alice=$q2'});
	ok(wait_setting('r1.role_quota', "regress_alice=$q2"), "quota $q2: room for 3 reservations");
	my $rows = query(qq{SELECT count(*) FILTER (WHERE error IS NULL) || '|' || count(*) FILTER (WHERE error LIKE '53400: %')
		FROM r1_reason_many(array_fill('What is 6*7?'::text, ARRAY[40]), max_tokens => $M, temperature => 0)}, user => 'regress_alice');
	my ($good, $refused) = split /\|/, $rows;
	cmp_ok($good, '>=', 3, "r1_reason_many of 40 prompts: $good answered (reservations settle as prompts finish)");
	is($good + $refused, 40, "the other $refused get 53400 error rows");
	cmp_ok(query(q{SELECT tokens_used FROM r1_quota_usage()}, user => 'regress_alice'), '<=', $q2, 'usage stays within the quota');
	my $q2b = query(q{SELECT tokens_used FROM r1_quota_usage()}, user => 'regress_alice') + $E - 1;
	set_conf(qq{r1.role_quota = 'regress_alice=$q2b'});
	ok(wait_setting('r1.role_quota', "regress_alice=$q2b"), "quota $q2b: one token short of a reservation");
	is(query(q{SELECT count(*) FROM r1_reason_many(array_fill('What is 6*7?'::text, ARRAY[10000]), max_tokens => 64) WHERE error LIKE '53400: %'},
		user => 'regress_alice'), 10000, 'a 10,000-prompt array: every prompt refused (53400 rows), none sent');
	($rc, $out, $err) = psql(qq{SELECT * FROM r1_reason_many(array_fill('x'::text, ARRAY[50]), max_tokens => $M, strict => true)}, user => 'regress_alice');
	like($err, qr/ERROR:  a call that could use/, 'strict => true raises the quota error');

	# concurrent calls cannot overshoot either: reservations are shared
	my $q3 = query(q{SELECT tokens_used FROM r1_quota_usage()}, user => 'regress_alice') + 4 * $E;
	set_conf(qq{r1.role_quota = 'regress_alice=$q3'});
	ok(wait_setting('r1.role_quota', "regress_alice=$q3"), "quota $q3: room for 4 reservations");
	my @c;
	{
		local $ENV{PGUSER} = 'regress_alice';
		@c = map { bg($Q, "r1_quota_c$_") } 1 .. 8;
	}
	my $cok = 0;
	for (@c) { bg_finish($_); $cok++ if $_->{out} eq $expected; }
	cmp_ok($cok, '>=', 4, "8 concurrent calls: $cok succeed");
	cmp_ok(query(q{SELECT tokens_used FROM r1_quota_usage()}, user => 'regress_alice'), '<=', $q3, 'and usage stays within the quota');

	# "*" covers everybody else but superusers; 0 means no calls
	set_conf(qq{r1.role_quota = 'regress_alice=1000000, *=0'});
	ok(wait_setting('r1.role_quota', 'regress_alice=1000000, *=0'), 'reloaded with *=0');
	my $before1 = query(q{SELECT tokens_used FROM r1_quota_usage()}, user => 'regress_alice');
	is(query($GREEDY, user => 'regress_alice'), $expected, 'a raised quota lets alice call again');
	is(query(q{SELECT tokens_used FROM r1_quota_usage()}, user => 'regress_alice'), $before1 + $T, 'usage kept across reloads');
	is(sqlstate(q{SELECT r1_reason('x')}, user => 'regress_carol'), '53400', '*=0: carol is refused');
	is(query($GREEDY), $expected, '*=0 does not apply to superusers');

	# concurrent calls are all counted
	my $before = query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'});
	my @s;
	{
		local $ENV{PGUSER} = 'regress_alice';
		@s = map { bg($GREEDY, "r1_quota_$_") } 1 .. 8;
	}
	$good = 0;
	for my $s (@s) { bg_finish($s); $good++ if $s->{out} eq $expected; }
	is($good, 8, '8 concurrent calls of alice succeed');
	is(query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'}), $before + 8 * $T,
		'and each is charged exactly once');

	# job items are charged to the session user that submitted them, as they finish
	query(q{CREATE EXTENSION IF NOT EXISTS r1_pg}, db => 'r1_jobs');
	my $before_job = query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'});
	my $job = query(q{SET ROLE regress_bob; SELECT r1_submit_query($$SELECT k, 'What is 6*7?' FROM generate_series(1, 2) k$$, temperature => 0, max_tokens => 64)},
		db => 'r1_jobs', user => 'regress_alice');
	ok(wait_for('job done', sub { query("SELECT state FROM r1.jobs WHERE id = $job", db => 'r1_jobs') eq 'done' }, 60),
		"alice's job of 2 items (submitted after SET ROLE regress_bob) is done");
	is(query("SELECT created_by || '|' || session_role FROM r1.jobs WHERE id = $job", db => 'r1_jobs'), 'regress_bob|regress_alice',
		'r1.jobs records both roles');
	is(query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'}), $before_job + 2 * $T,
		'job items are charged to the session user, not the SET ROLE');

	# jobs hold the quota too: items that do not fit wait in the queue (issue 13: 1,200 became 4,268)
	my $uj = query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'});
	my $qj = $uj + 3 * $E;
	set_conf(qq{r1.role_quota = 'regress_alice=$qj'});
	ok(wait_setting('r1.role_quota', "regress_alice=$qj"), "quota $qj: room for 3 item reservations");
	$job = query(q{SELECT r1_submit_query($$SELECT k, 'What is 6*7?' FROM generate_series(1, 20) k$$, temperature => 0, max_tokens => 64)},
		db => 'r1_jobs', user => 'regress_alice');
	ok(wait_for('items wait', sub { query("SELECT count(*) FROM r1.job_items WHERE job_id = $job AND state = 'queued' AND last_error LIKE 'waiting for the quota: %'",
		db => 'r1_jobs') >= 1 && query("SELECT count(*) FROM r1.job_items WHERE job_id = $job AND state = 'running'", db => 'r1_jobs') == 0 }, 60),
		'the items that do not fit stay queued; last_error says they wait for the quota');
	# settled: the count of done items stays the same for 7 s (idle workers look every 5 s)
	my ($dj, $since) = (-1, time);
	wait_for('no more items run', sub {
		my $d = query("SELECT count(*) FROM r1.job_items WHERE job_id = $job AND state = 'done'", db => 'r1_jobs');
		($dj, $since) = ($d, time) if $d != $dj;
		return time - $since >= 7;
	}, 60);
	cmp_ok($dj, '>=', 2, "$dj items ran");
	cmp_ok($dj, '<', 20, 'not all of them');
	cmp_ok(query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'}), '<=', $qj, 'usage stays within the quota');
	is(query("SELECT count(*) FROM r1.job_items WHERE job_id = $job AND (state = 'failed' OR attempts > 1)", db => 'r1_jobs'), 0,
		'waiting items neither fail nor use attempts');
	set_conf(qq{r1.role_quota = 'regress_alice=1000000'});
	ok(wait_for('job done', sub { query("SELECT state FROM r1.jobs WHERE id = $job", db => 'r1_jobs') eq 'done' }, 60),
		'a raised quota lets the job finish');
	query(q{DROP EXTENSION r1_pg}, db => 'r1_jobs');

	# r1_replay runs under the caller's limits (issue 13: quota 0, limit 100, 2,500 tokens)
	query(q{CREATE ROLE regress_aud LOGIN IN ROLE r1_auditor});
	query(q{ALTER ROLE regress_aud SET r1.max_tokens_per_call = 100});
	query(q{DELETE FROM r1.traces});
	query(q{SET r1.log_traces = on; SET r1.debug_ignore_eos = on;
		SELECT 1 FROM r1_reason('Count to infinity.', max_tokens => 300, temperature => 0)});
	query(q{SET r1.log_traces = on; SET r1.debug_ignore_eos = on;
		SELECT 1 FROM r1_reason('Count to ten.', max_tokens => 50, temperature => 0)});
	my $long = query(q{SELECT id FROM r1.traces WHERE prompt = 'Count to infinity.'});
	my $short = query(q{SELECT id FROM r1.traces WHERE prompt = 'Count to ten.'});
	is(sqlstate("SELECT r1_replay($long)", user => 'regress_aud'), '54000', 'replay of max_tokens 300 over the limit 100: 54000');
	is(query("SELECT completion_tokens || '|' || reproduced || '|' || (note LIKE '%ignore_eos, which was not replayed%') FROM r1_replay($short)", user => 'regress_aud'),
		query("SELECT least(completion_tokens, 50) FROM r1_reason('Count to ten.', max_tokens => 50, temperature => 0)") . '|false|true',
		'ignore_eos is not replayed for an auditor, and the note says so');
	is(query("SELECT completion_tokens || '|' || reproduced FROM r1_replay($short)"), '50|true', 'a superuser replays it exactly');
	set_conf(qq{r1.role_quota = 'regress_aud=0'});
	ok(wait_setting('r1.role_quota', 'regress_aud=0'), 'auditor quota 0');
	is(sqlstate("SELECT r1_replay($short)", user => 'regress_aud'), '53400', 'replay with quota 0: 53400');
	query(q{DELETE FROM r1.traces});

	# usage survives a restart (written to pg_stat/r1_quota.stat)
	set_conf(qq{r1.role_quota = 'regress_alice=1000000'});
	ok(wait_setting('r1.role_quota', 'regress_alice=1000000'), 'quota for the restart');
	my $ub = query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'});
	my ($prc, $pout) = as_server("$ENV{R1_PGBIN}/pg_ctl", '-D', $ENV{R1_PGDATA}, '-l', $ENV{R1_SERVER_LOG}, '-w', '-m', 'fast', 'restart');
	is($prc, 0, 'pg_ctl restart') or diag($pout);
	ok(wait_ready(), 'engine ready after the restart');
	is(query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'}), $ub, "usage after the restart: $ub");

	reset_conf('r1.role_quota');
	ok(wait_setting('r1.role_quota', ''), 'r1.role_quota reset');
	is(query($GREEDY, user => 'regress_carol'), $expected, 'no quota: carol calls again');
	query(q{DROP ROLE regress_alice, regress_bob, regress_carol, regress_aud});
}

# ---- a LATIN1 database
{
	query("DROP DATABASE IF EXISTS r1_latin1");
	query("CREATE DATABASE r1_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
	query("CREATE EXTENSION r1_pg", db => 'r1_latin1');
	my $e_latin1 = q{convert_from('\xe9'::bytea, 'LATIN1')};
	my $ids = query(q{SELECT r1_tokenize(U&'caf\00e9 cr\00e8me br\00fbl\00e9e')});
	like($ids, qr/^\{\d+(,\d+)+\}$/, "UTF8 database: tokens $ids");
	is(query(q{SELECT r1_tokenize(convert_from('\x636166e92063728e8d65206272fb6ce965'::bytea, 'LATIN1'))}, db => 'r1_latin1'),
		query(q{SELECT r1_tokenize(convert_from('\x636166e92063728e8d65206272fb6ce965'::bytea, 'LATIN1'))}),
		'LATIN1 database: r1_tokenize gets the same ids as in UTF8') ;
	is(query("SELECT r1_tokenize($e_latin1)", db => 'r1_latin1'), query(q{SELECT r1_tokenize(U&'\00e9')}),
		'LATIN1 e-acute tokenized as UTF-8 U+00E9');
	is(query("SELECT r1_count_tokens(repeat($e_latin1, 5))", db => 'r1_latin1'), query(q{SELECT r1_count_tokens(repeat(U&'\00e9', 5))}),
		'r1_count_tokens agrees');
	is(query("SELECT format('%s|%s|%s|%s', think, answer, boxed, finish_reason) FROM r1_reason('What is 6*7? ' || $e_latin1, temperature => 0)", db => 'r1_latin1'),
		query(q{SELECT format('%s|%s|%s|%s', think, answer, boxed, finish_reason) FROM r1_reason(U&'What is 6*7? \00e9', temperature => 0)}),
		'r1_reason with a LATIN1 prompt: same result as in UTF8');

	# models whose output has characters LATIN1 has (é, à) and lacks (中)
	my $m_latin = "$tmp/model-latin";
	my $m_cjk = "$tmp/model-cjk";
	run([$r1, 'demo-model', '--out', $m_latin, '--text', "Voil\x{c3}\x{a0}, caf\x{c3}\x{a9} ok.\n</think>\n\nThe answer is \$\\boxed{\x{c3}\x{a9}}\$."], '>', \my $o1) or die;
	run([$r1, 'demo-model', '--out', $m_cjk, '--text', "Oui, \x{e4}\x{b8}\x{ad} ok.\n</think>\n\nThe answer is \$\\boxed{x}\$."], '>', \my $o2) or die;
	system('chmod', '-R', 'a+rX', $m_latin, $m_cjk);

	set_conf("r1.model = '$m_latin'");
	ok(wait_for('latin model', sub { status('state') eq 'ready' && status('model_path') eq $m_latin }, 30), 'serving a model that writes e-acute');
	is(query(q{SELECT encode(convert_to(think || '|' || boxed, 'LATIN1'), 'hex') FROM r1_reason('hi', temperature => 0)}, db => 'r1_latin1'),
		unpack('H*', "Voil\xe0, caf\xe9 ok.|\xe9"), 'LATIN1 database: output converted to LATIN1 bytes');

	set_conf("r1.model = '$m_cjk'");
	ok(wait_for('cjk model', sub { status('state') eq 'ready' && status('model_path') eq $m_cjk }, 30), 'serving a model that writes U+4E2D');
	is(query(q{SELECT think FROM r1_reason('hi', temperature => 0)}), "Oui, \x{e4}\x{b8}\x{ad} ok.", 'UTF8 database gets it');
	my ($rc, $out, $err) = psql(q{SELECT think FROM r1_reason('hi', temperature => 0)}, db => 'r1_latin1');
	isnt($rc, 0, 'LATIN1 database: the call fails');
	like($err, qr/ERROR:  the model's output has a character that encoding "LATIN1" cannot represent/, 'with a clear error');
	like($err, qr/HINT:  Call the model from a UTF8 database/, 'and a hint');
	is(sqlstate(q{SELECT r1_reason('hi', temperature => 0)}, db => 'r1_latin1'), '22P05', 'SQLSTATE 22P05');
	is(query(q{SELECT 1}, db => 'r1_latin1'), '1', 'the session is fine afterwards');

	reset_conf('r1.model');
	ok(wait_for('demo model', sub { status('state') eq 'ready' && status('model_path') eq $model }, 30), 'back to the demo model');
	is(query($GREEDY), $expected, 'serving it');
	query("DROP DATABASE r1_latin1");
}

check_no_orphans('limits');
done_testing();
