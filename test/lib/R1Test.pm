# R1Test - helpers for the Perl TAP tests in test/t that run against the
# throwaway cluster of test/run-extension-tests.sh (PGHOST, PGPORT, PGUSER,
# R1_PGBIN, R1_PGDATA, R1_TEST_MODEL, R1_TEST_TMP in the environment).
package R1Test;
use strict;
use warnings;
use Exporter 'import';
use IPC::Run qw(start finish run timeout);
use Time::HiRes qw(time sleep);
use Test::More;

our @EXPORT = qw(psql query bg bg_finish wait_for status active wait_ready restart_host_with backend_pid
  set_conf reset_conf host_processes check_no_orphans as_server $PSQL $GREEDY $LONG);

our $PSQL = ($ENV{R1_PGBIN} // '/usr/lib/postgresql/15/bin') . '/psql';
our $GREEDY = q{SELECT format('%s|%s|%s|%s', think, answer, boxed, finish_reason)
  FROM r1_reason('What is 6*7?', temperature => 0)};
our $LONG = q{SET r1.debug_ignore_eos = on;
  SELECT finish_reason FROM r1_reason('Count to infinity.', max_tokens => 1000000, temperature => 0)};

# psql: (exit code, stdout, stderr); options db, user, timeout
sub psql
{
	my ($sql, %opt) = @_;
	my ($out, $err) = ('', '');
	my @cmd = ($PSQL, '-XAtq', '-v', 'ON_ERROR_STOP=1', ($opt{db} ? ('-d', $opt{db}) : ()),
		($opt{user} ? ('-U', $opt{user}) : ()), '-c', $sql);
	run(\@cmd, '>', \$out, '2>', \$err, timeout($opt{timeout} // 120));
	chomp $out;
	return ($? >> 8, $out, $err);
}

sub query
{
	my ($sql, %opt) = @_;
	my ($rc, $out, $err) = psql($sql, %opt);
	die "query failed: $sql\n$err" if $rc != 0;
	return $out;
}

# a session running $sql in the background, application_name $name
sub bg
{
	my ($sql, $name, %opt) = @_;
	my %s = (out => '', err => '');
	local $ENV{PGAPPNAME} = $name;
	$s{h} = start([$PSQL, '-XAtq', '-v', 'ON_ERROR_STOP=1', ($opt{db} ? ('-d', $opt{db}) : ()), '-c', $sql],
		'>', \$s{out}, '2>', \$s{err}, timeout($opt{timeout} // 180));
	return \%s;
}

sub bg_finish
{
	my ($s) = @_;
	eval { finish($s->{h}) };
	chomp $s->{out};
	return $s->{h}->result(0);
}

sub wait_for
{
	my ($what, $cond, $secs) = @_;
	my $end = time + ($secs // 30);
	while (time < $end)
	{
		my $ok = eval { $cond->() };
		return 1 if $ok;
		sleep 0.05;
	}
	diag("timed out waiting for $what");
	return 0;
}

sub status { return query("SELECT $_[0] FROM r1_status()"); }

# requests the engine holds: running + waiting (-1 when the engine is not ready)
sub active { return status('coalesce(active_requests, -1) + coalesce(queue_depth, 0)'); }

sub wait_ready { return wait_for('engine ready', sub { status('state') eq 'ready' }, $_[0] // 60); }

# run $change (settings that restart the engine host), then wait until a new
# host is ready: a fixed sleep races the reload on a busy machine
sub restart_host_with
{
	my ($change, $secs) = @_;
	my $old = status('coalesce(host_pid, 0)');
	$change->();
	return wait_for('engine restarted',
		sub { status('state') eq 'ready' && status('coalesce(host_pid, 0)') != $old }, $secs // 60);
}

sub backend_pid
{
	my ($name) = @_;
	my $pid = '';
	wait_for("backend $name waiting", sub {
		$pid = query("SELECT pid FROM pg_stat_activity WHERE application_name = '$name' AND wait_event = 'Extension'");
		return $pid ne '';
	});
	return $pid;
}

sub set_conf
{
	my ($conf) = @_;
	query("ALTER SYSTEM SET $conf");
	query('SELECT pg_reload_conf()');
}

sub reset_conf
{
	query("ALTER SYSTEM RESET $_") for @_;
	query('SELECT pg_reload_conf()');
}

# run a command as the server's OS user
sub as_server
{
	my @cmd = @_;
	@cmd = ('runuser', '-u', 'postgres', '--', @cmd) if $> == 0;
	# not fd 9, the test lock: a server started here must not hold it
	@cmd = ('sh', '-c', 'exec "$@" 9>&-', 'sh', @cmd);
	my ($out, $err) = ('', '');
	run(\@cmd, '>', \$out, '2>', \$err, timeout(120));
	return ($? >> 8, $out . $err);
}

# pids of the `r1 serve` processes that serve this cluster (cwd = its data directory)
sub host_processes
{
	my $data = $ENV{R1_PGDATA} or die 'R1_PGDATA not set';
	my @pids;
	opendir(my $d, '/proc') or die;
	for my $pid (grep { /^\d+$/ } readdir $d)
	{
		open(my $fh, '<', "/proc/$pid/cmdline") or next;
		local $/;
		my $cmd = <$fh> // '';
		close $fh;
		next unless $cmd =~ /^r1\0serve\0/;
		my $cwd = readlink("/proc/$pid/cwd") // next;
		push @pids, $pid if $cwd eq $data;
	}
	closedir $d;
	return sort { $a <=> $b } @pids;
}

# after a fault: at most one host, the one r1_status reports, a child of the
# worker; nothing left in the engine's queue
sub check_no_orphans
{
	my ($what) = @_;
	my $hp;
	my @hosts;
	wait_for("one host ($what)", sub {
		$hp = status('coalesce(host_pid, 0)');
		@hosts = host_processes();
		return @hosts <= 1 && (!@hosts || $hosts[0] == $hp);
	}, 10);
	ok(@hosts <= 1 && (!@hosts || $hosts[0] == $hp),
		"$what: no orphan engine host (hosts: @hosts; r1_status host_pid $hp)");
	if (@hosts)
	{
		my $ppid = `ps -o ppid= -p $hosts[0]`;
		$ppid =~ s/\s+//g;
		like(`ps -o args= -p $ppid`, qr/r1 engine/, "$what: the host is a child of the r1 engine worker");
		ok(wait_for('queue empty', sub { active() == 0 }, 10), "$what: queue empty (active + waiting = 0)");
	}
}

1;
