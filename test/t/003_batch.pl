# r1_reason_many against the running throwaway cluster of
# test/run-extension-tests.sh: every prompt is in the engine at once, a
# cancel or statement_timeout ends the call and frees every request, and a
# batch larger than r1.max_queued still completes (a window of requests).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(start finish run timeout);
use Time::HiRes qw(time sleep);
use Test::More;

$ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $psql = ($ENV{R1_PGBIN} // '/usr/lib/postgresql/15/bin') . '/psql';

# ten prompts that never stop on their own (debug_ignore_eos, huge max_tokens)
my $LONG_MANY = q{SET r1.debug_ignore_eos = on;
  SELECT count(*) FROM r1_reason_many(array_fill('Count to infinity.'::text, ARRAY[10]),
                                      max_tokens => 1000000, temperature => 0)};

ok(wait_ready(), 'engine is ready');

# ---- pg_cancel_backend during r1_reason_many
{
	my ($out, $err) = ('', '');
	local $ENV{PGAPPNAME} = 'r1_many_cancel';
	my $h = start([$psql, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-c', $LONG_MANY], '>', \$out, '2>', \$err,
		timeout(180));
	ok(wait_for('all ten prompts in the engine', sub { active() >= 10 }, 20),
		'all ten prompts are in the engine at once');
	my $pid = query(q{SELECT pid FROM pg_stat_activity WHERE application_name = 'r1_many_cancel' AND wait_event = 'Extension'});
	ok($pid, "the session waits in the extension (pid $pid)");
	my $t0 = time;
	query("SELECT pg_cancel_backend($pid)") if $pid;
	eval { finish($h) };
	like($err, qr/canceling statement due to user request/, 'pg_cancel_backend cancels r1_reason_many');
	ok(wait_for('requests freed', sub { active() == 0 }, 5),
		sprintf('the engine dropped all ten requests (%.2fs)', time - $t0));
}

# ---- statement_timeout during r1_reason_many
{
	my $t0 = time;
	my ($rc, $out, $err) = psql("SET statement_timeout = '1500ms'; $LONG_MANY");
	my $dt = time - $t0;
	isnt($rc, 0, 'statement_timeout ends r1_reason_many');
	like($err, qr/canceling statement due to statement timeout/, 'with the timeout error');
	cmp_ok($dt, '<', 6, sprintf('within the timeout (%.2fs)', $dt));
	ok(wait_for('requests freed', sub { active() == 0 }, 5), 'the engine dropped every request');
}

# ---- a LIMIT that stops reading early closes the rest
{
	my $n = query(q{SET r1.debug_ignore_eos = on;
		SELECT count(*) FROM (SELECT r1_reason_many(ARRAY['a', 'b', 'c', 'd'], max_tokens => 20, temperature => 0) LIMIT 1) s});
	is($n, 1, 'LIMIT 1 returns one row');
	ok(wait_for('requests freed', sub { active() == 0 }, 5), 'the unread requests are cancelled');
}

# ---- more prompts than the engine accepts at once: a window, never a failure
{
	my $host = status('host_pid');
	query(q{ALTER SYSTEM SET r1.max_queued = 4});
	query(q{SELECT pg_reload_conf()});
	ok(wait_for('engine restarted with max_queued 4',
		sub { status('coalesce(host_pid, 0)') ne $host && status('state') eq 'ready' }, 60),
		'engine restarted with r1.max_queued = 4');
	my $r = query(q{SELECT count(*) || '|' || count(DISTINCT ord) || '|' || count(*) FILTER (WHERE boxed = '42' AND error IS NULL)
		FROM r1_reason_many(ARRAY(SELECT 'q' || i FROM generate_series(1, 30) i), temperature => 0, max_tokens => 40)});
	is($r, '30|30|30', '30 prompts through a queue of 4: all answered');
	$host = status('host_pid');
	query(q{ALTER SYSTEM RESET r1.max_queued});
	query(q{SELECT pg_reload_conf()});
	ok(wait_for('engine restarted',
		sub { status('coalesce(host_pid, 0)') ne $host && status('state') eq 'ready' }, 60),
		'engine ready again with the default queue');
}

done_testing();
