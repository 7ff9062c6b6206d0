# A streaming standby (pg_basebackup -R of the test cluster) as a model
# server: its own engine serves r1_reason; job functions say at once that
# jobs belong to the primary (25006, none of the extension's internal SQL in
# the message); each cluster's engine socket is its own, outside the data
# directory.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(run timeout);
use Test::More;

my $model = $ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $tmp = $ENV{R1_TEST_TMP};
my $pgbin = $ENV{R1_PGBIN} // '/usr/lib/postgresql/15/bin';

ok(wait_ready(), 'primary engine is ready');
my $expected = query($GREEDY);
my $port = query('SHOW port');
my $sockdir = (split /,/, query('SHOW unix_socket_directories'))[0];

my $dir = "$tmp/standby";
mkdir $dir;
chmod 0777, $dir;
my ($rc, $out) = as_server("$pgbin/pg_basebackup", '-D', "$dir/data", '-R', '-X', 'stream',
	'-h', $sockdir, '-p', $port, '-U', 'postgres', '--no-sync', '-c', 'fast');
is($rc, 0, 'pg_basebackup -R makes a standby') or diag($out);
unlike($out, qr/skipping special file/, 'the base backup met no engine socket');
open(my $conf, '>>', "$dir/data/postgresql.conf") or die;
print $conf "unix_socket_directories = '$dir'\nport = 5435\nhot_standby = on\nr1.jobs_database = ''\n";
close $conf;
($rc, $out) = as_server("$pgbin/pg_ctl", '-D', "$dir/data", '-l', "$dir/log", '-w', '-t', 60, 'start');
is($rc, 0, 'the standby starts') or diag($out);

sub sq
{
	my ($sql) = @_;
	my ($o, $e) = ('', '');
	run([$PSQL, '-XAtq', '-h', $dir, '-p', 5435, '-U', 'postgres', '-d', 'postgres', '-c', $sql],
		'>', \$o, '2>', \$e, timeout(120));
	chomp $o;
	return ($? >> 8, $o, $e);
}

is((sq('SELECT pg_is_in_recovery()'))[1], 't', 'it is in recovery');
ok(wait_for('standby engine ready', sub { (sq('SELECT state FROM r1_status()'))[1] eq 'ready' }, 90),
	'the standby runs its own engine');
is((sq($GREEDY))[1], $expected, 'r1_reason on the standby gives the primary\'s result');
ok(-S "$dir/.r1_engine.5435", 'the standby\'s engine socket is its own');
ok(-S "$sockdir/.r1_engine.$port", 'the primary\'s is untouched');

for my $call ("r1_submit('What is 6*7?')", "r1_submit_query('SELECT 1, ''x''')", 'r1_cancel_job(1)')
{
	my ($src, undef, $err) = sq(qq{DO \$\$ DECLARE st text; m text; c text; BEGIN PERFORM $call;
	  EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, c = PG_EXCEPTION_CONTEXT;
	  RAISE NOTICE 'sqlstate=% message=% context=%', st, m, c; END \$\$});
	like($err, qr/sqlstate=25006 message=r1 jobs are submitted and cancelled on the primary/, "$call on a standby: 25006, says why");
	unlike($err, qr/INSERT|UPDATE|SELECT .* FROM r1\./, "$call: no internal SQL in the error");
}

as_server("$pgbin/pg_ctl", '-D', "$dir/data", '-m', 'fast', '-w', 'stop');
ok(wait_ready(), 'the primary still serves');
done_testing();
