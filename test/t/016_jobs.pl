# Durable jobs under faults, against the throwaway cluster that
# test/run-extension-tests.sh starts (r1.jobs_database = 'r1_jobs'):
#  - NOTIFY r1_jobs when a job finishes;
#  - pg_ctl -m immediate stop in the middle of a job, restart: every item is
#    done exactly once, items finished before the crash are not rewritten;
#  - the engine host killed (SIGKILL) mid-job: the items are retried;
#  - a job worker terminated mid-item: its item goes back to the queue.
#
# Items are long generations of the demo model with r1.debug_ignore_eos (a
# superuser-only test setting, recorded in the job at submit time), so all
# results of a job are the same greedy trace of exactly max_tokens tokens.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(start pump finish run timeout);
use POSIX ();
use Time::HiRes qw(time sleep);
use Test::More;

$ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $bindir = $ENV{R1_PGBIN} // '/usr/lib/postgresql/15/bin';
my $psql = "$bindir/psql";
my $pgdata = $ENV{R1_PGDATA} or die 'R1_PGDATA not set';
my $log = $ENV{R1_SERVER_LOG} or die 'R1_SERVER_LOG not set';
my $DB = 'r1_jobs';
$ENV{PGDATABASE} = $DB;	# R1Test's psql() runs in the jobs database unless told otherwise

# pg_ctl as the server's OS user, without the test lock's descriptor
sub pg_ctl
{
	my @cmd = ("$bindir/pg_ctl", '-D', $pgdata, @_);
	unshift @cmd, 'runuser', '-u', 'postgres', '--' if $> == 0;
	my ($out, $err) = ('', '');
	run(\@cmd, '<', \undef, '>', \$out, '2>', \$err, init => sub { chdir '/'; POSIX::close(9); });
	return $? >> 8;
}

sub engine_ready
{
	return wait_for('engine ready', sub { query('SELECT state FROM r1_status()') eq 'ready' }, $_[0] // 60);
}

sub job_state { return query("SELECT state FROM r1.jobs WHERE id = $_[0]"); }

sub wait_job
{
	my ($id, $secs) = @_;
	return wait_for("job $id finished", sub { job_state($id) =~ /^(done|failed|cancelled)$/ }, $secs // 120);
}

sub counts
{
	my ($id) = @_;
	my %c = map { split /\|/ } split /\n/,
	  query("SELECT state, count(*) FROM r1.job_items WHERE job_id = $id GROUP BY 1");
	$c{$_} //= 0 for qw(queued running done failed cancelled);
	return \%c;
}

# A session that LISTENs on r1_jobs; poll() returns what psql printed since.
sub listener
{
	my %l = (in => '', out => '', err => '');
	$l{h} = start([$psql, '-XAtq', '-d', $DB], '<', \$l{in}, '>', \$l{out}, '2>', \$l{err}, timeout(600));
	$l{in} .= "LISTEN r1_jobs;\nSELECT 'listening';\n";
	pump($l{h}) until $l{out} =~ /listening/;
	return \%l;
}

sub listener_poll
{
	my ($l) = @_;
	my $tag = 'poll' . int(rand(1e9));
	$l->{in} .= "SELECT '$tag';\n";
	pump($l->{h}) until $l->{out} =~ /$tag/;
	return $l->{out};
}

sub listener_end
{
	my ($l) = @_;
	$l->{in} .= "\\q\n";
	eval { finish($l->{h}) };
}

sub notified { return $_[0] =~ /Asynchronous notification "r1_jobs" with payload "$_[1]" received/; }

# a job of $n identical long greedy items
sub submit_long
{
	my ($n, $tokens) = @_;
	return query("SET r1.debug_ignore_eos = on; SELECT r1_submit_query("
		  . "'SELECT g, ''Count to infinity.'' FROM generate_series(1, $n) g',"
		  . " temperature => 0, max_tokens => $tokens)");
}

# every item done once, with the same full-length trace
sub check_all_done
{
	my ($id, $n, $tokens, $what) = @_;
	is(job_state($id), 'done', "$what: job done");
	is(query("SELECT count(*) FILTER (WHERE state = 'done') || '/' || count(*) FROM r1.job_items WHERE job_id = $id"),
		"$n/$n", "$what: all $n items done, one row each");
	is(query("SELECT count(*) FROM r1.job_items WHERE job_id = $id AND (attempts < 1 OR finished_at IS NULL OR runner_pid IS NOT NULL)"),
		0, "$what: attempts >= 1, finished, lease released");
	is(query("SELECT count(DISTINCT md5(think)) || '|' || min(completion_tokens) || '|' || max(completion_tokens)"
			  . " || '|' || string_agg(DISTINCT finish_reason, ',') FROM r1.job_items WHERE job_id = $id"),
		"1|$tokens|$tokens|length", "$what: every result is the same $tokens-token greedy trace");
	is(query("SELECT finished_at >= (SELECT max(finished_at) FROM r1.job_items WHERE job_id = $id) FROM r1.jobs WHERE id = $id"),
		't', "$what: job finished after its last item");
}

query('CREATE EXTENSION IF NOT EXISTS r1_pg');
ok(engine_ready(), 'engine is ready');
ok(wait_for('job workers', sub { query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'r1 job worker'") == 4 }, 30),
	'4 job workers connected to r1_jobs');

# ---- NOTIFY r1_jobs when a job finishes
{
	my $l = listener();
	my $id = query(q{SELECT r1_submit_query('SELECT g, ''What is 6*7?'' FROM generate_series(1, 3) g', temperature => 0)});
	ok(wait_job($id, 60), "small job $id finishes");
	is(query("SELECT string_agg(boxed, ',' ORDER BY item_no) FROM r1.job_items WHERE job_id = $id"), '42,42,42',
		'with the greedy answers');
	ok(wait_for('notification', sub { notified(listener_poll($l), $id) }, 10), "NOTIFY r1_jobs '$id' received");
	listener_end($l);
}

# ---- immediate shutdown in the middle of a job
{
	my ($n, $tokens) = (40, 150);
	my $id = submit_long($n, $tokens);
	ok(wait_for('some done, some running', sub { my $c = counts($id); $c->{done} >= 6 && $c->{running} >= 1 }, 120),
		'some items done, some running: ' . join(' ', map { "$_=" . counts($id)->{$_} } qw(done running queued)));
	my $before = query("SELECT string_agg(item_no || '#' || finished_at || '#' || attempts || '#' || md5(think), ',' ORDER BY item_no)"
		  . " FROM r1.job_items WHERE job_id = $id AND state = 'done'");
	my @done_before = split /,/, $before;
	is(pg_ctl('-m', 'immediate', '-w', 'stop'), 0, 'pg_ctl -m immediate stop');
	is(pg_ctl('-l', $log, '-w', '-t', '60', 'start'), 0, 'server restarted');
	ok(engine_ready(), 'engine ready after the restart');
	my $l = listener();
	my $c = counts($id);
	cmp_ok($c->{done}, '>=', scalar @done_before, "after the restart: done=$c->{done} running=$c->{running} queued=$c->{queued}");
	ok(wait_job($id, 240), "job $id finishes after the restart");
	check_all_done($id, $n, $tokens, 'crash');
	my $after = query("SELECT string_agg(item_no || '#' || finished_at || '#' || attempts || '#' || md5(think), ',' ORDER BY item_no)"
		  . " FROM r1.job_items WHERE job_id = $id AND item_no = ANY('{" . join(',', map { (split /#/)[0] } @done_before) . "}')");
	is($after, $before, scalar(@done_before) . ' items finished before the crash were not run again or rewritten');
	cmp_ok(query("SELECT count(*) FROM r1.job_items WHERE job_id = $id AND attempts >= 2"
			  . " AND last_error LIKE 'the job worker (pid %) ended during the attempt'"), '>=', 1,
		'items running at the crash were run again (attempts 2, last_error says why)');
	ok(wait_for('notification', sub { notified(listener_poll($l), $id) }, 10), "NOTIFY r1_jobs '$id' after the restart");
	listener_end($l);
	like(slurp_log(), qr/job items of ended workers queued again/, 'the server log says the items were queued again');
}

# ---- the engine host killed during a job
{
	my ($n, $tokens) = (12, 150);
	my $l = listener();
	my $restarts = query('SELECT host_restarts FROM r1_status()');
	my $pm = query('SELECT pg_postmaster_start_time()');
	my $id = submit_long($n, $tokens);
	ok(wait_for('items running in the engine', sub {
		counts($id)->{running} >= 2 && query('SELECT active_requests FROM r1_status()') >= 2 }, 60),
		'items run in the engine');
	my $host = query('SELECT host_pid FROM r1_status()');
	ok(kill('KILL', $host), "SIGKILL to the engine host $host");
	ok(wait_job($id, 240), "job $id finishes");
	check_all_done($id, $n, $tokens, 'host killed');
	cmp_ok(query("SELECT count(*) FROM r1.job_items WHERE job_id = $id AND attempts >= 2"
			  . " AND last_error LIKE 'r1 engine host terminated during the request'"), '>=', 1,
		'the interrupted items were retried (attempts 2, last_error says why)');
	cmp_ok(query('SELECT host_restarts FROM r1_status()'), '>', $restarts, 'the engine host was restarted');
	is(query('SELECT pg_postmaster_start_time()'), $pm, 'no postmaster restart');
	ok(wait_for('notification', sub { notified(listener_poll($l), $id) }, 10), "NOTIFY r1_jobs '$id'");
	listener_end($l);
}

# ---- a job worker terminated during an item
{
	my ($n, $tokens) = (6, 150);
	my $pm = query('SELECT pg_postmaster_start_time()');
	my $id = submit_long($n, $tokens);
	my $pid = '';
	ok(wait_for('a worker runs an item', sub {
		$pid = query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'r1 job worker' AND query LIKE 'r1 job $id item %' LIMIT 1");
		$pid ne '' }, 60), "job worker $pid runs an item");
	query("SELECT pg_terminate_backend($pid)");
	ok(wait_job($id, 240), "job $id finishes");
	check_all_done($id, $n, $tokens, 'worker terminated');
	cmp_ok(query("SELECT count(*) FROM r1.job_items WHERE job_id = $id AND last_error = 'the job worker (pid $pid) ended during the attempt'"),
		'>=', 1, "the item of worker $pid was queued again and done");
	is(query('SELECT pg_postmaster_start_time()'), $pm, 'no postmaster restart');
	ok(wait_for('4 workers again', sub { query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'r1 job worker'") == 4 }, 30),
		'the launcher started a new worker');
}

sub workers { return query("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'r1 job worker'"); }

sub reload_with
{
	my ($setting) = @_;
	query("ALTER SYSTEM SET $setting", db => 'postgres');
	query('SELECT pg_reload_conf()', db => 'postgres');
}

# ---- r1.job_workers and r1.jobs_database take effect on reload
{
	reload_with('r1.job_workers = 0');
	ok(wait_for('workers gone', sub { workers() == 0 }, 30), 'r1.job_workers = 0: the workers exit');
	my $id = query(q{SELECT r1_submit('What is 6*7?', temperature => 0)});
	sleep 1;
	is(job_state($id), 'queued', 'a job submitted meanwhile waits');
	reload_with('r1.job_workers = 2');
	ok(wait_for('2 workers', sub { workers() == 2 }, 30), 'r1.job_workers = 2: two workers');
	ok(wait_job($id, 60), 'and they run the job');
	is(query("SELECT boxed FROM r1.job_items WHERE job_id = $id"), '42', 'with the greedy answer');

	reload_with("r1.jobs_database = ''");
	ok(wait_for('workers gone', sub { workers() == 0 }, 30), "r1.jobs_database = '': no workers");
	my ($rc, $out, $err) = psql(q{SELECT r1_submit('x')});
	like($err, qr/ERROR:  durable jobs are not enabled/, 'r1_submit says jobs are off');
	like($err, qr/HINT:  Run ALTER SYSTEM SET r1.jobs_database = 'r1_jobs'/, 'with a hint to set r1.jobs_database');
	query('ALTER SYSTEM RESET r1.jobs_database', db => 'postgres');
	query('ALTER SYSTEM RESET r1.job_workers', db => 'postgres');
	query('SELECT pg_reload_conf()', db => 'postgres');
	ok(wait_for('4 workers', sub { workers() == 4 }, 30), 'back to 4 workers in r1_jobs');
}

# ---- pg_dump keeps the jobs (pg_extension_config_dump)
{
	my ($out, $err) = ('', '');
	run(["$bindir/pg_dump", '-d', $DB], '>', \$out, '2>', \$err, timeout(60));
	is($? >> 8, 0, 'pg_dump of r1_jobs');
	like($out, qr/^COPY r1\.jobs \(/m, 'dumps the rows of r1.jobs');
	like($out, qr/^COPY r1\.job_items \(/m, 'and of r1.job_items');
	like($out, qr/setval\('r1\.jobs_id_seq'/, 'and the job id sequence');
}

sub slurp_log
{
	open(my $fh, '<', $log) or return '';
	local $/;
	return <$fh>;
}

done_testing();
