# More fault injection against the running test cluster (see 001_faults.pl
# for cancel, terminate, host crashes, a full queue, a corrupt or missing
# model): an unreadable model directory, model files truncated or replaced
# while the host runs, the host killed while it loads, the KV cache under
# pressure (few slots, a short context, an address-space limit), a backend
# killed with SIGKILL, pg_ctl reload and restart.  After each: a clear error
# or a recovery, no orphan `r1 serve`, nothing left in the engine's queue.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(run);
use File::Copy qw(copy);
use POSIX qw(mkfifo);
use Time::HiRes qw(time sleep);
use Test::More;

my $model = $ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $tmp = $ENV{R1_TEST_TMP};
my $pgdata = $ENV{R1_PGDATA};
my $pgbin = $ENV{R1_PGBIN} // '/usr/lib/postgresql/15/bin';
my $r1 = $ENV{R1_BIN} // "$FindBin::Bin/../../bin/r1";

sub copy_model
{
	my ($from, $to) = @_;
	mkdir $to;
	opendir(my $d, $from) or die "$from: $!";
	for my $f (grep { -f "$from/$_" } readdir $d) { copy("$from/$f", "$to/$f") or die "$f: $!"; chmod 0644, "$to/$f"; }
	closedir $d;
	chmod 0755, $to;
}

sub serving
{
	my ($path, $secs) = @_;
	return wait_for("serving $path", sub { status('state') eq 'ready' && status('model_path') eq $path }, $secs // 30);
}

sub failed_for
{
	my ($path, $secs) = @_;
	return wait_for("failed $path", sub { status('state') eq 'failed' && status('model_path') eq $path }, $secs // 30);
}

# gone, or a zombie nobody reaped yet
sub gone
{
	my ($pid) = @_;
	return 1 unless kill(0, $pid);
	open(my $fh, '<', "/proc/$pid/stat") or return 1;
	my $st = <$fh> // '';
	return $st =~ /^\d+ \(.*\) [ZX] /;
}

sub kill_host
{
	my $host = status('host_pid');
	kill('KILL', $host) if $host;
	wait_for('host gone', sub { gone($host) }, 10);
	return $host;
}

ok(wait_ready(), 'engine is ready');
my $expected = query($GREEDY);
check_no_orphans('start');

# ---- an unreadable model directory; fixed, then a reload recovers
{
	my $dir = "$tmp/unreadable-model";
	copy_model($model, $dir);
	chmod 0000, $dir;
	set_conf("r1.model = '$dir'");
	ok(failed_for($dir), 'chmod 000 model directory: state failed');
	like(status('reason'), qr/[Pp]ermission denied/, 'reason: ' . status('reason'));
	my $t0 = time;
	my ($rc, $out, $err) = psql($GREEDY);
	like($err, qr/ERROR:  r1 engine could not load model "\Q$dir\E"\nDETAIL:  .*[Pp]ermission denied/, 'r1_reason fails with the reason');
	cmp_ok(time - $t0, '<', 2, 'at once');
	chmod 0755, $dir;
	query('SELECT pg_reload_conf()');
	ok(serving($dir), 'after chmod 755 and pg_reload_conf() (no setting changed) the engine loads it');
	is(query($GREEDY), $expected, 'and serves');
	check_no_orphans('unreadable directory');
}

# ---- a missing directory that appears later
{
	my $dir = "$tmp/later-model";
	set_conf("r1.model = '$dir'");
	ok(failed_for($dir), 'missing model directory: state failed');
	like(status('reason'), qr/No such file or directory|cannot open|not found/i, 'reason: ' . status('reason'));
	copy_model($model, $dir);
	query('SELECT pg_reload_conf()');
	ok(serving($dir), 'created + pg_reload_conf(): loaded');
	is(query($GREEDY), $expected, 'and serves');
	check_no_orphans('missing directory');
}

# ---- the weights truncated, then replaced, while the host runs
{
	my $dir = "$tmp/live-model";
	copy_model($model, $dir);
	set_conf("r1.model = '$dir'");
	ok(serving($dir), 'serving a copy of the model');
	my $st = "$dir/model.safetensors";
	ok(-f $st, 'it has model.safetensors');
	truncate($st, 100) or die "truncate: $!";
	my ($rc, $out, $err) = psql($GREEDY);
	ok($rc == 0 ? $out eq $expected : $err =~ /ERROR:  r1 engine/,
		'a call after truncation: the right result or a clear engine error' . ($rc ? " ($err)" : ''));
	ok(wait_for('ready or failed', sub { my $s = status('state'); $s eq 'ready' || $s eq 'failed' }, 30), 'engine settles');
	kill_host() if status('state') eq 'ready';
	ok(failed_for($dir), 'host killed: the restart cannot load the truncated file: state failed');
	my $reason = status('reason');
	like($reason, qr/\S/, "reason: $reason");
	($rc, $out, $err) = psql($GREEDY);
	like($err, qr/ERROR:  r1 engine could not load model "\Q$dir\E"\nDETAIL:  \Q$reason\E/, 'r1_reason reports it');
	like($err, qr/HINT:  Fix the model files/, 'with a hint');
	copy("$model/model.safetensors", $st) or die;
	query('SELECT pg_reload_conf()');
	ok(serving($dir), 'file restored + pg_reload_conf(): recovered');
	is(query($GREEDY), $expected, 'same result as before');
	check_no_orphans('truncated weights');

	# replace the files by another model (rename: the running host keeps the old ones)
	my $other = "$tmp/other-model";
	run([$r1, 'demo-model', '--out', $other, '--text', "Hmm, nine.\n</think>\n\nThe answer is \$\\boxed{9}\$."], '>', \my $o) or die;
	for my $f ('config.json', 'model.safetensors')
	{
		copy("$other/$f", "$dir/$f.new") or die;
		chmod 0644, "$dir/$f.new";
		rename("$dir/$f.new", "$dir/$f") or die;
	}
	is(query($GREEDY), $expected, 'files replaced: the running host still serves the model it loaded');
	my $old = kill_host();
	ok(wait_for('new host', sub { status('state') eq 'ready' && status('host_pid') ne $old }, 30), 'host killed and restarted');
	is(query(q{SELECT boxed FROM r1_reason('What is 6*7?', temperature => 0)}), '9', 'the restarted host serves the new files');
	check_no_orphans('replaced weights');
}

# ---- the host killed while it loads (config.json is a FIFO: loading blocks)
{
	my $dir = "$tmp/slow-model";
	copy_model($model, $dir);
	unlink("$dir/config.json");
	mkfifo("$dir/config.json", 0644) or die "mkfifo: $!";
	set_conf("r1.model = '$dir'");
	ok(wait_for('loading', sub { status('state') eq 'loading' && status('model_path') eq $dir }, 30), 'the host is loading (blocked)');
	my $s = bg($GREEDY, 'r1_during_load');
	# the session needs a moment to connect on a busy machine: wait for it, not a fixed time
	ok(wait_for('the call waiting', sub {
		query(q{SELECT wait_event FROM pg_stat_activity WHERE application_name = 'r1_during_load'}) eq 'Extension' }, 30),
		'a call waits for the load');
	my $host = kill_host();
	ok(failed_for($dir), 'SIGKILL during load: state failed, no restart loop');
	like(status('reason'), qr/terminated by signal 9.*while loading/, 'reason: ' . status('reason'));
	bg_finish($s);
	like($s->{err}, qr/ERROR:  r1 engine could not load model "\Q$dir\E"\nDETAIL:  The engine host was terminated by signal 9/,
		'the waiting call gets the reason');
	is(status('coalesce(host_pid, 0)'), '0', 'no host runs');
	unlink("$dir/config.json");
	copy("$model/config.json", "$dir/config.json") or die;
	chmod 0644, "$dir/config.json";
	query('SELECT pg_reload_conf()');
	ok(serving($dir), 'config.json fixed + pg_reload_conf(): loaded');
	is(query($GREEDY), $expected, 'and serves');
	check_no_orphans('killed during load');
}

reset_conf('r1.model');
ok(serving($model), 'back on the demo model');

# ---- the KV cache under pressure: 2 slots, 64 positions, 10 concurrent calls
{
	set_conf('r1.max_seqs = 2');
	set_conf('r1.max_ctx = 64');
	ok(wait_for('restart', sub { status('state') eq 'ready' && (status('max_ctx') || 0) == 64 }, 30), 'engine with 2 slots of 64 positions');
	my $long = q{SET r1.debug_ignore_eos = on;
	  SELECT format('%s|%s', prompt_tokens + completion_tokens, finish_reason)
	  FROM r1_reason('Count to infinity.', max_tokens => 1000000, temperature => 0)};
	my @l = map { bg($long, "r1_kv_long_$_") } 1 .. 6;
	my @g = map { bg($GREEDY, "r1_kv_greedy_$_") } 1 .. 4;
	my ($lgood, $ggood) = (0, 0);
	for (@l) { bg_finish($_); $lgood++ if $_->{out} eq '64|length'; diag("long: $_->{out} $_->{err}") if $_->{out} ne '64|length'; }
	for (@g) { bg_finish($_); $ggood++ if $_->{out} eq $expected; diag("greedy: $_->{out} $_->{err}") if $_->{out} ne $expected; }
	is($lgood, 6, '6 long calls each end at the context limit (64 tokens, finish_reason length)');
	is($ggood, 4, '4 greedy calls between them get the reference result');
	check_no_orphans('2 slots');

	# an address-space limit on the host: growing the KV cache fails
	reset_conf('r1.max_ctx');
	ok(wait_for('restart', sub { status('state') eq 'ready' && (status('max_ctx') || 0) == 4096 }, 30), 'engine with 4096 positions');
	my $host = status('host_pid');
	my $vm = `awk '/^VmSize/ {print \$2}' /proc/$host/status`;
	chomp $vm;
	# as the host's own user: lowering a limit needs no privilege
	ok((as_server('prlimit', "--pid=$host", '--as=' . (($vm + 2048) * 1024)))[0] == 0,
		"host $host limited to its size + 2 MB of address space ($vm kB)");
	my $big = q{SET r1.debug_ignore_eos = on;
	  SELECT format('%s|%s', completion_tokens, finish_reason)
	  FROM r1_reason('Count to infinity.', max_tokens => 4000, temperature => 0)};
	my @b = map { bg($big, "r1_oom_$_") } 1 .. 2;
	my $cleanly = 0;
	for (@b)
	{
		bg_finish($_);
		note("address-space limit: $_->{out} $_->{err}");
		if ($_->{out} =~ /^\d+\|length$/ || $_->{err} =~ /ERROR:  (r1 engine|out of memory)/) { $cleanly++; }
		else { diag("oom call: $_->{out} $_->{err}"); }
	}
	is($cleanly, 2, 'with the cache out of memory, each call completes or fails with a clear error');
	ok(wait_ready(30), 'the engine is ready afterwards');
	if ((status('host_pid') || 0) == $host)
	{
		kill_host();					# drop the limit
		ok(wait_for('restart', sub { status('state') eq 'ready' && status('host_pid') != $host }, 30), 'restarted without the limit');
	}
	else { pass('the host was replaced'); }
	is(query($GREEDY), $expected, 'and serves the reference result');
	$host = status('host_pid');
	reset_conf('r1.max_seqs');
	ok(wait_for('restart', sub { status('state') eq 'ready' && status('host_pid') != $host }, 30), 'default slots');
	check_no_orphans('address-space limit');
}

# ---- r1.kv_memory: a KV cache too small for everyone at once.  Sequences
# wait, the youngest is preempted and recomputed; every call still gets
# exactly what it gets with an unlimited cache (seeded sampling, batch-invariant
# engine, so that is also what it gets alone).
{
	# the demo model: 1 layer x 1 KV head x 32 x (K, V) x 4 bytes = 256 bytes a position;
	# ten calls of 600 tokens each grow through 256, 512 and 1,024 positions (64, 128, 256 kB):
	# they outgrow 1 MB together, so every sequence waits at some step and some are preempted
	my $call = sub {
		my ($seed) = @_;
		return qq{SET r1.debug_ignore_eos = on;
		  SELECT format('%s|%s|%s', completion_tokens, finish_reason, md5(think))
		  FROM r1_reason('Count to infinity.', max_tokens => 600, temperature => 0.7, seed => $seed)};
	};
	my $run10 = sub {
		my @c = map { bg($call->($_), "r1_kvmem_$_") } 1 .. 10;
		bg_finish($_) for @c;
		return map { $_->{out} . ($_->{err} ? " $_->{err}" : '') } @c;
	};
	my @ref = $run10->();
	is(scalar(grep { /^600\|length\|/ } @ref), 10, "ten concurrent 600-token calls, unlimited cache");
	my $host = status('host_pid');
	# the sizes above are of a float32 cache (r1.kv_cache_dtype's default is f16, half of it)
	query("ALTER SYSTEM SET r1.kv_cache_dtype = 'f32'");
	set_conf("r1.kv_memory = '1MB'");
	ok(wait_for('restart', sub { status('state') eq 'ready' && status('host_pid') != $host }, 30),
		'engine restarted with a 1 MB KV cache');
	my $pre = status('preemptions');
	my @got = $run10->();
	my $same = grep { $got[$_] eq $ref[$_] } 0 .. 9;
	is($same, 10, 'the same ten calls through a 1 MB cache: each result equals the unlimited one');
	diag("kv_memory call $_: '$got[$_]', unlimited: '$ref[$_]'") for grep { $got[$_] ne $ref[$_] } 0 .. 9;
	cmp_ok(status('preemptions'), '>', $pre, 'sequences were preempted and recomputed (r1_status().preemptions)');
	is(active(), 0, 'nothing left in the engine');
	# a prompt that cannot fit even alone (past 4,096 positions the cache would need 2 MB)
	$host = status('host_pid');
	set_conf("r1.max_ctx = 8192");
	ok(wait_for('restart', sub { status('state') eq 'ready' && status('host_pid') != $host }, 30),
		'engine restarted with 8,192 positions a sequence');
	my ($rc, $out, $err) = psql(q{SELECT completion_tokens FROM r1_reason(repeat('hello ', 5000), max_tokens => 10)});
	like($err, qr/KV cache cannot hold this sequence.*r1\.kv_memory/, 'a prompt larger than the whole cache fails clearly');
	is(query($call->(1)), $ref[0], 'and the next call is served');
	$host = status('host_pid');
	reset_conf('r1.kv_memory', 'r1.max_ctx', 'r1.kv_cache_dtype');
	ok(wait_for('restart', sub { status('state') eq 'ready' && (status('host_pid') || 0) != $host && (status('max_ctx') || 0) == 4096 }, 30),
		'no KV limit again');
	check_no_orphans('r1.kv_memory');
}

# ---- pg_ctl reload while a call streams: nothing restarts, the call completes
{
	my $host = status('host_pid');
	my $s = bg(q{SET r1.debug_ignore_eos = on; SELECT completion_tokens FROM r1_reason('x', max_tokens => 2000, temperature => 0)}, 'r1_reload');
	backend_pid('r1_reload');
	my ($rc, $out) = as_server("$pgbin/pg_ctl", '-D', $pgdata, 'reload');
	is($rc, 0, 'pg_ctl reload') or diag($out);
	bg_finish($s);
	is($s->{out}, '2000', 'the call streaming during the reload completes');
	is(status('host_pid'), $host, 'same host (no setting changed)');
	check_no_orphans('pg_ctl reload');
}

# ---- a backend killed with SIGKILL while its call streams: crash recovery
{
	my $pm = query('SELECT pg_postmaster_start_time()');
	my $host = status('host_pid');
	my $s = bg($LONG, 'r1_sigkill');
	my $pid = backend_pid('r1_sigkill');
	ok(wait_for('running', sub { active() >= 1 }, 10), 'long call runs');
	kill('KILL', $pid);
	bg_finish($s);
	ok(wait_for('server back', sub { my ($rc) = psql('SELECT 1'); $rc == 0 }, 60), 'server back after crash recovery');
	ok(wait_ready(60), 'engine ready again (worker restarted by the postmaster)');
	ok(wait_for("old host gone", sub { gone($host) }, 10), "old host $host is gone");
	is(query($GREEDY), $expected, 'serves the reference result');
	is(query('SELECT pg_postmaster_start_time()'), $pm, 'the postmaster itself did not restart');
	check_no_orphans('backend SIGKILL');
}

# ---- pg_ctl restart while a call streams
{
	my $host = status('host_pid');
	my $s = bg($LONG, 'r1_restart');
	backend_pid('r1_restart');
	ok(wait_for('running', sub { active() >= 1 }, 10), 'long call runs');
	my ($rc, $out) = as_server("$pgbin/pg_ctl", '-D', $pgdata, '-m', 'fast', '-w', '-t', '60', 'restart',
		'-l', "$tmp/server.log");
	is($rc, 0, 'pg_ctl restart -m fast') or diag($out);
	bg_finish($s);
	like($s->{err}, qr/terminating connection|server closed the connection/, 'the streaming session is ended');
	ok(wait_for("old host gone", sub { gone($host) }, 10), "old host $host is gone");
	ok(wait_ready(60), 'engine ready after the restart');
	is(query($GREEDY), $expected, 'serves the reference result');
	check_no_orphans('pg_ctl restart');
}

done_testing();
