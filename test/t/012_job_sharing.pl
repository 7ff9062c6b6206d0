# The job workers are shared between roles (issue 13, item 8): a big job of
# one role does not hold back another role's jobs; r1.job_role_max_running
# caps one role's running items; a reload that changes r1.job_workers hands
# the running items back without counting an attempt, so an item never goes
# past r1.job_max_attempts.  Roles are the session users that submitted the
# jobs (a superuser submits long ignore_eos items with SET SESSION
# AUTHORIZATION).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use R1Test;
use Test::More;

plan skip_all => 'R1_TEST_MODEL not set (run test/run-extension-tests.sh)' unless $ENV{R1_TEST_MODEL};

my $db = 'r1_jobs';
ok(wait_ready(), 'engine is ready');
query('DROP ROLE IF EXISTS regress_big, regress_small');
query('CREATE ROLE regress_big LOGIN IN ROLE r1_user');
query('CREATE ROLE regress_small LOGIN IN ROLE r1_user');
query('CREATE EXTENSION IF NOT EXISTS r1_pg', db => $db);

sub workers { return query(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'r1 job worker'}); }
ok(wait_for('4 workers', sub { workers() == 4 }, 30), '4 job workers');

# a job of $n long items (ignore_eos, $tokens tokens each) submitted as $role
sub submit_long
{
	my ($role, $n, $tokens) = @_;
	return query(qq{SET r1.debug_ignore_eos = on; SET SESSION AUTHORIZATION $role;
		SELECT r1_submit_query(\$\$SELECT k, 'Count to ' || k FROM generate_series(1, $n) k\$\$, max_tokens => $tokens, temperature => 0)},
		db => $db);
}
sub state_counts
{
	my ($id) = @_;
	return query("SELECT format('%s/%s/%s', count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'running'),
		count(*) FILTER (WHERE state = 'done')) FROM r1.job_items WHERE job_id = $id", db => $db);
}
sub job_state { return query("SELECT state FROM r1.jobs WHERE id = $_[0]", db => $db); }

# ---- fair share: a later, small job of another role is not stuck behind a big one
{
	my $big = submit_long('regress_big', 60, 100);
	ok(wait_for('big job running', sub { (split m{/}, state_counts($big))[1] >= 4 }, 60), 'the big job fills the workers');
	my $small = submit_long('regress_small', 2, 20);
	ok(wait_for('small job done', sub { job_state($small) eq 'done' }, 120), 'the small job of another role is done');
	my ($queued) = split m{/}, state_counts($big);
	cmp_ok($queued, '>=', 20, "while the big job still has $queued items queued (first-in-first-out would have run them all first)");
	is(query("SELECT session_role FROM r1.jobs WHERE id = $small", db => $db), 'regress_small', 'jobs record the submitting session user');
	query("SELECT r1_cancel_job($big)", db => $db);
}

# ---- r1.job_role_max_running caps a role's running items
{
	set_conf(q{r1.job_role_max_running = 'regress_big=1'});
	ok(wait_for('setting', sub { query('SHOW r1.job_role_max_running') eq 'regress_big=1' }, 10), 'r1.job_role_max_running reloaded');
	sleep 2;    # the workers read it between items
	my $big = submit_long('regress_big', 8, 60);
	my $small = submit_long('regress_small', 6, 60);
	my ($max_big, $max_small) = (0, 0);
	while (job_state($small) ne 'done' || job_state($big) ne 'done')
	{
		my $b = (split m{/}, state_counts($big))[1];
		my $s = (split m{/}, state_counts($small))[1];
		$max_big = $b if $b > $max_big;
		$max_small = $s if $s > $max_small;
		last if job_state($big) =~ /failed|cancelled/;
		select(undef, undef, undef, 0.05);
	}
	is($max_big, 1, 'at most 1 item of regress_big ran at once');
	cmp_ok($max_small, '>=', 2, "while regress_small ran up to $max_small");
	is(job_state($big), 'done', 'the capped job finishes');
	query('ALTER SYSTEM RESET r1.job_role_max_running');
	query('SELECT pg_reload_conf()');
}

# ---- a reload that changes r1.job_workers does not use up attempts
{
	set_conf('r1.job_max_attempts = 1');
	sleep 2;
	my $id = submit_long('regress_big', 4, 150);
	ok(wait_for('items running', sub { (split m{/}, state_counts($id))[1] >= 2 }, 60), 'items run');
	set_conf('r1.job_workers = 2');
	ok(wait_for('2 workers', sub { workers() == 2 }, 30), 'r1.job_workers = 2: the workers were replaced');
	ok(wait_for('job done', sub { job_state($id) =~ /done|failed/ }, 180), 'the job finishes');
	is(job_state($id), 'done', 'done, not failed: the reload did not count attempts');
	is(query("SELECT max(attempts) FROM r1.job_items WHERE job_id = $id", db => $db), 1,
		'no item went past r1.job_max_attempts = 1');
	cmp_ok(query("SELECT count(*) FROM r1.job_items WHERE job_id = $id AND last_error LIKE 'the job worker (pid %) ended during the attempt'", db => $db),
		'>=', 1, 'the interrupted items say why they ran again');
	query('ALTER SYSTEM RESET r1.job_workers');
	query('ALTER SYSTEM RESET r1.job_max_attempts');
	query('SELECT pg_reload_conf()');
	ok(wait_for('4 workers', sub { workers() == 4 }, 30), 'back to 4 workers');
}

query('DROP EXTENSION r1_pg', db => $db);
query('DROP ROLE regress_big, regress_small');
done_testing();
