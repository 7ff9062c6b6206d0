# Scale-out (issue 16): a primary, a streaming standby (pg_basebackup -R) and
# an independent node on one machine.
# - audit on the standby: with r1.log_traces on, a call there is recorded in
#   the primary's r1.traces (its trace writer sends it over libpq) as the role
#   that called; the call fails clearly when the primary cannot record it.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(run timeout);
use Time::HiRes qw(time sleep);
use Test::More;

my $model = $ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $tmp = $ENV{R1_TEST_TMP};
my $pgbin = $ENV{R1_PGBIN} // '/usr/lib/postgresql/15/bin';

ok(wait_ready(), 'primary engine is ready');
my $port = query('SHOW port');
my $sockdir = (split /,/, query('SHOW unix_socket_directories'))[0];
query('DROP ROLE IF EXISTS regress_scale_user');
query('CREATE ROLE regress_scale_user LOGIN IN ROLE r1_user');
query('DELETE FROM r1.traces');
set_conf('r1.log_traces = on');

# ---- the servers: a standby of the test cluster
my %node;
sub node_sql
{
	my ($n, $sql, %opt) = @_;
	my ($o, $e) = ('', '');
	run([$PSQL, '-XAtq', '-v', 'ON_ERROR_STOP=1', '-v', 'VERBOSITY=verbose', '-h', $node{$n}{dir}, '-p', $node{$n}{port},
		'-U', $opt{user} // 'postgres', '-d', $opt{db} // 'postgres', '-c', $sql],
		'>', \$o, '2>', \$e, timeout($opt{timeout} // 120));
	chomp $o;
	return ($? >> 8, $o, $e);
}
sub node_query
{
	my ($rc, $o, $e) = node_sql(@_);
	die "query on $_[0] failed: $_[1]\n$e" if $rc != 0;
	return $o;
}
sub node_start
{
	my ($n) = @_;
	my ($rc, $out) = as_server("$pgbin/pg_ctl", '-D', "$node{$n}{dir}/data", '-l', "$node{$n}{dir}/log",
		'-w', '-t', 60, 'start');
	return $rc == 0 || diag($out) && 0;
}
sub node_stop
{
	my ($n, $mode) = @_;
	as_server("$pgbin/pg_ctl", '-D', "$node{$n}{dir}/data", '-m', $mode // 'fast', '-w', 'stop');
}
END { node_stop($_, 'immediate') for keys %node; }

$node{standby} = { dir => "$tmp/scale_standby", port => 5436 };
mkdir $node{standby}{dir};
chmod 0777, $node{standby}{dir};
my ($rc, $out) = as_server("$pgbin/pg_basebackup", '-D', "$node{standby}{dir}/data", '-R', '-X', 'stream',
	'-h', $sockdir, '-p', $port, '-U', 'postgres', '--no-sync', '-c', 'fast');
is($rc, 0, 'pg_basebackup -R makes a standby') or diag($out);
open(my $conf, '>>', "$node{standby}{dir}/data/postgresql.conf") or die;
print $conf "unix_socket_directories = '$node{standby}{dir}'\nport = $node{standby}{port}\n",
	"hot_standby = on\nhot_standby_feedback = on\nr1.jobs_database = ''\n";
close $conf;
ok(node_start('standby'), 'the standby starts');
is(node_query('standby', 'SHOW r1.log_traces'), 'on', 'r1.log_traces is on there too (postgresql.auto.conf)');
ok(wait_for('standby engine ready', sub { node_query('standby', 'SELECT state FROM r1_status()') eq 'ready' }, 90),
	'the standby runs its own engine');

# ---- audit on the standby
{
	my ($rc, $o, $e) = node_sql('standby',
		q{SELECT answer FROM r1_reason('Standby audit: what is 6*7?', temperature => 0, max_tokens => 16)},
		user => 'regress_scale_user');
	is($rc, 0, 'a traced call on the standby succeeds') or diag($e);
	is(query(q{SELECT format('%s|%s|%s|%s', source, role, session_role, database) FROM r1.traces
		WHERE prompt = 'Standby audit: what is 6*7?'}),
		'r1_reason|regress_scale_user|regress_scale_user|postgres',
		'it is recorded once in the primary\'s r1.traces, as the role that called');

	# the primary unreachable: the call fails, saying why and what to do
	node_query('standby', q{ALTER SYSTEM SET r1.trace_primary_conninfo = 'host=/nonexistent port=1 connect_timeout=2'});
	node_query('standby', 'SELECT pg_reload_conf()');
	sleep(0.5);
	($rc, $o, $e) = node_sql('standby',
		q{SELECT answer FROM r1_reason('Standby audit, primary away', temperature => 0, max_tokens => 16)},
		user => 'regress_scale_user');
	isnt($rc, 0, 'with the primary unreachable the call fails');
	like($e, qr/08001.*could not record the r1 trace on the primary/s, '08001, the trace could not be recorded');
	like($e, qr/HINT:.*r1\.trace_primary_conninfo/, 'the hint names the setting');
	is(query(q{SELECT count(*) FROM r1.traces WHERE prompt = 'Standby audit, primary away'}), 0, 'nothing recorded');

	# a role that may not insert: the primary's own error comes back
	node_query('standby', qq{ALTER SYSTEM SET r1.trace_primary_conninfo = 'host=$sockdir port=$port user=regress_scale_user'});
	node_query('standby', 'SELECT pg_reload_conf()');
	sleep(0.5);
	($rc, $o, $e) = node_sql('standby', q{SELECT answer FROM r1_reason('Standby audit, no privilege', temperature => 0, max_tokens => 16)});
	like($e, qr/42501.*could not record the r1 trace on the primary: permission denied/s,
		'a role without INSERT on r1.traces: 42501 from the primary');
	node_query('standby', 'ALTER SYSTEM RESET r1.trace_primary_conninfo');
	node_query('standby', 'SELECT pg_reload_conf()');
	sleep(0.5);
	($rc, $o, $e) = node_sql('standby',
		q{SELECT answer FROM r1_reason('Standby audit again', temperature => 0, max_tokens => 16)});
	is($rc, 0, 'back on primary_conninfo, traced calls work again') or diag($e);
	is(query(q{SELECT count(*) FROM r1.traces WHERE prompt = 'Standby audit again'}), 1, 'and are recorded');
}

node_stop('standby');
delete $node{standby};
reset_conf('r1.log_traces');
query('DROP ROLE regress_scale_user');
done_testing();
