# Fault tests for r1_pg against the running throwaway cluster that
# test/run-extension-tests.sh starts (PGHOST/PGPORT/PGUSER in the
# environment, R1_TEST_MODEL the demo model, R1_TEST_TMP a scratch dir).
#
# Long generations use r1.debug_ignore_eos (a superuser-only test setting):
# the demo model then keeps generating until max_tokens or the end of the
# context instead of stopping at its answer.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(start finish run timeout);
use Time::HiRes qw(time sleep);
use File::Copy qw(copy);
use Test::More;

my $model = $ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $tmp = $ENV{R1_TEST_TMP};
my $psql = ($ENV{R1_PGBIN} // '/usr/lib/postgresql/15/bin') . '/psql';

my $GREEDY = q{SELECT format('%s|%s|%s|%s', think, answer, boxed, finish_reason)
  FROM r1_reason('What is 6*7?', temperature => 0)};
my $LONG = q{SET r1.debug_ignore_eos = on;
  SELECT finish_reason FROM r1_reason('Count to infinity.', max_tokens => 1000000, temperature => 0)};

ok(wait_ready(), 'engine is ready');
my $expected = query($GREEDY);
like($expected, qr/\|stop$/, "greedy reference result: $expected");
my $pm_start = query('SELECT pg_postmaster_start_time()');

# ---- the engine host: a child of the "r1 engine" worker, "r1" in its ps title
{
	my $host = status('host_pid');
	my $args = `ps -o args= -p $host`;
	like($args, qr/^r1 serve /, "host $host runs as: " . substr($args, 0, 40));
	my $ppid = `ps -o ppid= -p $host`;
	$ppid =~ s/\s+//g;
	like(`ps -o args= -p $ppid`, qr/postgres: .*r1 engine/, 'its parent is the r1 engine worker');
}

# ---- statement_timeout during a generation
{
	my $t0 = time;
	my ($rc, $out, $err) = psql("SET statement_timeout = '1s'; $LONG");
	my $dt = time - $t0;
	isnt($rc, 0, 'statement_timeout ends a long generation');
	like($err, qr/canceling statement due to statement timeout/, 'with the timeout error');
	cmp_ok($dt, '<', 5, sprintf('within the timeout (%.2fs)', $dt));
	ok(wait_for('request freed', sub { active() == 0 }, 3), 'the engine dropped the request');
}

# ---- pg_cancel_backend during a generation
{
	my $s = bg($LONG, 'r1_cancel');
	my $pid = backend_pid('r1_cancel');
	ok($pid, 'long generation is waiting');
	ok(wait_for('request running', sub { active() >= 1 }, 10), 'the engine runs it');
	my $t0 = time;
	query("SELECT pg_cancel_backend($pid)");
	bg_finish($s);
	like($s->{err}, qr/canceling statement due to user request/, 'pg_cancel_backend cancels the call');
	ok(wait_for('request freed', sub { active() == 0 }, 3), sprintf('the engine dropped the request (%.2fs)', time - $t0));
}

# ---- pg_terminate_backend of a waiting session
{
	my $s = bg($LONG, 'r1_terminate');
	my $pid = backend_pid('r1_terminate');
	ok(wait_for('request running', sub { active() >= 1 }, 10), 'long generation runs');
	query("SELECT pg_terminate_backend($pid)");
	bg_finish($s);
	like($s->{err}, qr/terminating connection due to administrator command/, 'pg_terminate_backend ends the session');
	ok(wait_for('request freed', sub { active() == 0 }, 3), 'the engine dropped the request');
}

# ---- the engine host killed while sessions wait
for my $sig ('KILL', 'SEGV')
{
	my @s = map { bg($LONG, "r1_victim_$_") } 1 .. 2;
	backend_pid("r1_victim_$_") for 1 .. 2;
	ok(wait_for('requests running', sub { active() >= 2 }, 10), "two calls wait ($sig)");
	my $host = status('host_pid');
	my $restarts = status('host_restarts');
	ok(kill($sig, $host), "SIG$sig to the engine host $host");
	for my $s (@s)
	{
		bg_finish($s);
		like($s->{err}, qr/ERROR:  r1 engine host terminated during the request/, "waiting call gets an ERROR ($sig)");
	}
	is(query('SELECT pg_postmaster_start_time()'), $pm_start, "no postmaster restart ($sig)");
	ok(wait_ready(30), "engine restarted ($sig)");
	isnt(status('host_pid'), $host, 'with a new host process');
	cmp_ok(status('host_restarts'), '>', $restarts, 'restart counted');
	is(query($GREEDY), $expected, "next call succeeds ($sig)");
}

# ---- a full queue
{
	ok(restart_host_with(sub { set_conf('r1.max_queued = 2') }), 'engine back with r1.max_queued = 2');
	ok(wait_ready(30), 'ready');
	my @s = map { bg($LONG, "r1_fill_$_") } 1 .. 2;
	ok(wait_for('queue full', sub { active() >= 2 }, 10), 'two long calls fill the queue');
	my $t0 = time;
	my ($rc, $out, $err) = psql("SET r1.queue_timeout = '300ms'; $GREEDY");
	my $dt = time - $t0;
	isnt($rc, 0, 'a third call fails');
	like($err, qr/r1 request queue is full/, 'queue full error');
	cmp_ok($dt, '>=', 0.25, sprintf('after waiting r1.queue_timeout (%.2fs)', $dt));
	my (undef, undef, $err2) = psql("\\set VERBOSITY verbose\nSET r1.queue_timeout = 0; $GREEDY");
	($rc, $out, $err2) = psql("SET r1.queue_timeout = 0; DO \$\$ BEGIN PERFORM r1_reason('x'); EXCEPTION WHEN SQLSTATE '53400' THEN RAISE NOTICE 'sqlstate 53400'; END \$\$");
	like($err2, qr/sqlstate 53400/, 'SQLSTATE 53400');

	# a waiting call gets the slot that a cancelled call frees
	my $w = bg("SET r1.queue_timeout = '20s'; $GREEDY", 'r1_waiter');
	sleep 0.3;
	my $pid = query("SELECT pid FROM pg_stat_activity WHERE application_name = 'r1_fill_1'");
	query("SELECT pg_cancel_backend($pid)");
	bg_finish($w);
	is($w->{out}, $expected, 'a queued call runs when a slot frees');
	$pid = query("SELECT pid FROM pg_stat_activity WHERE application_name = 'r1_fill_2'");
	query("SELECT pg_cancel_backend($pid)") if $pid;
	bg_finish($_) for @s;
	ok(restart_host_with(sub { set_conf('r1.max_queued = 1024') }), 'engine back with the default queue');
}

# ---- 16 concurrent sessions
{
	my $t0 = time;
	my @s = map { bg($GREEDY, "r1_conc_$_") } 1 .. 16;
	my $good = 0;
	for my $s (@s)
	{
		bg_finish($s);
		$good++ if $s->{out} eq $expected;
		diag("unexpected: $s->{out} $s->{err}") if $s->{out} ne $expected;
	}
	is($good, 16, sprintf('16 concurrent sessions all get the greedy result (%.2fs)', time - $t0));
}

# ---- long results arrive intact: two concurrent identical greedy runs agree
{
	my $q = q{SET r1.debug_ignore_eos = on;
	  SELECT format('%s|%s|%s', completion_tokens, finish_reason,
	                md5(think || coalesce('</think>' || answer, '')))
	  FROM r1_reason('What is 6*7?', max_tokens => 2000, temperature => 0)};
	my @s = map { bg($q, "r1_long_$_") } 1 .. 2;
	bg_finish($_) for @s;
	like($s[0]{out}, qr/^2000\|length\|[0-9a-f]{32}$/, "2000-token result: $s[0]{out}");
	is($s[1]{out}, $s[0]{out}, 'identical in a concurrent session');
}

# ---- a database in another encoding
{
	query("DROP DATABASE IF EXISTS r1_latin1");
	query("CREATE DATABASE r1_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
	query("CREATE EXTENSION r1_pg", db => 'r1_latin1');
	is(query($GREEDY, db => 'r1_latin1'), $expected, 'LATIN1 database: same result');
	is(query("SELECT r1_extract_boxed(convert_from('\\x5c626f7865647be97d'::bytea, 'LATIN1'))", db => 'r1_latin1'),
		query("SELECT convert_from('\\xe9'::bytea, 'LATIN1')", db => 'r1_latin1'),
		'LATIN1 database: r1_extract_boxed converts');
	is(query("SELECT r1_count_tokens(convert_from('\\xe9'::bytea, 'LATIN1')) = r1_count_tokens(U&'\\00e9')"), 't',
		'LATIN1 text is tokenized as UTF-8') if 0;
	query("DROP DATABASE r1_latin1");
}

# ---- bad r1.model: a missing directory, then a corrupt weights file
{
	set_conf("r1.model = '/nonexistent/r1-model'");
	ok(wait_for('failed', sub { status('state') eq 'failed' }, 30), 'missing model: state failed');
	like(status('reason'), qr/\S/, 'with a reason: ' . status('reason'));
	my $t0 = time;
	my ($rc, $out, $err) = psql($GREEDY);
	cmp_ok(time - $t0, '<', 2, 'the call fails at once');
	like($err, qr/ERROR:  r1 engine could not load model "\/nonexistent\/r1-model"/, 'with the reason');
	like($err, qr/HINT:/, 'and a hint');
	(undef, undef, $err) = psql(q{DO $$ BEGIN PERFORM r1_reason('x'); EXCEPTION WHEN SQLSTATE '55000' THEN RAISE NOTICE 'sqlstate 55000'; END $$});
	like($err, qr/sqlstate 55000/, 'SQLSTATE 55000');

	my $bad = "$tmp/corrupt-model";
	mkdir $bad;
	opendir(my $d, $model) or die;
	for my $f (grep { -f "$model/$_" } readdir $d) { copy("$model/$f", "$bad/$f") or die; }
	closedir $d;
	chmod 0755, $bad;
	my @st = glob("$bad/*.safetensors");
	ok(@st, 'model has safetensors files');
	for my $f (@st)
	{
		# keep the header length, garble the header and truncate the data
		open(my $fh, '+<', $f) or die;
		binmode $fh;
		seek($fh, 8, 0);
		print $fh '{"bogus": [1, 2' . ('x' x 32);
		truncate($fh, 200);
		close $fh;
		chmod 0644, $f;
	}
	set_conf("r1.model = '$bad'");
	ok(wait_for('failed', sub { status('state') eq 'failed' && status('model_path') eq $bad }, 30), 'corrupt model: state failed');
	($rc, $out, $err) = psql($GREEDY);
	like($err, qr/ERROR:  r1 engine could not load model/, 'calls fail with the reason: ' . (split /\n/, $err)[1]);
	is(query('SELECT pg_postmaster_start_time()'), $pm_start, 'no postmaster restart');

	set_conf("r1.device = 'cuda'");
	set_conf("r1.model = '$model'");
	ok(wait_for('no gpu', sub { my $s = status('state'); $s eq 'no_device' || $s eq 'failed' || $s eq 'ready' }, 30),
		'r1.device = cuda: state ' . status('state'));
	# without an NVIDIA device node there is no GPU: the state must say so
	is(status('state'), 'no_device', 'r1.device = cuda without a GPU: no_device')
		unless -e '/dev/nvidiactl' || -e '/dev/nvidia0';
	if (status('state') ne 'ready')
	{
		(undef, undef, $err) = psql($GREEDY);
		like($err, qr/ERROR:  r1 engine/, 'calls fail at once without a GPU');
		my $code = query(q{DO $$ BEGIN PERFORM r1_reason('x'); EXCEPTION WHEN OTHERS THEN
			PERFORM set_config('r1x.code', SQLSTATE, false); END $$; SELECT current_setting('r1x.code', true)});
		is($code, '55000', 'with SQLSTATE 55000');
	}
	query('ALTER SYSTEM RESET r1.device');
	query('ALTER SYSTEM RESET r1.model');
	query('SELECT pg_reload_conf()');
	ok(wait_ready(30), 'engine ready again with the good model');
	is(query($GREEDY), $expected, 'and serves calls');
}

# ---- no model configured
{
	set_conf("r1.model = ''");
	ok(wait_for('not configured', sub { status('state') eq 'not_configured' }, 30), 'empty r1.model: not_configured');
	my ($rc, $out, $err) = psql($GREEDY);
	like($err, qr/ERROR:  no model configured for r1_pg/, 'calls say so');
	like($err, qr/HINT:  Set r1.model/, 'with a hint to set r1.model');
	query('ALTER SYSTEM RESET r1.model');
	query('SELECT pg_reload_conf()');
	ok(wait_ready(30), 'engine ready again');
}

is(query('SELECT pg_postmaster_start_time()'), $pm_start, 'the postmaster never restarted');
done_testing();
