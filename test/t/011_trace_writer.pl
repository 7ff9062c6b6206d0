# The trace audit cannot be starved (issue 13, item 1): with r1.log_traces and
# r1.trace_autonomous on, an unprivileged user fills every free background
# worker slot with a parallel query, and in other sessions runs traced calls
# that roll back.  The static r1 trace writers keep their slots: every call
# returns its result only once its trace is committed, so every rolled-back
# call is in r1.traces, and no call falls back to its own transaction.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use Test::More;

plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)' unless $ENV{R1_TEST_MODEL};

ok(wait_ready(), 'engine is ready');
is(query(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'r1 trace writer'}) <= 2, 1,
	'at most 2 trace writers are connected (r1.trace_writers = 2)');
query('DROP ROLE IF EXISTS regress_mallory');
query('CREATE ROLE regress_mallory LOGIN IN ROLE r1_user');
query('DROP TABLE IF EXISTS r1_big');
query('CREATE TABLE r1_big AS SELECT g FROM generate_series(1, 200000) g');
query('ALTER TABLE r1_big SET (parallel_workers = 16)');
query('GRANT SELECT ON r1_big TO regress_mallory');
query('DELETE FROM r1.traces');
set_conf('r1.log_traces = on');

# the attack: a parallel scan that asks for more workers than there are free slots
my $attack = q{SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
	SET max_parallel_workers_per_gather = 16; SET max_parallel_workers = 16;
	EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
	SELECT count(*) FROM r1_big WHERE pg_sleep(0.0004) IS NOT NULL};
my $a;
{
	local $ENV{PGUSER} = 'regress_mallory';
	$a = bg($attack, 'r1_attack');
}
ok(wait_for('parallel workers', sub { query(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'}) >= 1 }, 30),
	'the parallel query runs');

# 12 traced calls at once, each rolled back, by an unprivileged role
my @s;
{
	local $ENV{PGUSER} = 'regress_mallory';
	@s = map { bg(qq{SET client_min_messages = warning; BEGIN; SELECT boxed FROM r1_reason('starved $_', temperature => 0, max_tokens => 64); ROLLBACK;},
		"r1_starved_$_") } 1 .. 12;
}
my ($ok, $warned) = (0, 0);
for (@s)
{
	my $rc = bg_finish($_);
	$ok++ if $rc == 0 && $_->{out} eq '42';
	$warned++ if $_->{err} =~ /WARNING/;
	diag("traced call: rc $rc, out $_->{out}, err $_->{err}") if $rc != 0 || $_->{err} ne '';
}
my $still = query(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'parallel worker'});
is($ok, 12, '12 traced calls return their result while the slots are full');
is($warned, 0, 'no call falls back to its own transaction with a WARNING');
is(query(q{SELECT count(DISTINCT prompt) FROM r1.traces WHERE prompt LIKE 'starved %'}), 12,
	'all 12 are in r1.traces although every transaction rolled back');
is(query(q{SELECT string_agg(DISTINCT role || '/' || session_role, ',') FROM r1.traces WHERE prompt LIKE 'starved %'}),
	'regress_mallory/regress_mallory', 'recorded as the caller');

bg_finish($a);
like($a->{out}, qr/Workers Launched: \d+/, 'the attack ran in parallel');
my ($planned) = $a->{out} =~ /Workers Planned: (\d+)/;
my ($launched) = $a->{out} =~ /Workers Launched: (\d+)/;
cmp_ok($launched, '<', $planned, "it asked for more workers than were free ($launched of $planned launched): the dynamic slots were full");
cmp_ok($still, '>', 0, "and it still held them when the traced calls had finished ($still parallel workers)");

# a traced call in a read-only transaction is recorded too
is(query(q{BEGIN READ ONLY; SELECT boxed FROM r1_reason('read only', temperature => 0, max_tokens => 64); COMMIT;}, user => 'regress_mallory'),
	'42', 'a traced call in a read-only transaction returns');
is(query(q{SELECT count(*) FROM r1.traces WHERE prompt = 'read only'}), 1, 'and is recorded');

# the writers serve every database: one with the extension, one without (the call fails, with no result)
query('DROP DATABASE IF EXISTS r1_tw_other');
query('CREATE DATABASE r1_tw_other');
query('CREATE EXTENSION r1_pg', db => 'r1_tw_other');
is(query(q{BEGIN; SELECT boxed FROM r1_reason('other db', temperature => 0, max_tokens => 64); ROLLBACK;}, db => 'r1_tw_other'),
	'42', 'a call in another database');
is(query(q{SELECT count(*) FROM r1.traces WHERE prompt = 'other db'}, db => 'r1_tw_other'), 1, 'is recorded there');
ok(wait_for('writer left', sub { query(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'r1 trace writer' AND datname = 'r1_tw_other'}) == 0 }, 10),
	'an idle writer leaves the database');
query('DROP DATABASE r1_tw_other');
pass('so it can be dropped');

reset_conf('r1.log_traces');
query('DROP TABLE r1_big');
query('DROP ROLE regress_mallory');
done_testing();
