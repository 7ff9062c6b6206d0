/*
 * jobs_worker.c - the "r1 job worker" processes, which the launcher
 * (jobs_launcher.c) keeps running in r1.jobs_database.
 *
 * A worker loops: wait until the extension is installed and the engine ready;
 * claim one queued item (FOR UPDATE SKIP LOCKED; state running, attempts + 1,
 * the worker's pid and start time as the lease token) and commit.  Which
 * item: the workers are shared fairly between roles (the session user that
 * submitted the job, r1.jobs.session_role): the role with the fewest items
 * running (counted in the shared worker slots, where a claiming worker
 * publishes its role first, so r1.job_role_max_running holds exactly) and
 * then the oldest job goes first, and within a role, items in job and item
 * order.  Before the claim, the item's most possible cost (prompt bytes,
 * template, max_tokens) is reserved against the role's r1.role_quota; an
 * item that does not fit stays queued (last_error says why) until the role's
 * running calls settle or the quota resets at 00:00 UTC, and one that could
 * never fit (more than the whole quota) fails.  Then call the
 * engine host outside any transaction (r1_call: the same socket protocol as
 * r1_reason, so N workers make a batch of N); then in one transaction write
 * the result (or the error) only if the lease still holds, and when no item
 * of the job is left, finish the job and NOTIFY r1_jobs.  So a finished item
 * is never run again, and a result of a cancelled item is discarded.
 *
 * Items whose lease holder is gone (a worker that died, a server crash or an
 * immediate shutdown) are recognized by their pid and start time not being in
 * pg_stat_activity, and go back to the queue (at worker start, then every
 * few seconds between items).
 *
 * Attempts: an engine error for the item (bad parameters, prompt too long, the
 * host died during the call) counts; after r1.job_max_attempts the item is
 * failed.  A full queue, an engine that is not configured or failed to load,
 * and an interrupted call (a cancel) do not count: the item is queued again.
 *
 * A worker stopped with SIGTERM (the launcher on a reload, shutdown,
 * pg_terminate_backend) interrupts its engine call and hands its item back
 * to the queue without counting the attempt, then exits.  An item is never
 * claimed at r1.job_max_attempts: an item whose worker died at its last
 * attempt fails instead of running again.
 *
 * A worker of an r1.job_servers entry (bgw_extra's server) does the same
 * with another server's engine: it runs r1_reason() there over libpq
 * (jobs_remote.c) and writes the result and the trace here; the item's
 * server column says where it ran.
 *
 * Workers exit only through proc_exit(0/1): SIGTERM, postmaster death, a new
 * launcher.  Every other error is logged, rolled back, and the loop goes on.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "client.h"
#include "jobs.h"
#include "job_servers.h"
#include "jobs_remote.h"
#include "quota.h"
#include "request.h"
#include "traces.h"
#include "settings.h"
#include "shmem.h"

#define R1_JOBS_IDLE_MS				5000	/* poll when nothing is queued */
#define R1_JOBS_RECOVER_MS			5000	/* look for items of ended workers */
#define R1_JOBS_WAIT_SHORT_MS		200 /* engine loading or restarting */
#define R1_JOBS_WAIT_LONG_MS		1000	/* no extension, engine not
											 * usable, an error */

/* The item this worker holds: claimed and committed, result not yet written. */
typedef struct R1JobItem
{
	bool		held;
	int64		job_id;
	int32		item_no;
	int32		attempts;
	StringInfoData request;		/* in r1_item_ctx */
	Jsonb	   *response;		/* NULL when the call failed */
	char		error[1024];	/* why it failed */
	bool		refund;			/* the failure does not count as an attempt */
	bool		permanent;		/* no attempt can succeed: fail the item now */
	Oid			owner;			/* the submitting role (created_by), as traced */
	Oid			session_role;	/* the submitting session user, charged the
								 * tokens */
	R1QuotaHold hold;			/* its reservation (r1.role_quota) */
	bool		charged;		/* hold settled (once, even if the write is
								 * retried) */
	text	   *prompt;			/* in r1_item_ctx, for r1.traces */
	Jsonb	   *params;			/* in r1_item_ctx: the job's parameters */
	TimestampTz started;
} R1JobItem;

static int	r1_slot = -1;
static R1JobItem r1_item;
static volatile sig_atomic_t r1_stop_requested = false;
static MemoryContext r1_item_ctx = NULL;
static bool r1_logged_no_extension = false;
static int	r1_server = 0;		/* 0: this server's engine; n: r1.job_servers
								 * entry n */
static bool r1_items_have_server = false;	/* r1.job_items.server exists
											 * (0.3.0) */

static void
r1_job_worker_on_exit(int code, Datum arg)
{
	SpinLockAcquire(&r1_jobs_shared->mutex);
	if (r1_jobs_shared->slots[r1_slot].pid == MyProcPid)
	{
		r1_jobs_shared->slots[r1_slot].pid = 0;
		r1_jobs_shared->slots[r1_slot].latch = NULL;
		r1_jobs_shared->slots[r1_slot].job_id = 0;
		r1_jobs_shared->slots[r1_slot].role = InvalidOid;
	}
	SpinLockRelease(&r1_jobs_shared->mutex);
}

/*
 * SIGTERM: stop after handing the item back.  The query cancel interrupts
 * the engine call (or a statement); a second SIGTERM is die().
 */
static void
r1_job_worker_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (r1_stop_requested)
		die(postgres_signal_arg);
	else
	{
		r1_stop_requested = true;
		InterruptPending = true;
		QueryCancelPending = true;
		SetLatch(MyLatch);
	}
	errno = save_errno;
}

/*
 * Publish that this worker runs (or is claiming) an item of role, unless the
 * role already has its r1.job_role_max_running; InvalidOid clears it.
 */
static bool
r1_set_slot_role(Oid role, int64 cap)
{
	bool		ok = true;

	SpinLockAcquire(&r1_jobs_shared->mutex);
	if (OidIsValid(role) && cap >= 0)
	{
		int			running = 0;

		for (int i = 0; i < R1_JOBS_MAX_WORKERS; i++)
			if (i != r1_slot && r1_jobs_shared->slots[i].pid != 0 &&
				r1_jobs_shared->slots[i].role == role)
				running++;
		ok = running < cap;
	}

	/*
	 * a worker being replaced may share its slot with its successor for a
	 * moment
	 */
	if (ok && r1_jobs_shared->slots[r1_slot].pid == MyProcPid)
		r1_jobs_shared->slots[r1_slot].role = role;
	SpinLockRelease(&r1_jobs_shared->mutex);
	return ok;
}

/* items of role running in the other workers */
static int
r1_role_running(Oid role)
{
	int			running = 0;

	SpinLockAcquire(&r1_jobs_shared->mutex);
	for (int i = 0; i < R1_JOBS_MAX_WORKERS; i++)
		if (i != r1_slot && r1_jobs_shared->slots[i].pid != 0 &&
			r1_jobs_shared->slots[i].role == role)
			running++;
	SpinLockRelease(&r1_jobs_shared->mutex);
	return running;
}

static void
r1_set_slot_job(int64 job_id)
{
	SpinLockAcquire(&r1_jobs_shared->mutex);
	if (r1_jobs_shared->slots[r1_slot].pid == MyProcPid)
		r1_jobs_shared->slots[r1_slot].job_id = job_id;
	SpinLockRelease(&r1_jobs_shared->mutex);
}

static void
r1_worker_sleep(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

static void
r1_begin(const char *what)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, what);
}

static void
r1_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

static void
r1_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "r1 job worker: unexpected SPI result %d for: %s", rc, sql);
}

static bool
r1_extension_installed(void)
{
	bool		installed;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("r1_pg", true));
	if (installed)
	{
		Oid			nsp = get_namespace_oid("r1", true);
		Oid			rel = OidIsValid(nsp) ? get_relname_relid("job_items", nsp) : InvalidOid;

		/* older SQL (before 0.3.0) does not record where an item ran */
		r1_items_have_server = OidIsValid(rel) && get_attnum(rel, "server") != InvalidAttrNumber;
	}
	if (!installed && !r1_logged_no_extension)
		ereport(LOG,
				(errmsg("r1 job worker: extension r1_pg is not installed in database \"%s\"; waiting for it",
						get_database_name(MyDatabaseId)),
				 errhint("Run CREATE EXTENSION r1_pg in that database.")));
	CommitTransactionCommand();
	r1_logged_no_extension = !installed;
	return installed;
}

/*
 * Finish job_id when no item of it is queued or running (SPI connected, in
 * the transaction that changed its last item): state done or failed, NOTIFY.
 */
static void
r1_finish_job(int64 job_id)
{
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};

	/*
	 * Lock the job row, then look at its items in a new statement (a new
	 * snapshot): of two workers that finish the last two items, the second
	 * sees the first's commit.
	 */
	r1_exec("SELECT FROM r1.jobs WHERE id = $1 FOR UPDATE", 1, types, values, NULL, SPI_OK_SELECT);

	/*
	 * clock_timestamp: later than the (transaction start) times of the items
	 * it saw
	 */
	r1_exec("UPDATE r1.jobs j SET finished_at = clock_timestamp(),"
			"  state = CASE WHEN EXISTS (SELECT FROM r1.job_items f WHERE f.job_id = j.id AND f.state = 'failed')"
			"          THEN 'failed' ELSE 'done' END"
			" WHERE j.id = $1 AND j.state IN ('queued', 'running') AND NOT EXISTS"
			"  (SELECT FROM r1.job_items o WHERE o.job_id = j.id AND o.state IN ('queued', 'running'))",
			1, types, values, NULL, SPI_OK_UPDATE);
	if (SPI_processed == 1)
	{
		char		payload[32];

		snprintf(payload, sizeof(payload), "%lld", (long long) job_id);
		Async_Notify(R1_JOBS_CHANNEL, payload);
	}
}

/*
 * Put the items of ended workers, and any of this worker's, back in the
 * queue; those that have used r1.job_max_attempts fail instead.
 */
static void
r1_recover_items(void)
{
	Oid			types[3] = {INT4OID, TIMESTAMPTZOID, INT4OID};
	Datum		values[3] = {Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp),
	Int32GetDatum(r1_job_max_attempts)};
	int64	   *failed_jobs = NULL;
	uint64		nfailed = 0;

	r1_begin("r1 jobs: requeueing items of ended workers");
	r1_exec("UPDATE r1.job_items i SET"
			"  state = CASE WHEN i.attempts >= $3 THEN 'failed' ELSE 'queued' END,"
			"  finished_at = CASE WHEN i.attempts >= $3 THEN now() END,"
			"  runner_pid = NULL, runner_start = NULL,"
			"  last_error = format('the job worker (pid %s) ended during the attempt', i.runner_pid)"
			"   || CASE WHEN i.attempts >= $3 THEN format('; %s of %s attempts used', i.attempts, $3) ELSE '' END"
			" WHERE i.state = 'running' AND"
			"  ((i.runner_pid = $1 AND i.runner_start = $2) OR"
			"   NOT EXISTS (SELECT FROM pg_catalog.pg_stat_get_activity(i.runner_pid) a"
			"               WHERE a.backend_start = i.runner_start))"
			" RETURNING i.job_id, i.state = 'failed'",
			3, types, values, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed > 0)
	{
		SPITupleTable *tt = SPI_tuptable;
		uint64		n = SPI_processed;

		ereport(LOG,
				(errmsg("r1 job worker: %llu job items of ended workers queued again or failed",
						(unsigned long long) n)));
		failed_jobs = palloc(sizeof(int64) * n);
		for (uint64 i = 0; i < n; i++)
		{
			bool		isnull;

			if (DatumGetBool(SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &isnull)))
				failed_jobs[nfailed++] = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		}
		r1_jobs_wake_at_commit();
	}
	for (uint64 i = 0; i < nfailed; i++)
		r1_finish_job(failed_jobs[i]);
	r1_commit();
}

/* Mark the item failed without running it (a claim that cannot run it); finish its job. */
static void
r1_fail_unclaimed(int64 job_id, int32 item_no, const char *why)
{
	Oid			types[3] = {INT8OID, INT4OID, TEXTOID};
	Datum		values[3] = {Int64GetDatum(job_id), Int32GetDatum(item_no), CStringGetTextDatum(why)};

	r1_exec("UPDATE r1.job_items SET state = 'failed', finished_at = now(), last_error = $3"
			" WHERE job_id = $1 AND item_no = $2 AND state = 'queued'",
			3, types, values, NULL, SPI_OK_UPDATE);
	r1_finish_job(job_id);
}

typedef struct R1ClaimRole
{
	Oid			role;
	char		name[NAMEDATALEN];
	int64		first_job;
	int			running;
} R1ClaimRole;

static int
r1_claim_role_cmp(const void *a, const void *b)
{
	const R1ClaimRole *x = a;
	const R1ClaimRole *y = b;

	if (x->running != y->running)
		return x->running < y->running ? -1 : 1;
	return x->first_job < y->first_job ? -1 : x->first_job > y->first_job;
}

/*
 * Claim an item; false when none can run now.  Roles in fairness order
 * (fewest running, then oldest job), each within r1.job_role_max_running;
 * the item's cost reserved against its role's quota.
 */
static bool
r1_claim_item(void)
{
	bool		claimed = false;
	R1ClaimRole *roles;
	int			nroles;

	r1_begin("r1 jobs: claiming an item");
	/* roles (session users) with queued items, and their oldest job */
	r1_exec("SELECT r.oid, r.rolname, min(j.id) FROM r1.jobs j"
			" JOIN pg_catalog.pg_roles r ON r.rolname = coalesce(j.session_role, j.created_by)"
			" WHERE j.state IN ('queued', 'running')"
			"  AND EXISTS (SELECT FROM r1.job_items q WHERE q.job_id = j.id AND q.state = 'queued')"
			" GROUP BY r.oid, r.rolname",
			0, NULL, NULL, NULL, SPI_OK_SELECT);
	nroles = (int) SPI_processed;
	roles = palloc(sizeof(R1ClaimRole) * Max(nroles, 1));
	for (int i = 0; i < nroles; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		roles[i].role = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		strlcpy(roles[i].name, NameStr(*DatumGetName(SPI_getbinval(tup, desc, 2, &isnull))), NAMEDATALEN);
		roles[i].first_job = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		roles[i].running = r1_role_running(roles[i].role);
	}
	qsort(roles, nroles, sizeof(R1ClaimRole), r1_claim_role_cmp);

	for (int k = 0; k < nroles && !claimed; k++)
	{
		Oid			types[3] = {NAMEOID, INT4OID, TIMESTAMPTZOID};
		Datum		values[3];
		HeapTuple	tup;
		TupleDesc	desc;
		bool		isnull;
		int64		job_id;
		int32		item_no,
					attempts;
		text	   *prompt;
		Jsonb	   *params;
		Oid			owner;
		size_t		prompt_len,
					system_len = 0;
		text	   *system;
		char	   *why;
		R1QuotaFit	fit;
		int64		cap = r1_role_list_lookup(r1_job_role_max_running_list, roles[k].role, true);

		/* the role's share: publish it first, so concurrent claims count it */
		if (!r1_set_slot_role(roles[k].role, cap))
			continue;
		values[0] = CStringGetDatum(roles[k].name);
		r1_exec("SELECT q.job_id, q.item_no, q.attempts, q.prompt, j.parameters,"
				"  (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = j.created_by)"
				" FROM r1.job_items q JOIN r1.jobs j ON j.id = q.job_id"
				" WHERE q.state = 'queued' AND j.state IN ('queued', 'running')"
				"  AND coalesce(j.session_role, j.created_by) = $1"
				" ORDER BY q.job_id, q.item_no LIMIT 1 FOR UPDATE OF q SKIP LOCKED",
				1, types, values, NULL, SPI_OK_SELECT);
		if (SPI_processed != 1)
		{
			r1_set_slot_role(InvalidOid, -1);
			continue;
		}
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		job_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		item_no = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		prompt = DatumGetTextPP(SPI_getbinval(tup, desc, 4, &isnull));
		params = DatumGetJsonbP(SPI_getbinval(tup, desc, 5, &isnull));
		owner = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
		if (isnull)
			owner = InvalidOid;

		/* r1.job_max_attempts lowered since: never run it past the maximum */
		if (attempts >= r1_job_max_attempts)
		{
			r1_fail_unclaimed(job_id, item_no,
							  psprintf("%d of r1.job_max_attempts (%d) attempts used", attempts, r1_job_max_attempts));
			r1_set_slot_role(InvalidOid, -1);
			continue;
		}

		/* the most it can cost, against the role's quota */
		(void) r1_text_to_utf8(prompt, &prompt_len);
		system = r1_json_text(params, "system");
		if (system)
			(void) r1_text_to_utf8(system, &system_len);
		fit = r1_quota_try_reserve(&r1_item.hold, roles[k].role,
								   r1_quota_estimate(prompt_len + system_len, r1_json_int(params, "max_tokens")),
								   &why);
		if (fit != R1_QUOTA_FITS)
		{
			r1_set_slot_role(InvalidOid, -1);
			if (fit == R1_QUOTA_NEVER)
				r1_fail_unclaimed(job_id, item_no, why);
			else
			{
				/* it waits in the queue; last_error says for what */
				Oid			wtypes[3] = {INT8OID, INT4OID, TEXTOID};
				Datum		wvalues[3] = {Int64GetDatum(job_id), Int32GetDatum(item_no),
				CStringGetTextDatum(psprintf("waiting for the quota: %s", why))};

				r1_exec("UPDATE r1.job_items SET last_error = $3"
						" WHERE job_id = $1 AND item_no = $2 AND last_error IS DISTINCT FROM $3",
						3, wtypes, wvalues, NULL, SPI_OK_UPDATE);
			}
			continue;
		}

		{
			Oid			ctypes[5] = {INT8OID, INT4OID, INT4OID, TIMESTAMPTZOID, TEXTOID};
			Datum		cvalues[5] = {Int64GetDatum(job_id), Int32GetDatum(item_no),
				Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp),
			CStringGetTextDatum(r1_server ? r1_jobs_remote_label() : "local")};
			char	   *prompt_utf8;
			size_t		len;
			R1Params	rparams;
			MemoryContext old;

			if (r1_items_have_server)
				r1_exec("UPDATE r1.job_items SET state = 'running', attempts = attempts + 1,"
						"  started_at = clock_timestamp(), finished_at = NULL, runner_pid = $3, runner_start = $4,"
						"  server = $5"
						" WHERE job_id = $1 AND item_no = $2",
						5, ctypes, cvalues, NULL, SPI_OK_UPDATE);
			else
				r1_exec("UPDATE r1.job_items SET state = 'running', attempts = attempts + 1,"
						"  started_at = clock_timestamp(), finished_at = NULL, runner_pid = $3, runner_start = $4"
						" WHERE job_id = $1 AND item_no = $2",
						4, ctypes, cvalues, NULL, SPI_OK_UPDATE);
			r1_exec("UPDATE r1.jobs SET state = 'running' WHERE id = $1 AND state = 'queued'",
					1, ctypes, cvalues, NULL, SPI_OK_UPDATE);

			r1_item.job_id = job_id;
			r1_item.item_no = item_no;
			r1_item.attempts = attempts + 1;
			r1_item.owner = owner;
			r1_item.session_role = roles[k].role;

			/* the request outlives the transaction */
			old = MemoryContextSwitchTo(r1_item_ctx);
			r1_item.prompt = DatumGetTextPCopy(PointerGetDatum(prompt));
			r1_item.params = DatumGetJsonbPCopy(JsonbPGetDatum(params));
			r1_item.started = GetCurrentTimestamp();
			initStringInfo(&r1_item.request);
			prompt_utf8 = r1_text_to_utf8(prompt, &len);
			r1_params_from_jsonb(params, &rparams);

			/*
			 * a job item has no statement_timeout: no engine deadline either,
			 * as before
			 */
			r1_build_request(&r1_item.request, prompt_utf8, &rparams, 0, R1_REQ_NO_DEADLINE);
			MemoryContextSwitchTo(old);
			r1_item.response = NULL;
			r1_item.error[0] = '\0';
			r1_item.refund = false;
			r1_item.permanent = false;
			r1_item.charged = false;

			/*
			 * published before the commit: a cancel that commits later finds
			 * it
			 */
			r1_set_slot_job(r1_item.job_id);
			claimed = true;
		}
	}

	/*
	 * an ERROR before this: the main loop gives the reservation and the share
	 * back
	 */
	r1_commit();
	r1_item.held = claimed;
	return claimed;
}

/* Does this error leave the attempt uncounted? */
static bool
r1_error_is_refunded(int sqlerrcode)
{
	R1Shared	snap;

	/* 57000: the engine was replaced for a reload (r1.reload_timeout passed) */
	if (sqlerrcode == ERRCODE_QUERY_CANCELED ||
		sqlerrcode == ERRCODE_CONFIGURATION_LIMIT_EXCEEDED ||
		sqlerrcode == ERRCODE_OPERATOR_INTERVENTION)
		return true;
	if (sqlerrcode != ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
		return false;

	/*
	 * the engine is not usable: not the item's fault (a host that died during
	 * the call is)
	 */
	r1_shmem_snapshot(&snap);
	return snap.state == R1_STATE_NOT_CONFIGURED || snap.state == R1_STATE_FAILED ||
		snap.state == R1_STATE_NO_DEVICE || snap.state == R1_STATE_STARTING;
}

/* Run the held item through the engine, outside any transaction. */
static void
r1_run_item(void)
{
	MemoryContext old = MemoryContextSwitchTo(r1_item_ctx);
	char		activity[128];

	snprintf(activity, sizeof(activity), "r1 job %lld item %d on %s",
			 (long long) r1_item.job_id, r1_item.item_no, r1_server ? r1_jobs_remote_label() : "local");
	pgstat_report_activity(STATE_RUNNING, activity);
	if (r1_server == 0)
		pg_atomic_fetch_add_u64(&r1_shared->requests, 1);
	PG_TRY();
	{
		if (r1_server)
			r1_item.response = r1_jobs_remote_call(r1_item.prompt, r1_item.params);
		else
			r1_item.response = r1_call(r1_item.request.data, r1_item.request.len, false);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(r1_item_ctx);
		edata = CopyErrorData();
		FlushErrorState();
		r1_item.response = NULL;
		strlcpy(r1_item.error, edata->message ? edata->message : "unknown error", sizeof(r1_item.error));
		if (r1_server)
		{
			/*
			 * the connection may be mid-query: start afresh before the next
			 * claim
			 */
			r1_jobs_remote_close();
			r1_item.refund = r1_jobs_remote_refunded(edata->sqlerrcode);
		}
		else
			r1_item.refund = r1_error_is_refunded(edata->sqlerrcode);

		/*
		 * 54000: the prompt never fits the context, or max_tokens is over the
		 * limit
		 */
		r1_item.permanent = edata->sqlerrcode == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		if (r1_stop_requested)
		{
			/* the worker is being stopped: not the item's fault */
			snprintf(r1_item.error, sizeof(r1_item.error),
					 "the job worker (pid %d) ended during the attempt", MyProcPid);
			r1_item.refund = true;
		}
		else
			ereport(LOG,
					(errmsg("r1 job worker: job %lld item %d attempt %d failed: %s",
							(long long) r1_item.job_id, r1_item.item_no, r1_item.attempts, r1_item.error)));
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	r1_set_slot_job(0);
	pgstat_report_activity(STATE_IDLE, NULL);
}

static Datum
r1_text_datum(Jsonb *j, const char *key, char *isnull)
{
	text	   *t = r1_json_text(j, key);

	*isnull = t == NULL ? 'n' : ' ';
	return PointerGetDatum(t);
}

/*
 * Write the held item's result or error in one transaction, if its lease
 * still holds; finish the job and NOTIFY when it was the last item.
 */
/* with r1.log_traces = on: the item's call in r1.traces, as its submitter's */
static void
r1_trace_job_item(Jsonb *response)
{
	R1Params	params;
	R1TraceInfo t;

	r1_params_from_jsonb(r1_item.params, &params);
	memset(&t, 0, sizeof(t));
	t.source = "job";
	t.role = r1_item.owner;
	t.session_role = r1_item.session_role;
	t.started = r1_item.started;
	t.prompt = r1_item.prompt;
	r1_trace_params(&t, &params, 0);
	t.response = response;
	r1_trace_record(&t);
}

static void
r1_write_item(void)
{
	Oid			types[12];
	Datum		values[12];
	char		nulls[12];
	bool		requeued = false;
	int64		actual = 0;

	memset(nulls, ' ', sizeof(nulls));
	r1_begin("r1 jobs: writing a result");
	types[0] = INT8OID;
	values[0] = Int64GetDatum(r1_item.job_id);
	types[1] = INT4OID;
	values[1] = Int32GetDatum(r1_item.item_no);
	types[2] = INT4OID;
	values[2] = Int32GetDatum(MyProcPid);
	types[3] = TIMESTAMPTZOID;
	values[3] = TimestampTzGetDatum(MyStartTimestamp);

	if (r1_item.response != NULL)
	{
		Jsonb	   *r = r1_item.response;

		types[4] = TEXTOID;
		values[4] = r1_text_datum(r, "think", &nulls[4]);
		types[5] = TEXTOID;
		values[5] = r1_text_datum(r, "answer", &nulls[5]);
		types[6] = TEXTOID;
		values[6] = r1_text_datum(r, "boxed", &nulls[6]);
		types[7] = TEXTOID;
		values[7] = r1_text_datum(r, "finish_reason", &nulls[7]);
		types[8] = INT4OID;
		values[8] = Int32GetDatum((int32) r1_json_int(r, "prompt_tokens"));
		types[9] = INT4OID;
		values[9] = Int32GetDatum((int32) r1_json_int(r, "completion_tokens"));
		types[10] = INT4OID;
		values[10] = Int32GetDatum((int32) r1_json_int(r, "think_tokens"));
		types[11] = FLOAT8OID;
		values[11] = Float8GetDatum(r1_json_float(r, "ms"));
		r1_exec("UPDATE r1.job_items SET state = 'done', think = $5, answer = $6, boxed = $7,"
				"  finish_reason = $8, prompt_tokens = $9, completion_tokens = $10,"
				"  think_tokens = $11, ms = $12, finished_at = now(),"
				"  runner_pid = NULL, runner_start = NULL"
				" WHERE job_id = $1 AND item_no = $2 AND state = 'running'"
				"  AND runner_pid = $3 AND runner_start = $4",
				12, types, values, nulls, SPI_OK_UPDATE);

		/*
		 * the submitting session user pays for the tokens (r1.role_quota),
		 * result kept or not
		 */
		actual = r1_json_int(r, "prompt_tokens") + r1_json_int(r, "completion_tokens");
		if (SPI_processed == 1 && r1_log_traces)
			r1_trace_job_item(r);
	}
	else
	{
		types[4] = TEXTOID;
		values[4] = CStringGetTextDatum(r1_item.error);
		types[5] = BOOLOID;
		values[5] = BoolGetDatum(r1_item.refund);
		types[6] = INT4OID;
		values[6] = Int32GetDatum(r1_job_max_attempts);
		types[7] = BOOLOID;
		values[7] = BoolGetDatum(r1_item.permanent);
		r1_exec("UPDATE r1.job_items SET"
				"  state = CASE WHEN $8 OR (NOT $6 AND attempts >= $7) THEN 'failed' ELSE 'queued' END,"
				"  finished_at = CASE WHEN $8 OR (NOT $6 AND attempts >= $7) THEN now() END,"
				"  attempts = attempts - CASE WHEN $6 THEN 1 ELSE 0 END,"
				"  last_error = $5, runner_pid = NULL, runner_start = NULL"
				" WHERE job_id = $1 AND item_no = $2 AND state = 'running'"
				"  AND runner_pid = $3 AND runner_start = $4"
				" RETURNING state = 'queued'",
				8, types, values, nulls, SPI_OK_UPDATE_RETURNING);
		if (SPI_processed == 1)
		{
			bool		isnull;

			requeued = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		}
	}

	/*
	 * 0 rows: the item was cancelled (or requeued) meanwhile; its result is
	 * discarded
	 */
	if (SPI_processed == 1 && !requeued)
		r1_finish_job(r1_item.job_id);

	/*
	 * Settled before the commit, so usage is counted when the result is
	 * visible; once, even when a failed commit makes the worker write again.
	 */
	if (!r1_item.charged)
	{
		r1_quota_settle(&r1_item.hold, actual);
		r1_item.charged = true;
	}
	r1_commit();
	r1_item.held = false;
	r1_set_slot_role(InvalidOid, -1);
}

/* Wait until the engine takes requests; true when it does now. */
static bool
r1_engine_ready(void)
{
	R1Shared	snap;

	r1_shmem_snapshot(&snap);
	switch (snap.state)
	{
		case R1_STATE_READY:
			return true;
		case R1_STATE_STARTING:
		case R1_STATE_LOADING:
		case R1_STATE_RESTARTING:
			r1_worker_sleep(R1_JOBS_WAIT_SHORT_MS);
			return false;
		default:
			r1_worker_sleep(R1_JOBS_WAIT_LONG_MS);
			return false;
	}
}

void
r1_job_worker_main(Datum main_arg)
{
	R1JobsWorkerExtra extra;
	sigjmp_buf	local_sigjmp_buf;
	TimestampTz next_recover = 0;

	r1_slot = DatumGetInt32(main_arg);
	memcpy(&extra, MyBgworkerEntry->bgw_extra, sizeof(extra));
	if (r1_slot < 0 || r1_slot >= R1_JOBS_MAX_WORKERS)
		proc_exit(0);
	r1_server = extra.server;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, r1_job_worker_sigterm);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(extra.dbname, NULL, 0);

	/*
	 * the worker is a superuser: resolve nothing through schemas others can
	 * create in
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	SpinLockAcquire(&r1_jobs_shared->mutex);
	r1_jobs_shared->slots[r1_slot].pid = MyProcPid;
	r1_jobs_shared->slots[r1_slot].latch = MyLatch;
	r1_jobs_shared->slots[r1_slot].job_id = 0;
	SpinLockRelease(&r1_jobs_shared->mutex);
	before_shmem_exit(r1_job_worker_on_exit, (Datum) 0);

	r1_item_ctx = AllocSetContextCreate(TopMemoryContext, "r1 job item", ALLOCSET_DEFAULT_SIZES);

	/*
	 * an ERROR anywhere below: log it, roll back, keep the item's error, go
	 * on
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		ErrorData  *edata;

		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();

		/*
		 * the cancel of a SIGTERM is how a stop interrupts the call: not
		 * worth a log line
		 */
		if (!(r1_stop_requested && edata->sqlerrcode == ERRCODE_QUERY_CANCELED))
			EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		r1_set_slot_job(0);
		if (r1_server)
			r1_jobs_remote_close();
		pgstat_report_activity(STATE_IDLE, NULL);
		if (r1_item.held && r1_item.error[0] == '\0' && r1_item.response == NULL)
		{
			strlcpy(r1_item.error, edata->message ? edata->message : "unknown error", sizeof(r1_item.error));
			r1_item.refund = true;
		}
		if (!r1_item.held)
		{
			/* a claim that failed: its reservation and share go back */
			r1_quota_settle(&r1_item.hold, 0);
			r1_set_slot_role(InvalidOid, -1);
		}
		FreeErrorData(edata);
		RESUME_INTERRUPTS();
		if (!r1_stop_requested)
			r1_worker_sleep(R1_JOBS_WAIT_LONG_MS);
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		uint32		generation;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (r1_stop_requested)
		{
			static bool tried = false;

			/*
			 * Stopped (a reload, shutdown, terminate): hand the item back,
			 * uncounted; once (should that write fail, the lease check
			 * requeues the item, counted).
			 */
			if (tried)
				proc_exit(0);
			tried = true;
			if (r1_item.held && r1_item.response == NULL)
			{
				snprintf(r1_item.error, sizeof(r1_item.error),
						 "the job worker (pid %d) ended during the attempt", MyProcPid);
				r1_item.refund = true;
			}
			if (r1_item.held)
				r1_write_item();
			proc_exit(0);
		}
		SpinLockAcquire(&r1_jobs_shared->mutex);
		generation = r1_jobs_shared->launcher_generation;
		SpinLockRelease(&r1_jobs_shared->mutex);
		if (generation != extra.generation && !r1_item.held)
			proc_exit(0);		/* a newer launcher runs its own workers */

		if (!r1_extension_installed())
		{
			r1_item.held = false;	/* its tables are gone */
			r1_quota_settle(&r1_item.hold, 0);
			r1_set_slot_role(InvalidOid, -1);
			r1_worker_sleep(R1_JOBS_WAIT_LONG_MS);
			continue;
		}
		if (r1_item.held)
		{
			/* a result (or an error) to write, perhaps after an ERROR */
			r1_write_item();
			continue;
		}
		MemoryContextReset(r1_item_ctx);

		if (GetCurrentTimestamp() >= next_recover)
		{
			r1_recover_items();
			next_recover = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), R1_JOBS_RECOVER_MS);
		}
		if (r1_server)
		{
			/* the launcher restarts the workers when r1.job_servers changes */
			if (r1_server > r1_job_servers_list->n)
				proc_exit(0);
			if (!r1_jobs_remote_ready(r1_server - 1, extra.dbname))
				continue;
		}
		else if (!r1_engine_ready())
			continue;
		if (!r1_claim_item())
		{
			r1_worker_sleep(R1_JOBS_IDLE_MS);
			continue;
		}
		r1_run_item();
		r1_write_item();
		if (r1_item.refund)
			r1_worker_sleep(R1_JOBS_WAIT_LONG_MS);	/* the engine's trouble:
													 * do not spin */
	}
}
