# What a DBA relies on across versions and server modes:
# - the released SQL script is frozen (its checksum is recorded here);
# - every released version updates to the newest, and an updated database has
#   exactly the objects of a fresh install (functions with their definitions,
#   row types column by column, tables, indexes, policies, privileges,
#   comments, pg_dump configuration);
# - the library serves a database still at the oldest version (fewer
#   columns, and functions declared with fewer parameters);
# - CREATE EXTENSION without the preload is an ERROR the session survives;
# - in binary-upgrade mode (pg_upgrade's `postgres -b`) no engine and no job
#   worker starts.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use Digest::SHA qw(sha256_hex);
use IPC::Run qw(run timeout);
use Test::More;

my $model = $ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $tmp = $ENV{R1_TEST_TMP};
my $pgbin = $ENV{R1_PGBIN} // '/usr/lib/postgresql/15/bin';
my $repo = "$FindBin::Bin/../..";

# ---- released scripts never change
my %released = (
	'0.1.0' => '19bfd5f5ab671c3c7874233334e8b8272d871b0b9c40f6a42cf128ec3920e873',
	'0.2.0' => '56ef1285ba80749eb042f0889329e37084d7adfc03c6c9fc7a5e8b3f2368739a',   # released at stop 22
	'0.3.0' => '5bb33b5a07eeac03817962f978fe17ff030144b618b2c18253cd5f7da2f060f5',   # released at stop 23
);
for my $v (sort keys %released)
{
	open(my $fh, '<:raw', "$repo/sql/r1_pg--$v.sql") or die "sql/r1_pg--$v.sql: $!";
	local $/;
	is(sha256_hex(<$fh>), $released{$v}, "released script r1_pg--$v.sql is unchanged");
}
my ($default) = `cat $repo/r1_pg.control` =~ /default_version\s*=\s*'([^']+)'/;
ok($default, "default_version is $default");
ok(-f "$repo/sql/r1_pg--$default.sql", "a full script for $default exists");

# ---- every release updates to the newest
for my $v (sort keys %released)
{
	next if $v eq $default;
	is(query(qq{SELECT count(*) FROM pg_extension_update_paths('r1_pg')
	  WHERE source = '$v' AND target = '$default' AND path IS NOT NULL}), 1, "an update path $v -> $default");
}

# the objects of the extension in database $db, by name (oids differ)
my $describe = q{
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'r1_pg'),
mem AS (SELECT d.classid, d.objid, d.objsubid FROM pg_depend d, ext
        WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e')
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT 'member ' || pg_describe_object(classid, objid, objsubid)
         || coalesce(' comment=' || obj_description(objid, (SELECT relname FROM pg_class WHERE oid = classid)), '') AS line
  FROM mem
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure::text || E'\n' || pg_get_functiondef(p.oid)
         || ' acl=' || coalesce(p.proacl::text, 'default')
  FROM pg_proc p JOIN mem ON mem.classid = 'pg_proc'::regclass AND mem.objid = p.oid
  UNION ALL
  SELECT 'type ' || t.typname || ' ' || string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
  FROM pg_type t JOIN mem ON mem.classid = 'pg_type'::regclass AND mem.objid = t.oid
  JOIN pg_attribute a ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
  GROUP BY t.typname
  UNION ALL
  SELECT 'relation ' || c.oid::regclass::text || ' kind=' || c.relkind::text || ' rls=' || c.relrowsecurity::text
         || ' acl=' || coalesce(c.relacl::text, 'default') || ' columns: '
         || coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                      || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                      || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''), ', ' ORDER BY a.attnum)
                      FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
         || coalesce(' view: ' || pg_get_viewdef(c.oid), '')
  FROM pg_class c JOIN mem ON mem.classid = 'pg_class'::regclass AND mem.objid = c.oid AND mem.objsubid = 0
  UNION ALL
  SELECT 'constraint ' || co.conrelid::regclass::text || ' ' || pg_get_constraintdef(co.oid)
  FROM pg_constraint co JOIN mem ON mem.classid = 'pg_class'::regclass AND mem.objid = co.conrelid
  UNION ALL
  SELECT 'index ' || regexp_replace(pg_get_indexdef(i.indexrelid), 'INDEX \S+ ON', 'INDEX ON')
  FROM pg_index i JOIN mem ON mem.classid = 'pg_class'::regclass AND mem.objid = i.indrelid
  UNION ALL
  SELECT 'policy ' || pol.polname || ' on ' || pol.polrelid::regclass::text || ' ' || pol.polcmd::text
         || ' using ' || coalesce(pg_get_expr(pol.polqual, pol.polrelid), '') || ' check ' || coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '')
  FROM pg_policy pol JOIN mem ON mem.classid = 'pg_class'::regclass AND mem.objid = pol.polrelid
  UNION ALL
  SELECT 'column comment ' || c.oid::regclass::text || '.' || a.attname || ' ' || d.description
  FROM pg_description d JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND d.objoid = c.oid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid
  JOIN mem ON mem.classid = 'pg_class'::regclass AND mem.objid = c.oid AND mem.objsubid = 0
  WHERE d.objsubid > 0
  UNION ALL
  SELECT 'dumped ' || array_to_string(ARRAY(SELECT unnest(extconfig)::regclass::text ORDER BY 1), ', ')
         || ' conditions ' || coalesce(array_to_string(extcondition, '|'), '')
  FROM pg_extension WHERE extname = 'r1_pg'
  UNION ALL
  SELECT 'version ' || extversion || ' schema ' || extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'r1_pg'
) lines};

query('DROP DATABASE IF EXISTS r1_fresh');
query('DROP DATABASE IF EXISTS r1_updated');
query('CREATE DATABASE r1_fresh');
query('CREATE DATABASE r1_updated');
query('CREATE EXTENSION r1_pg', db => 'r1_fresh');
my @versions = sort keys %released;
query("CREATE EXTENSION r1_pg VERSION '$versions[0]'", db => 'r1_updated');

# the newest library serves the oldest SQL: fewer r1_status() columns, and
# functions declared with fewer parameters than the C code knows
is(query(q{SELECT state FROM r1_status()}, db => 'r1_updated'), 'ready', "r1_status() at $versions[0]");
my $expected = query($GREEDY);
query(q{CREATE FUNCTION r1_reason_old(prompt text, max_tokens int DEFAULT NULL, temperature float8 DEFAULT 0.6,
  top_p float8 DEFAULT 0.95, seed bigint DEFAULT NULL, system text DEFAULT NULL, top_k int DEFAULT 0,
  min_p float8 DEFAULT 0) RETURNS r1.reasoning AS '$libdir/r1_pg', 'pg_r1_reason' LANGUAGE C CALLED ON NULL INPUT},
	db => 'r1_updated');
is(query(q{SELECT format('%s|%s|%s|%s', think, answer, boxed, finish_reason)
  FROM r1_reason_old('What is 6*7?', temperature => 0)}, db => 'r1_updated'), $expected,
	'a function declared with 8 of the 9 parameters reads the 9th as its default (PG_NARGS)');
query('DROP FUNCTION r1_reason_old', db => 'r1_updated');

my ($rc, $out, $err) = psql('ALTER EXTENSION r1_pg UPDATE', db => 'r1_updated');
is($rc, 0, "ALTER EXTENSION r1_pg UPDATE from $versions[0]") or diag($err);
is(query('SELECT extversion FROM pg_extension WHERE extname = \'r1_pg\'', db => 'r1_updated'), $default,
	"updated to $default");
my $fresh = query($describe, db => 'r1_fresh');
my $updated = query($describe, db => 'r1_updated');
cmp_ok(length($fresh), '>', 5000, 'the description lists the objects');
if (!is($updated, $fresh, 'an updated install has exactly the objects of a fresh one'))
{
	my %f = map { $_ => 1 } split /\n/, $fresh;
	my %u = map { $_ => 1 } split /\n/, $updated;
	diag("only fresh:   $_") for grep { !$u{$_} } sort keys %f;
	diag("only updated: $_") for grep { !$f{$_} } sort keys %u;
}
like(query('SELECT version FROM r1_status()', db => 'r1_updated'), qr/^\Q$default\E( \(git [0-9a-f]+\))?$/,
	'r1_status().version names the build');
my $r1 = "$repo/bin/r1";
like(`$r1 --version`, qr/^r1 \Q$default\E/, 'r1 --version names the build');
query('DROP DATABASE r1_fresh');
query('DROP DATABASE r1_updated');

# ---- a second cluster: without the preload, then in binary-upgrade mode
my $dir = "$tmp/c_upgrade";
mkdir $dir;
chmod 0777, $dir;
my $data = "$dir/data";
my $sock = "$dir";
my ($irc, $iout) = as_server("$pgbin/initdb", '-D', $data, '-U', 'postgres', '-A', 'trust', '--no-sync');
is($irc, 0, 'initdb of a second cluster') or diag($iout);
open(my $conf, '>>', "$data/postgresql.conf") or die;
print $conf "listen_addresses = ''\nunix_socket_directories = '$sock'\nport = 5433\nfsync = off\n";
close $conf;

sub psql2
{
	my ($sql) = @_;
	my ($o, $e) = ('', '');
	run([$PSQL, '-XAtq', '-h', $sock, '-p', 5433, '-U', 'postgres', '-d', 'postgres', '-c', $sql],
		'>', \$o, '2>', \$e, timeout(60));
	chomp $o;
	return ($? >> 8, $o, $e);
}

sub start2
{
	my @opts = @_;
	my ($src, $so) = as_server("$pgbin/pg_ctl", '-D', $data, '-l', "$dir/log", '-w', '-t', 60,
		(@opts ? ('-o', "@opts") : ()), 'start');
	return $src == 0 ? 1 : (diag($so), 0);
}

sub stop2 { as_server("$pgbin/pg_ctl", '-D', $data, '-m', 'fast', '-w', 'stop'); }

ok(start2(), 'second cluster starts without r1_pg preloaded');
($rc, $out, $err) = psql2('CREATE EXTENSION r1_pg');
isnt($rc, 0, 'CREATE EXTENSION without the preload fails');
like($err, qr/ERROR:.*r1_pg must be loaded via shared_preload_libraries/, 'with an ERROR naming the setting');
unlike($err, qr/FATAL/, 'not a FATAL');
like($err, qr/HINT:.*shared_preload_libraries.*restart/, 'the hint says to add the preload and restart');
($rc, $out, $err) = psql2(q{DO $$ BEGIN CREATE EXTENSION r1_pg; EXCEPTION WHEN object_not_in_prerequisite_state THEN
  RAISE NOTICE 'caught'; END $$; SELECT 'session alive'});
is($out, 'session alive', 'the session survives the failed CREATE EXTENSION (SQLSTATE 55000)') or diag($err);
stop2();

open($conf, '>>', "$data/postgresql.conf") or die;
print $conf "shared_preload_libraries = 'r1_pg'\nr1.model = '$model'\nr1.device = 'cpu'\nr1.jobs_database = 'postgres'\n";
close $conf;
ok(start2('-b'), 'second cluster starts in binary-upgrade mode with r1_pg preloaded');
sleep 3;
my $pm = do { open(my $fh, '<', "$data/postmaster.pid") or die; my $l = <$fh>; chomp $l; $l };
my @children = split /\n/, `ps -o args= --ppid $pm`;
ok(!grep({ /r1 (engine|jobs|trace)/ } @children), 'binary-upgrade mode: no r1 engine, jobs or trace writer worker')
	or diag(join("\n", @children));
stop2();
ok(start2(), 'second cluster starts normally again');
is((psql2('CREATE EXTENSION r1_pg'))[0], 0, 'CREATE EXTENSION with the preload');
ok(wait_for('engine ready on the second cluster', sub { (psql2('SELECT state FROM r1_status()'))[1] eq 'ready' }, 90),
	'its engine comes up outside binary-upgrade mode');
stop2();

done_testing();
