# Scale-out (issue 16): a primary, a streaming standby (pg_basebackup -R) and
# an independent node on one machine.
# - audit on the standby: with r1.log_traces on, a call there is recorded in
#   the primary's r1.traces (its trace writer sends it over libpq) as the role
#   that called; the call fails clearly when the primary cannot record it.
# - fan-out: postgres_fdw with async_capable runs per-node r1_reason_many
#   views on the standby and the node at once (their times overlap).
# - r1.job_servers: a 60-item job runs on all three servers; the node is
#   killed (pg_ctl stop -m immediate) midway: all 60 items are done, each
#   once (one result, one trace), the node's items in flight run elsewhere.
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

# ---- an independent node: its own cluster, its own engine
$node{node} = { dir => "$tmp/scale_node", port => 5437 };
mkdir $node{node}{dir};
chmod 0777, $node{node}{dir};
($rc, $out) = as_server("$pgbin/initdb", '-D', "$node{node}{dir}/data", '-U', 'postgres', '-A', 'trust',
	'-E', 'UTF8', '--locale=C.UTF-8', '--no-sync');
is($rc, 0, 'initdb of an independent node') or diag($out);
open($conf, '>>', "$node{node}{dir}/data/postgresql.conf") or die;
print $conf "listen_addresses = ''\nunix_socket_directories = '$node{node}{dir}'\nport = $node{node}{port}\n",
	"shared_preload_libraries = 'r1_pg'\nr1.model = '$model'\nr1.device = 'cpu'\nr1.threads = 1\n",
	"r1.max_ctx = 4096\nfsync = off\n";
close $conf;
ok(node_start('node'), 'the node starts');
node_query('node', 'CREATE EXTENSION r1_pg');
ok(wait_for('node engine ready', sub { node_query('node', 'SELECT state FROM r1_status()') eq 'ready' }, 90),
	'the node runs its own engine');

# ---- fan-out: one query, two nodes at once (postgres_fdw, async_capable)
{
	my $view = q{CREATE VIEW scale_fanout AS
	  SELECT s.t0, r.ord, r.answer, clock_timestamp() AS t1
	  FROM (SELECT clock_timestamp() AS t0) s,
	  LATERAL r1_reason_many(CASE WHEN s.t0 IS NOT NULL THEN
	    ARRAY['Fan-out one', 'Fan-out two', 'Fan-out three', 'Fan-out four'] END,
	    max_tokens => 48, temperature => 0) r};
	query($view);    # the standby gets it by replication
	node_query('node', $view);
	ok(wait_for('view replicated', sub { node_query('standby', q{SELECT count(*) FROM pg_views WHERE viewname = 'scale_fanout'}) == 1 }, 30),
		'the view reaches the standby');
	query('CREATE EXTENSION IF NOT EXISTS postgres_fdw');
	for my $n ('standby', 'node')
	{
		query(qq{CREATE SERVER scale_$n FOREIGN DATA WRAPPER postgres_fdw
		  OPTIONS (host '$node{$n}{dir}', port '$node{$n}{port}', dbname 'postgres', async_capable 'true', fetch_size '100')});
		query(qq{CREATE USER MAPPING FOR postgres SERVER scale_$n OPTIONS (user 'postgres')});
		query(qq{CREATE FOREIGN TABLE scale_fanout_$n (t0 timestamptz, ord int, answer text, t1 timestamptz)
		  SERVER scale_$n OPTIONS (table_name 'scale_fanout')});
	}
	my $fan = q{SELECT 'standby' AS node, min(t0) AS t0, max(t1) AS t1, count(*) AS n FROM scale_fanout_standby
	  UNION ALL SELECT 'node', min(t0), max(t1), count(*) FROM scale_fanout_node};
	my $plan = query("EXPLAIN (COSTS OFF) SELECT * FROM scale_fanout_standby UNION ALL SELECT * FROM scale_fanout_node");
	like($plan, qr/Async Foreign Scan.*Async Foreign Scan/s, 'the plan scans both nodes asynchronously');
	my $r = query(qq{WITH f AS (SELECT * FROM scale_fanout_standby s UNION ALL SELECT * FROM scale_fanout_node)
	  SELECT count(*) FROM f});
	is($r, 8, 'the fan-out returns the 4 rows of each node');
	# the times each node recorded: its call began before the other's ended
	my @t = split /\|/, query(qq{WITH f AS MATERIALIZED (SELECT 's' AS n, t0, t1 FROM scale_fanout_standby
	    UNION ALL SELECT 'n', t0, t1 FROM scale_fanout_node)
	  SELECT string_agg(format('%s,%s,%s', n, extract(epoch FROM t0), extract(epoch FROM t1)), '|' ORDER BY n)
	  FROM (SELECT n, min(t0) AS t0, max(t1) AS t1 FROM f GROUP BY n) g}) =~ s/\n/|/gr;
	my %t = map { my ($n, $a, $b) = split /,/; ($n => [$a, $b]) } @t;
	ok($t{s} && $t{n} && $t{s}[0] < $t{n}[1] && $t{n}[0] < $t{s}[1],
		"the two nodes ran at the same time (standby @{$t{s} // []}, node @{$t{n} // []})");
}

# ---- r1.job_servers: a job over three servers, one killed midway
{
	query('CREATE EXTENSION IF NOT EXISTS r1_pg', db => 'r1_jobs');
	my $standby = "host=$node{standby}{dir} port=$node{standby}{port} dbname=postgres max_running=2";
	my $nodecs = "host=$node{node}{dir} port=$node{node}{port} dbname=postgres max_running=2";
	my $label = "$node{node}{dir}:$node{node}{port}";
	query("ALTER SYSTEM SET r1.job_workers = 2");
	set_conf("r1.job_servers = '$standby; $nodecs'");
	is(query('SHOW r1.job_servers'), "$standby; $nodecs", 'r1.job_servers is set');
	my ($brc, undef, $berr) = psql(q{ALTER SYSTEM SET r1.job_servers = 'host=x max_running=0'});
	like($berr, qr/invalid max_running/, 'a bad entry is refused, saying why');

	# every item generates max_tokens (r1.debug_ignore_eos goes with the job to the remote session)
	my $job = query(q{SET r1.debug_ignore_eos = on;
	  SELECT r1_submit_query($$SELECT k, format('Scale item %s: what is %s + %s?', k, k, k)
	  FROM generate_series(1, 60) k$$, max_tokens => 24, temperature => 0)}, db => 'r1_jobs');
	ok(wait_for('items on the node', sub {
		query("SELECT count(*) FROM r1.job_items WHERE job_id = $job AND server = '$label' AND state = 'done'",
			db => 'r1_jobs') >= 3 }, 60), 'items run on the node');
	my $servers = query("SELECT servers FROM r1_job_status($job)", db => 'r1_jobs');
	like($servers, qr/"local".*\Q$label\E|\Q$label\E.*"local"/s, "r1_job_status shows the servers: $servers");
	ok(wait_for('an item running on the node', sub {
		query("SELECT count(*) FROM r1.job_items WHERE job_id = $job AND server = '$label' AND state = 'running'",
			db => 'r1_jobs') >= 1 }, 30), 'an item is running on the node');
	node_stop('node', 'immediate');
	ok(wait_for('job done', sub { query("SELECT state FROM r1.jobs WHERE id = $job", db => 'r1_jobs') eq 'done' }, 120),
		'the job finishes with the node gone');
	is(query("SELECT count(*) FROM r1.job_items WHERE job_id = $job AND state = 'done' AND answer IS NOT NULL",
		db => 'r1_jobs'), 60, 'all 60 items are done');
	is(query("SELECT count(*) FROM r1.job_items WHERE job_id = $job AND completion_tokens = 24", db => 'r1_jobs'),
		60, 'each with the job\'s parameters (24 tokens, ignore_eos) wherever it ran');
	is(query("SELECT count(*), count(DISTINCT t.prompt) FROM r1.traces t JOIN r1.job_items i ON i.prompt = t.prompt
		WHERE i.job_id = $job AND t.source = 'job'", db => 'r1_jobs'), '60|60', 'each traced exactly once');
	my $moved = query("SELECT count(*) FROM r1.job_items WHERE job_id = $job AND server <> '$label'
		AND last_error LIKE '%job server \Q$label\E%'", db => 'r1_jobs');
	ok($moved >= 1, "the node's items in flight ran elsewhere ($moved)");
	is(query("SELECT count(DISTINCT server) FROM r1.job_items WHERE job_id = $job", db => 'r1_jobs'), 3,
		'items ran on all three servers');
	is(query("SELECT sum(attempts) FILTER (WHERE last_error IS NULL) = count(*) FILTER (WHERE last_error IS NULL)
		FROM r1.job_items WHERE job_id = $job", db => 'r1_jobs'), 't', 'undisturbed items ran once');
	reset_conf('r1.job_servers', 'r1.job_workers');
	query('DROP EXTENSION r1_pg', db => 'r1_jobs');
}

node_stop('standby');
delete $node{$_} for keys %node;
query('DROP FOREIGN TABLE scale_fanout_standby, scale_fanout_node');
query('DROP SERVER scale_standby, scale_node CASCADE');
query('DROP EXTENSION postgres_fdw');
query('DROP VIEW scale_fanout');
reset_conf('r1.log_traces');
query('DROP ROLE regress_scale_user');
done_testing();
