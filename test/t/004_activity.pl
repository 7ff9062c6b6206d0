# r1.stat_activity, r1.stats (cancellations, timeouts, terminated backends)
# and the weights checksum, against the running throwaway cluster that
# test/run-extension-tests.sh starts (PGHOST/PGPORT/PGUSER in the
# environment, R1_TEST_MODEL the demo model).
#
# Long generations use r1.debug_ignore_eos: the demo model then keeps
# generating until max_tokens or the end of the context.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(start finish run timeout);
use Time::HiRes qw(time sleep);
use Test::More;

my $model = $ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $psql = ($ENV{R1_PGBIN} // '/usr/lib/postgresql/15/bin') . '/psql';

my $LONG = q{SET r1.debug_ignore_eos = on;
  SELECT finish_reason FROM r1_reason('Count to infinity.', max_tokens => 1000000, temperature => 0)};

sub pid_of
{
	my ($name) = @_;
	my $pid = '';
	wait_for("backend $name", sub {
		$pid = query("SELECT pid FROM pg_stat_activity WHERE application_name = '$name'");
		return $pid ne '';
	});
	return $pid;
}

# one row of r1.stat_activity as a hash (empty when none)
sub activity
{
	my ($pid, $role) = @_;
	my $sql = ($role ? "SET ROLE $role; " : '') .
	  "SELECT coalesce(state, '-'), coalesce(queue_position, -1), coalesce(prompt_tokens, -1), " .
	  "coalesce(completion_tokens, -1), coalesce(tokens_per_s, -1), role, database, prompt, " .
	  "started_at <= now() FROM r1.stat_activity WHERE pid = $pid";
	my @f = split /\|/, query($sql);
	return {} unless @f;
	my %r;
	@r{qw(state position prompt_tokens tokens tps role database prompt started_ok)} = @f;
	return \%r;
}

sub in_flight { return query('SELECT count(*) FROM r1.stat_activity'); }

sub rstat { return query("SELECT $_[0] FROM r1.stats"); }

ok(wait_ready(), 'engine is ready');

# ---- the weights checksum: r1_status() agrees with `r1 checksum`
{
	ok(wait_for('weights checksum', sub { query('SELECT weights_checksum IS NOT NULL FROM r1_status()') eq 't' }),
		'the host computed the weights checksum');
	my $tool = `bin/r1 checksum --model '$model'`;
	my ($want) = $tool =~ /"weights_checksum":\s*"([0-9a-f]{16})"/;
	ok(defined $want, "r1 checksum prints a checksum: $tool");
	is(query('SELECT weights_checksum FROM r1_status()'), $want // '', 'r1_status() reports the same checksum as r1 checksum');
}

query('SELECT r1_stats_reset()');
is(in_flight(), 0, 'nothing in flight at first');

# ---- a running request, seen from another session
query("DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'regress_r1_watcher') THEN CREATE ROLE regress_r1_watcher IN ROLE r1_user; END IF; END \$\$");
{
	my $s = bg($LONG, 'r1_act_long');
	my $pid = pid_of('r1_act_long');
	my $a1 = {};
	ok(wait_for('running request with tokens', sub { $a1 = activity($pid); ($a1->{state} // '') eq 'running' && $a1->{tokens} > 0 }),
		'r1.stat_activity shows the request running');
	sleep 0.5;
	my $a2 = activity($pid);
	is($a2->{state}, 'running', 'still running');
	cmp_ok($a2->{tokens}, '>', $a1->{tokens}, "tokens so far increase ($a1->{tokens} -> $a2->{tokens})");
	cmp_ok($a2->{tps}, '>', 0, "tokens/s reported ($a2->{tps})");
	cmp_ok($a2->{prompt_tokens}, '>', 0, 'prompt tokens reported');
	is($a2->{position}, -1, 'a running request has no queue position');
	is($a2->{role}, 'postgres', 'role');
	is($a2->{database}, 'postgres', 'database');
	is($a2->{prompt}, 'Count to infinity.', 'prompt');
	is($a2->{started_ok}, 't', 'started_at');

	# an r1_user of another role sees that it runs, not what
	my $w = activity($pid, 'regress_r1_watcher');
	is($w->{role}, 'postgres', 'another role sees the row');
	is($w->{prompt}, '<insufficient privilege>', 'but not the prompt');
	is($w->{state}, '-', 'nor the state');
	is($w->{tokens}, -1, 'nor the progress');

	query("SELECT pg_cancel_backend($pid)");
	bg_finish($s);
	like($s->{err}, qr/canceling statement due to user request/, 'cancelled');
	ok(wait_for('empty activity', sub { in_flight() == 0 }), 'r1.stat_activity is empty after the request ended');
}

# ---- queued behind a full batch: state queued, queue position
{
	ok(restart_host_with(sub { query('ALTER SYSTEM SET r1.max_seqs = 1'); query('SELECT pg_reload_conf()') }),
		'engine back with r1.max_seqs = 1');
	my $s1 = bg($LONG, 'r1_act_first');
	my $p1 = pid_of('r1_act_first');
	ok(wait_for('first running', sub { (activity($p1)->{state} // '') eq 'running' }), 'first request runs');
	my $s2 = bg($LONG, 'r1_act_second');
	my $p2 = pid_of('r1_act_second');
	my $a = {};
	ok(wait_for('second queued', sub { $a = activity($p2); ($a->{state} // '') eq 'queued' }), 'second request is queued');
	is($a->{position}, 1, 'at queue position 1');
	is($a->{tokens}, 0, 'with no tokens yet');
	is(in_flight(), 2, 'two requests in flight');
	query("SELECT pg_cancel_backend($p1)");
	ok(wait_for('second running', sub { (activity($p2)->{state} // '') eq 'running' }), 'the queued request runs when the slot frees');
	# a terminated backend's slot is freed and counted as a cancellation
	query("SELECT pg_terminate_backend($p2)");
	bg_finish($s1);
	bg_finish($s2);
	ok(wait_for('empty activity', sub { in_flight() == 0 }), 'empty again after cancel and terminate');
	ok(restart_host_with(sub { query('ALTER SYSTEM RESET r1.max_seqs'); query('SELECT pg_reload_conf()') }),
		'engine back with the default batch');
}

# ---- a statement_timeout counts as a timeout
{
	my ($rc, $out, $err) = psql("SET statement_timeout = '1s'; $LONG");
	isnt($rc, 0, 'statement_timeout ends a long generation');
	like($err, qr/statement timeout/, 'with the timeout error');
}

# ---- what r1.stats counted
{
	my ($rc) = psql(q{SELECT r1_reason('What is 6*7?', temperature => 0)});
	is($rc, 0, 'one completed call');
	is(rstat('requests'), 5, 'requests: 3 cancelled or terminated, 1 timed out, 1 completed');
	is(rstat('cancellations'), 3, 'cancellations (pg_cancel_backend twice, pg_terminate_backend once)');
	is(rstat('timeouts'), 1, 'timeouts');
	is(rstat('completed'), 1, 'completed');
	is(rstat('errors'), 0, 'errors');
	is(rstat('completion_tokens'), 22, 'completion tokens of the completed call only');
	is(in_flight(), 0, 'nothing in flight at the end');
}

query('DROP ROLE regress_r1_watcher');
done_testing();
