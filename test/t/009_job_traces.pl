# With r1.log_traces = on, every job item the job workers run is recorded in
# r1.traces (source 'job', in the transaction that writes its result), as the
# role that submitted the job, and replays exactly; and 12 concurrent traced
# calls, each rolled back, are all recorded by the autonomous trace writers.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use Time::HiRes qw(sleep);
use Test::More;

plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)' unless $ENV{R1_TEST_MODEL};

my $db = 'r1_jobs';
ok(wait_ready(), 'engine is ready');
query('DROP ROLE IF EXISTS regress_submitter');
query('CREATE ROLE regress_submitter LOGIN IN ROLE r1_user');
query('CREATE EXTENSION IF NOT EXISTS r1_pg', db => $db);
set_conf('r1.log_traces = on');
sleep(3);    # the job workers read the new setting between items

my $job = query(q{SELECT r1_submit_query($$SELECT k, format('Item %s: what is 6*7?', k) FROM generate_series(1, 2) k$$,
	temperature => 0.7, seed => 9)}, db => $db, user => 'regress_submitter');
ok(wait_for('job done', sub { query("SELECT state FROM r1.jobs WHERE id = $job", db => $db) eq 'done' }, 60),
	'a traced job of 2 items is done');
is(query(q{SELECT string_agg(format('%s|%s|%s|%s', source, role, session_role, seed), ',' ORDER BY prompt)
	FROM r1.traces WHERE source = 'job'}, db => $db),
	'job|regress_submitter|regress_submitter|9,job|regress_submitter|regress_submitter|9',
	'one trace per item, as the submitter, with the seed');
is(query("SELECT count(*) FROM r1.traces t JOIN r1.job_items i ON i.prompt = t.prompt
	WHERE i.job_id = $job AND t.think = i.think AND t.answer IS NOT DISTINCT FROM i.answer", db => $db),
	2, 'each trace holds its item\'s result');
reset_conf('r1.log_traces');
is(query(q{SELECT string_agg(r.reproduced::text, ',') FROM r1.traces t, LATERAL r1_replay(t.id) r
	WHERE t.source = 'job'}, db => $db), 'true,true', 'and replays exactly');

# ---- many traced calls at once: more than the free worker slots, every trace written
{
	my $call = q{SET r1.log_traces = on; BEGIN; SELECT boxed FROM r1_reason('concurrent %d', temperature => 0); ROLLBACK;};
	my @s = map { bg(sprintf($call, $_), "r1_traced_$_", db => $db) } 1 .. 12;
	my $ok = 0;
	for (@s)
	{
		my $rc = bg_finish($_);
		$ok++ if $rc == 0 && $_->{err} !~ /ERROR/;
		diag("traced call: rc $rc, $_->{err}") if $rc != 0 || $_->{err} =~ /ERROR/;
	}
	is($ok, 12, '12 concurrent traced calls run without an error');
	is(query(q{SELECT count(DISTINCT prompt) FROM r1.traces WHERE prompt LIKE 'concurrent %'}, db => $db), 12,
		'and all 12 are audited although every transaction rolled back');
}

query('DROP EXTENSION r1_pg', db => $db);
query('DROP ROLE regress_submitter');
done_testing();
