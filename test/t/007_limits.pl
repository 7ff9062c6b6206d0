# Limits against the running test cluster: per-role daily token quotas
# (r1.role_quota, counted in shared memory), and text in a LATIN1 database:
# prompts converted to UTF-8 for the engine, output converted back, and a
# clear error (22P05) for output the database encoding cannot hold.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use IPC::Run qw(run);
use Test::More;

my $model = $ENV{R1_TEST_MODEL} or plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)';
my $tmp = $ENV{R1_TEST_TMP};
my $r1 = $ENV{R1_BIN} // "$FindBin::Bin/../../bin/r1";

ok(wait_ready(), 'engine is ready');
my $expected = query($GREEDY);
my $T = query(q{SELECT prompt_tokens + completion_tokens FROM r1_reason('What is 6*7?', temperature => 0)});
cmp_ok($T, '>', 0, "a greedy call costs $T tokens");

# SQLSTATE of a statement, run as $user
sub sqlstate
{
	my ($sql, %opt) = @_;
	my (undef, $out, $err) = psql(qq{DO \$\$ BEGIN PERFORM ($sql); RAISE NOTICE 'sqlstate none';
	  EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'sqlstate %', SQLSTATE; END \$\$}, %opt);
	return $err =~ /sqlstate (\w+)/ ? $1 : "?: $err";
}

# wait until new sessions see a reloaded setting
sub wait_setting
{
	my ($name, $want) = @_;
	return wait_for("$name = $want", sub { query("SHOW $name") eq $want }, 10);
}

# ---- per-role daily quotas
{
	query(q{DROP ROLE IF EXISTS regress_alice, regress_bob, regress_carol});
	query(q{CREATE ROLE regress_bob NOLOGIN IN ROLE r1_user});
	query(q{CREATE ROLE regress_alice LOGIN IN ROLE r1_user, regress_bob});
	query(q{CREATE ROLE regress_carol LOGIN IN ROLE r1_user});
	my $quota = 2 * $T + 1;
	set_conf(qq{r1.role_quota = 'regress_alice=$quota'});
	ok(wait_setting('r1.role_quota', "regress_alice=$quota"), 'r1.role_quota reloaded');

	is(query($GREEDY, user => 'regress_alice'), $expected, 'alice: first call under the quota');
	is(query(q{SELECT format('%s|%s|%s', daily_quota, tokens_used, tokens_left) FROM r1_quota_usage()}, user => 'regress_alice'),
		"$quota|$T|" . ($quota - $T), 'r1_quota_usage() shows her usage');
	is(query($GREEDY, user => 'regress_alice'), $expected, 'second call');
	is(query($GREEDY, user => 'regress_alice'), $expected, 'third call (still under: the quota is checked before a call)');
	my $used = 3 * $T;
	my ($rc, $out, $err) = psql($GREEDY, user => 'regress_alice');
	isnt($rc, 0, 'fourth call refused');
	like($err, qr/ERROR:  role "regress_alice" has used its daily token quota/, 'quota error');
	like($err, qr/DETAIL:  It has used $used of its $quota tokens today \(r1.role_quota\); the quota resets at \d{4}-\d\d-\d\d 00:00:00\+00/,
		'detail: usage, quota and reset time (00:00 UTC)');
	like($err, qr/HINT:  Wait until the quota resets at 00:00 UTC/, 'hint');
	is(sqlstate(q{SELECT r1_reason('x')}, user => 'regress_alice'), '53400', 'SQLSTATE 53400');
	is(sqlstate(q{SELECT r1_reason('x')}, user => 'regress_alice', db => 'postgres'), '53400', 'refused again in another database');
	(undef, $out, $err) = psql("SET ROLE regress_bob; $GREEDY", user => 'regress_alice');
	like($err, qr/has used its daily token quota/, 'SET ROLE does not escape it: the session user is charged');
	is(query($GREEDY, user => 'regress_carol'), $expected, 'an unlisted role is not limited');
	is(query(q{SELECT string_agg(format('%s=%s/%s', role, tokens_used, daily_quota), ',') FROM r1_quota_usage()}),
		"regress_alice=$used/$quota", 'superuser sees every row of r1_quota_usage()');
	is(query(q{SELECT count(*) FROM r1_quota_usage()}, user => 'regress_carol'), '0', 'carol sees only her own (none)');

	# "*" covers everybody else but superusers; 0 means no calls
	set_conf(qq{r1.role_quota = 'regress_alice=1000000, *=0'});
	ok(wait_setting('r1.role_quota', 'regress_alice=1000000, *=0'), 'reloaded with *=0');
	is(query($GREEDY, user => 'regress_alice'), $expected, 'a raised quota lets alice call again');
	is(query(q{SELECT tokens_used FROM r1_quota_usage()}, user => 'regress_alice'), $used + $T, 'usage kept across reloads');
	is(sqlstate(q{SELECT r1_reason('x')}, user => 'regress_carol'), '53400', '*=0: carol is refused');
	is(query($GREEDY), $expected, '*=0 does not apply to superusers');

	# concurrent calls are all counted
	my $before = query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'});
	my @s;
	{
		local $ENV{PGUSER} = 'regress_alice';
		@s = map { bg($GREEDY, "r1_quota_$_") } 1 .. 8;
	}
	my $good = 0;
	for my $s (@s) { bg_finish($s); $good++ if $s->{out} eq $expected; }
	is($good, 8, '8 concurrent calls of alice succeed');
	is(query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'}), $before + 8 * $T,
		'and each is charged exactly once');

	# job items are charged to the role that submitted them, as they finish
	query(q{CREATE EXTENSION IF NOT EXISTS r1_pg}, db => 'r1_jobs');
	my $before_job = query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'});
	my $job = query(q{SELECT r1_submit_query($$SELECT k, 'What is 6*7?' FROM generate_series(1, 2) k$$, temperature => 0)},
		db => 'r1_jobs', user => 'regress_alice');
	ok(wait_for('job done', sub { query("SELECT state FROM r1.jobs WHERE id = $job", db => 'r1_jobs') eq 'done' }, 60),
		"alice's job of 2 items is done");
	is(query(q{SELECT tokens_used FROM r1_quota_usage() WHERE role = 'regress_alice'}), $before_job + 2 * $T,
		'job items are charged to the submitting role');
	query(q{DROP EXTENSION r1_pg}, db => 'r1_jobs');

	reset_conf('r1.role_quota');
	ok(wait_setting('r1.role_quota', ''), 'r1.role_quota reset');
	is(query($GREEDY, user => 'regress_carol'), $expected, 'no quota: carol calls again');
	query(q{DROP ROLE regress_alice, regress_bob, regress_carol});
}

# ---- a LATIN1 database
{
	query("DROP DATABASE IF EXISTS r1_latin1");
	query("CREATE DATABASE r1_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
	query("CREATE EXTENSION r1_pg", db => 'r1_latin1');
	my $e_latin1 = q{convert_from('\xe9'::bytea, 'LATIN1')};
	my $ids = query(q{SELECT r1_tokenize(U&'caf\00e9 cr\00e8me br\00fbl\00e9e')});
	like($ids, qr/^\{\d+(,\d+)+\}$/, "UTF8 database: tokens $ids");
	is(query(q{SELECT r1_tokenize(convert_from('\x636166e92063728e8d65206272fb6ce965'::bytea, 'LATIN1'))}, db => 'r1_latin1'),
		query(q{SELECT r1_tokenize(convert_from('\x636166e92063728e8d65206272fb6ce965'::bytea, 'LATIN1'))}),
		'LATIN1 database: r1_tokenize gets the same ids as in UTF8') ;
	is(query("SELECT r1_tokenize($e_latin1)", db => 'r1_latin1'), query(q{SELECT r1_tokenize(U&'\00e9')}),
		'LATIN1 e-acute tokenized as UTF-8 U+00E9');
	is(query("SELECT r1_count_tokens(repeat($e_latin1, 5))", db => 'r1_latin1'), query(q{SELECT r1_count_tokens(repeat(U&'\00e9', 5))}),
		'r1_count_tokens agrees');
	is(query("SELECT format('%s|%s|%s|%s', think, answer, boxed, finish_reason) FROM r1_reason('What is 6*7? ' || $e_latin1, temperature => 0)", db => 'r1_latin1'),
		query(q{SELECT format('%s|%s|%s|%s', think, answer, boxed, finish_reason) FROM r1_reason(U&'What is 6*7? \00e9', temperature => 0)}),
		'r1_reason with a LATIN1 prompt: same result as in UTF8');

	# models whose output has characters LATIN1 has (é, à) and lacks (中)
	my $m_latin = "$tmp/model-latin";
	my $m_cjk = "$tmp/model-cjk";
	run([$r1, 'demo-model', '--out', $m_latin, '--text', "Voil\x{c3}\x{a0}, caf\x{c3}\x{a9} ok.\n</think>\n\nThe answer is \$\\boxed{\x{c3}\x{a9}}\$."], '>', \my $o1) or die;
	run([$r1, 'demo-model', '--out', $m_cjk, '--text', "Oui, \x{e4}\x{b8}\x{ad} ok.\n</think>\n\nThe answer is \$\\boxed{x}\$."], '>', \my $o2) or die;
	system('chmod', '-R', 'a+rX', $m_latin, $m_cjk);

	set_conf("r1.model = '$m_latin'");
	ok(wait_for('latin model', sub { status('state') eq 'ready' && status('model_path') eq $m_latin }, 30), 'serving a model that writes e-acute');
	is(query(q{SELECT encode(convert_to(think || '|' || boxed, 'LATIN1'), 'hex') FROM r1_reason('hi', temperature => 0)}, db => 'r1_latin1'),
		unpack('H*', "Voil\xe0, caf\xe9 ok.|\xe9"), 'LATIN1 database: output converted to LATIN1 bytes');

	set_conf("r1.model = '$m_cjk'");
	ok(wait_for('cjk model', sub { status('state') eq 'ready' && status('model_path') eq $m_cjk }, 30), 'serving a model that writes U+4E2D');
	is(query(q{SELECT think FROM r1_reason('hi', temperature => 0)}), "Oui, \x{e4}\x{b8}\x{ad} ok.", 'UTF8 database gets it');
	my ($rc, $out, $err) = psql(q{SELECT think FROM r1_reason('hi', temperature => 0)}, db => 'r1_latin1');
	isnt($rc, 0, 'LATIN1 database: the call fails');
	like($err, qr/ERROR:  the model's output has a character that encoding "LATIN1" cannot represent/, 'with a clear error');
	like($err, qr/HINT:  Call the model from a UTF8 database/, 'and a hint');
	is(sqlstate(q{SELECT r1_reason('hi', temperature => 0)}, db => 'r1_latin1'), '22P05', 'SQLSTATE 22P05');
	is(query(q{SELECT 1}, db => 'r1_latin1'), '1', 'the session is fine afterwards');

	reset_conf('r1.model');
	ok(wait_for('demo model', sub { status('state') eq 'ready' && status('model_path') eq $model }, 30), 'back to the demo model');
	is(query($GREEDY), $expected, 'serving it');
	query("DROP DATABASE r1_latin1");
}

check_no_orphans('limits');
done_testing();
