# Graceful reloads: changing an engine setting while calls run.
# - a call running when r1.model changes finishes on the old model, with its
#   whole result; r1_status() says "loading" at once; a call made during the
#   switch waits and runs on the new model;
# - a job item running during the switch completes with no attempt charged;
# - past r1.reload_timeout the old host is stopped and its call fails with
#   SQLSTATE 57000 and a hint that says what happened;
# - the host's stderr reaches the server log through ereport (timestamped,
#   with log_line_prefix), and the host's command line names the cluster.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use File::Copy qw(copy);
use Time::HiRes qw(time sleep);
use Test::More;

my $model = $ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $tmp = $ENV{R1_TEST_TMP};
my $log = $ENV{R1_SERVER_LOG} // "$tmp/server.log";

ok(wait_ready(), 'engine is ready');
my $expected = query($GREEDY);

# a second copy of the model under another path: "another model"
my $other = "$tmp/model_reload";
mkdir $other;
opendir(my $d, $model) or die;
for my $f (grep { -f "$model/$_" } readdir $d) { copy("$model/$f", "$other/$f") or die; chmod 0644, "$other/$f"; }
closedir $d;
chmod 0755, $other;

my $LONGCALL = q{SET r1.debug_ignore_eos = on;
  SELECT finish_reason || ' ' || completion_tokens FROM r1_reason('Count.', max_tokens => 400, temperature => 0)};

# ---- a call in flight finishes on the old model; r1_status says loading at once
{
	my $old_pid = status('host_pid');
	my $s = bg($LONGCALL, 'r1_reload_a');
	backend_pid('r1_reload_a');
	ok(wait_for('the call is running', sub { query(q{SELECT count(*) FROM r1.stat_activity WHERE state = 'running'}) >= 1 }, 30),
		'a long call runs');
	set_conf("r1.model = '$other'");
	ok(wait_for('loading', sub { status('state') eq 'loading' }, 5), 'r1_status() says loading at once');
	like(status('reason'), qr/Switching to model/, 'and says why');
	# a call made during the switch waits for the new model
	my $w = bg(q{SELECT format('%s|%s|%s|%s', think, answer, boxed, finish_reason)
	  FROM r1_reason('What is 6*7?', temperature => 0)}, 'r1_reload_b');
	is(bg_finish($s), 0, 'the running call completes') or diag($s->{err});
	is($s->{out}, 'length 400', 'with its whole result (400 tokens, finish_reason length)');
	is(bg_finish($w), 0, 'the call made during the switch completes') or diag($w->{err});
	is($w->{out}, $expected, 'with the expected result');
	ok(wait_for('serving the new model', sub { status('state') eq 'ready' && status('model_path') eq $other }, 60),
		'the new model is served');
	isnt(status('host_pid'), $old_pid, 'by a new host');
	is(status('host_restarts'), 0, 'a reload is not counted as a restart');
}

# ---- past r1.reload_timeout: a clear error, SQLSTATE 57000
{
	set_conf("r1.reload_timeout = '300ms'");
	ok(wait_for('setting', sub { query('SHOW r1.reload_timeout') eq '300ms' }, 10), 'r1.reload_timeout = 300ms');
	my $s = bg(q{DO $$ DECLARE st text; m text; h text; BEGIN
	  SET r1.debug_ignore_eos = on;
	  PERFORM r1_reason('Count.', max_tokens => 1000000, temperature => 0);
	EXCEPTION WHEN OTHERS THEN
	  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, h = PG_EXCEPTION_HINT;
	  RAISE EXCEPTION 'failed: % | % | HINT: %', st, m, h;
	END $$}, 'r1_reload_c');
	backend_pid('r1_reload_c');
	ok(wait_for('the call is running', sub { query(q{SELECT count(*) FROM r1.stat_activity WHERE state = 'running'}) >= 1 }, 30),
		'an endless call runs');
	set_conf("r1.model = '$model'");
	isnt(bg_finish($s), 0, 'the endless call fails when the old host is stopped');
	like($s->{err}, qr/57000/, 'with SQLSTATE 57000');
	like($s->{err}, qr/stopped for a configuration change/, 'saying the engine was stopped for a configuration change');
	like($s->{err}, qr/HINT:.*new model/, 'and a hint that matches');
	ok(wait_for('serving', sub { status('state') eq 'ready' && status('model_path') eq $model }, 60), 'the model is served again');
	reset_conf('r1.reload_timeout');
}

# ---- a job item running during a reload: completed, no attempt charged
{
	my $jobs_db = 'r1_jobs';
	my ($rc) = psql('SELECT 1', db => $jobs_db);
	SKIP: {
		skip 'no r1_jobs database', 3 if $rc != 0;
		query('CREATE EXTENSION IF NOT EXISTS r1_pg', db => $jobs_db);
		my $id = query(q{SET r1.debug_ignore_eos = on; SELECT r1_submit('Count.', max_tokens => 300, temperature => 0)}, db => $jobs_db);
		ok(wait_for('the item runs', sub { query("SELECT state FROM r1.job_items WHERE job_id = $id", db => $jobs_db) eq 'running' }, 60),
			'a job item runs');
		set_conf("r1.model = '$other'");
		ok(wait_for('job done', sub { query("SELECT state FROM r1.jobs WHERE id = $id", db => $jobs_db) eq 'done' }, 120),
			'the job finishes');
		is(query("SELECT attempts || ' ' || finish_reason || ' ' || completion_tokens FROM r1.job_items WHERE job_id = $id", db => $jobs_db),
			'1 length 300', 'in one attempt, with its whole result');
		ok(wait_for('serving', sub { status('state') eq 'ready' && status('model_path') eq $other }, 60), 'new model served');
		reset_conf('r1.model');
		ok(wait_for('serving', sub { status('state') eq 'ready' && status('model_path') eq $model }, 60), 'back to the test model');
	}
}

# ---- a job item that can never succeed fails at once; ms has microsecond precision
{
	my $jobs_db = 'r1_jobs';
	my ($rc) = psql('SELECT 1', db => $jobs_db);
	SKIP: {
		skip 'no r1_jobs database', 2 if $rc != 0;
		my $id = query(q{SELECT r1_submit(repeat('word ', 6000), max_tokens => 10)}, db => $jobs_db);
		ok(wait_for('job failed', sub { query("SELECT state FROM r1.jobs WHERE id = $id", db => $jobs_db) eq 'failed' }, 60),
			'a job whose prompt never fits the context fails');
		is(query("SELECT attempts FROM r1.job_items WHERE job_id = $id", db => $jobs_db), 1,
			'after one attempt, not r1.job_max_attempts');
	}
	is(query(q{SELECT ms = round(ms::numeric, 3)::float8 AND ms > 0 FROM r1_reason('What is 6*7?', temperature => 0)}), 't',
		'ms is rounded to the microsecond');
}

# ---- the engine socket is not in the data directory: base backups never meet it
{
	my $data = $ENV{R1_PGDATA};
	ok(!-e "$data/r1_engine.sock", 'no engine socket in the data directory');
	my $port = query('SHOW port');
	my $sockdir = (split /,/, query('SHOW unix_socket_directories'))[0];
	ok(-S "$sockdir/.r1_engine.$port", "the engine socket is $sockdir/.r1_engine.$port");
	mkdir "$tmp/basebackup";
	system('chown', 'postgres:', "$tmp/basebackup") if $> == 0;
	my ($rc, $out) = as_server("$ENV{R1_PGBIN}/pg_basebackup", '-D', "$tmp/basebackup", '-X', 'none',
		'-h', $sockdir, '-p', $port, '-U', 'postgres', '--no-sync');
	is($rc, 0, 'pg_basebackup runs') or diag($out);
	unlike($out, qr/skipping special file/, 'without "skipping special file"');
	system('rm', '-rf', "$tmp/basebackup");
}

# ---- logs and the process title
{
	my $host = status('host_pid');
	open(my $fh, '<', "/proc/$host/cmdline") or die;
	my $cmd = do { local $/; <$fh> };
	close $fh;
	like($cmd, qr/\0--cluster\0[^\0]+/, 'the host command line names its cluster');
	open($fh, '<', $log) or die "$log: $!";
	my @lines = grep { /r1 engine host \(pid \d+\): / } <$fh>;
	close $fh;
	ok(@lines > 0, 'host lines are in the server log, relayed') or diag("no relayed lines in $log");
	like($lines[0] // '', qr/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/, 'with the server\'s timestamp (log_line_prefix)');
}

# ---- engine settings of the CPU backend reach the host; r1_status says which kernels run
{
	like(status('cpu_path'), qr/^(generic|avx2|avx512\w*)$/, 'r1_status().cpu_path names the CPU kernels: ' . status('cpu_path'));
	ok(restart_host_with(sub { set_conf("r1.kv_cache_dtype = 'f32'"); set_conf("r1.cpu_precision = 'exact'") }),
		'r1.kv_cache_dtype and r1.cpu_precision restart the host');
	ok(wait_for('host with the new settings', sub {
		my $host = status('host_pid');
		open(my $fh, '<', "/proc/$host/cmdline") or return 0;
		my $cmd = do { local $/; <$fh> };
		return $cmd =~ /\0--kv-cache-dtype\0f32\0/ && $cmd =~ /\0--cpu-precision\0exact\0/;
	}, 60), 'the host runs with --kv-cache-dtype f32 --cpu-precision exact');
	is(query($GREEDY), $expected, 'same greedy result');
	ok(restart_host_with(sub { reset_conf('r1.kv_cache_dtype', 'r1.cpu_precision') }), 'back to the defaults');
}

# ---- a crash and a failed load are WARNINGs in the server log
sub log_has
{
	my ($re) = @_;
	open(my $fh, '<', $log) or die;
	my $found = grep { /$re/ } <$fh>;
	close $fh;
	return $found;
}
{
	my $host = status('host_pid');
	kill('KILL', $host);
	ok(wait_for('restarted', sub { status('state') eq 'ready' && status('host_pid') != $host }, 60), 'a killed host is restarted');
	ok(log_has(qr/WARNING:  r1 engine: engine host \(pid $host\) was terminated by signal 9/), 'the crash is a WARNING');
	set_conf("r1.model = '$tmp/no_such_model'");
	ok(wait_for('failed', sub { status('state') eq 'failed' }, 60), 'a missing model fails to load');
	ok(log_has(qr/WARNING:  r1 engine: the engine host could not load model "\Q$tmp\E\/no_such_model"/), 'the failed load is a WARNING');
	reset_conf('r1.model');
	ok(wait_for('serving', sub { status('state') eq 'ready' && status('model_path') eq $model }, 60), 'back to the test model');
}

done_testing();
