/*
 * jobs_worker.c - the "r1 job worker" processes, which the launcher
 * (jobs_launcher.c) keeps running in r1.jobs_database.
 *
 * A worker loops: wait until the extension is installed and the engine ready;
 * claim one queued item (FOR UPDATE SKIP LOCKED; state running, attempts + 1,
 * the worker's pid and start time as the lease token) and commit; call the
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
 * Workers exit only through proc_exit(0/1): SIGTERM, postmaster death, a new
 * launcher.  Every other error is logged, rolled back, and the loop goes on.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
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
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "client.h"
#include "jobs.h"
#include "quota.h"
#include "traces.h"
#include "r1_pg.h"
#include "shmem.h"

#define R1_JOBS_IDLE_MS				5000	/* poll when nothing is queued */
#define R1_JOBS_RECOVER_MS			5000	/* look for items of ended workers */
#define R1_JOBS_WAIT_SHORT_MS		200		/* engine loading or restarting */
#define R1_JOBS_WAIT_LONG_MS		1000	/* no extension, engine not usable, an error */

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
	Oid			owner;			/* the submitting role, charged the tokens */
	text	   *prompt;			/* in r1_item_ctx, for r1.traces */
	Jsonb	   *params;			/* in r1_item_ctx: the job's parameters */
	TimestampTz started;
} R1JobItem;

static int	r1_slot = -1;
static R1JobItem r1_item;
static MemoryContext r1_item_ctx = NULL;
static bool r1_logged_no_extension = false;

static void
r1_job_worker_on_exit(int code, Datum arg)
{
	SpinLockAcquire(&r1_jobs_shared->mutex);
	if (r1_jobs_shared->slots[r1_slot].pid == MyProcPid)
	{
		r1_jobs_shared->slots[r1_slot].pid = 0;
		r1_jobs_shared->slots[r1_slot].latch = NULL;
		r1_jobs_shared->slots[r1_slot].job_id = 0;
	}
	SpinLockRelease(&r1_jobs_shared->mutex);
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
	if (!installed && !r1_logged_no_extension)
		ereport(LOG,
				(errmsg("r1 job worker: extension r1_pg is not installed in database \"%s\"; waiting for it",
						get_database_name(MyDatabaseId)),
				 errhint("Run CREATE EXTENSION r1_pg in that database.")));
	CommitTransactionCommand();
	r1_logged_no_extension = !installed;
	return installed;
}

/* Put the items of ended workers, and any of this worker's, back in the queue. */
static void
r1_recover_items(void)
{
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2] = {Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp)};

	r1_begin("r1 jobs: requeueing items of ended workers");
	r1_exec("UPDATE r1.job_items i SET state = 'queued', runner_pid = NULL, runner_start = NULL,"
			"  last_error = format('the job worker (pid %s) ended during the attempt', i.runner_pid)"
			" WHERE i.state = 'running' AND"
			"  ((i.runner_pid = $1 AND i.runner_start = $2) OR"
			"   NOT EXISTS (SELECT FROM pg_catalog.pg_stat_get_activity(i.runner_pid) a"
			"               WHERE a.backend_start = i.runner_start))",
			2, types, values, NULL, SPI_OK_UPDATE);
	if (SPI_processed > 0)
	{
		ereport(LOG,
				(errmsg("r1 job worker: %llu job items of ended workers queued again",
						(unsigned long long) SPI_processed)));
		r1_jobs_wake_at_commit();
	}
	r1_commit();
}

/* Append "name":value of the job's parameters to the request. */
static void
r1_request_params(StringInfo req, Jsonb *params)
{
	JsonbValue	v;
	text	   *system = r1_json_text(params, "system");

	if (system != NULL)
	{
		size_t		len;

		appendStringInfoString(req, ",\"system\":");
		escape_json(req, r1_text_to_utf8(system, &len));
	}
	appendStringInfo(req, ",\"max_tokens\":%lld,\"temperature\":%.17g,\"top_p\":%.17g,"
					 "\"top_k\":%lld,\"min_p\":%.17g,\"queue_timeout_ms\":%d",
					 (long long) r1_json_int(params, "max_tokens"),
					 r1_json_float(params, "temperature"),
					 r1_json_float(params, "top_p"),
					 (long long) r1_json_int(params, "top_k"),
					 r1_json_float(params, "min_p"),
					 r1_queue_timeout);
	if (r1_json_get(params, "seed", &v))
		appendStringInfo(req, ",\"seed\":%lld", (long long) r1_json_int(params, "seed"));
	if (r1_json_get(params, "ignore_eos", &v) && v.type == jbvBool && v.val.boolean)
		appendStringInfoString(req, ",\"ignore_eos\":true");
	if (r1_json_get(params, "max_think_tokens", &v))
		appendStringInfo(req, ",\"max_think_tokens\":%lld",
						 (long long) r1_json_int(params, "max_think_tokens"));
	appendStringInfoChar(req, '}');
}

/* Claim the first queued item; false when there is none. */
static bool
r1_claim_item(void)
{
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2] = {Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp)};
	bool		claimed = false;

	r1_begin("r1 jobs: claiming an item");
	r1_exec("UPDATE r1.job_items i SET state = 'running', attempts = i.attempts + 1,"
			"  started_at = now(), finished_at = NULL, runner_pid = $1, runner_start = $2"
			" FROM r1.jobs j"
			" WHERE j.id = i.job_id AND (i.job_id, i.item_no) ="
			"  (SELECT q.job_id, q.item_no FROM r1.job_items q WHERE q.state = 'queued'"
			"   ORDER BY q.job_id, q.item_no LIMIT 1 FOR UPDATE SKIP LOCKED)"
			" RETURNING i.job_id, i.item_no, i.attempts, i.prompt, j.parameters,"
			"  (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = j.created_by)",
			2, types, values, NULL, SPI_OK_UPDATE_RETURNING);
	if (SPI_processed == 1)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		text	   *prompt;
		Jsonb	   *params;
		char	   *prompt_utf8;
		size_t		len;
		MemoryContext old;
		Oid			jtypes[1] = {INT8OID};
		Datum		jvalues[1];

		r1_item.job_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		r1_item.item_no = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		r1_item.attempts = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		prompt = DatumGetTextPP(SPI_getbinval(tup, desc, 4, &isnull));
		params = DatumGetJsonbP(SPI_getbinval(tup, desc, 5, &isnull));
		r1_item.owner = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
		if (isnull)
			r1_item.owner = InvalidOid;

		/* the request outlives the transaction */
		old = MemoryContextSwitchTo(r1_item_ctx);
		r1_item.prompt = DatumGetTextPCopy(PointerGetDatum(prompt));
		r1_item.params = DatumGetJsonbPCopy(JsonbPGetDatum(params));
		r1_item.started = GetCurrentTimestamp();
		initStringInfo(&r1_item.request);
		appendStringInfoString(&r1_item.request, "{\"op\":\"generate\",\"prompt\":");
		prompt_utf8 = r1_text_to_utf8(prompt, &len);
		escape_json(&r1_item.request, prompt_utf8);
		r1_request_params(&r1_item.request, params);
		MemoryContextSwitchTo(old);
		r1_item.response = NULL;
		r1_item.error[0] = '\0';
		r1_item.refund = false;
		r1_item.permanent = false;

		jvalues[0] = Int64GetDatum(r1_item.job_id);
		r1_exec("UPDATE r1.jobs SET state = 'running' WHERE id = $1 AND state = 'queued'",
				1, jtypes, jvalues, NULL, SPI_OK_UPDATE);
		/* published before the commit: a cancel that commits later finds it */
		r1_set_slot_job(r1_item.job_id);
		claimed = true;
	}
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
	/* the engine is not usable: not the item's fault (a host that died during the call is) */
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

	snprintf(activity, sizeof(activity), "r1 job %lld item %d",
			 (long long) r1_item.job_id, r1_item.item_no);
	pgstat_report_activity(STATE_RUNNING, activity);
	pg_atomic_fetch_add_u64(&r1_shared->requests, 1);
	PG_TRY();
	{
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
		r1_item.refund = r1_error_is_refunded(edata->sqlerrcode);
		/* 54000: the prompt never fits the context, or max_tokens is over the limit */
		r1_item.permanent = edata->sqlerrcode == ERRCODE_PROGRAM_LIMIT_EXCEEDED;
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
	Jsonb	   *p = r1_item.params;
	R1TraceInfo t;
	JsonbValue	v;

	memset(&t, 0, sizeof(t));
	t.source = "job";
	t.role = r1_item.owner;
	t.started = r1_item.started;
	t.prompt = r1_item.prompt;
	t.system = r1_json_text(p, "system");
	t.max_tokens = (int) r1_json_int(p, "max_tokens");
	t.temperature = r1_json_float(p, "temperature");
	t.top_p = r1_json_float(p, "top_p");
	t.top_k = (int) r1_json_int(p, "top_k");
	t.min_p = r1_json_float(p, "min_p");
	t.ignore_eos = r1_json_get(p, "ignore_eos", &v) && v.type == jbvBool && v.val.boolean;
	t.has_seed = r1_json_get(p, "seed", &v);
	t.seed = t.has_seed ? r1_json_int(p, "seed") : 0;
	if (r1_json_get(p, "max_think_tokens", &v))
		t.extra_params = psprintf("\"max_think_tokens\":%lld",
								  (long long) r1_json_int(p, "max_think_tokens"));
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
		/* the submitting role pays for the tokens (r1.role_quota) */
		if (SPI_processed == 1 && OidIsValid(r1_item.owner))
			r1_quota_charge(r1_item.owner, r1_json_int(r, "prompt_tokens") + r1_json_int(r, "completion_tokens"));
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

	/* 0 rows: the item was cancelled (or requeued) meanwhile; its result is discarded */
	if (SPI_processed == 1 && !requeued)
	{
		/*
		 * Lock the job row, then look at its items in a new statement (a new
		 * snapshot): of two workers that finish the last two items, the
		 * second sees the first's commit.
		 */
		r1_exec("SELECT FROM r1.jobs WHERE id = $1 FOR UPDATE", 1, types, values, NULL, SPI_OK_SELECT);
		/* clock_timestamp: later than the (transaction start) times of the items it saw */
		r1_exec("UPDATE r1.jobs j SET finished_at = clock_timestamp(),"
				"  state = CASE WHEN EXISTS (SELECT FROM r1.job_items f WHERE f.job_id = j.id AND f.state = 'failed')"
				"          THEN 'failed' ELSE 'done' END"
				" WHERE j.id = $1 AND j.state IN ('queued', 'running') AND NOT EXISTS"
				"  (SELECT FROM r1.job_items o WHERE o.job_id = j.id AND o.state IN ('queued', 'running'))",
				1, types, values, NULL, SPI_OK_UPDATE);
		if (SPI_processed == 1)
		{
			char		payload[32];

			snprintf(payload, sizeof(payload), "%lld", (long long) r1_item.job_id);
			Async_Notify(R1_JOBS_CHANNEL, payload);
		}
	}
	r1_commit();
	r1_item.held = false;
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

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(extra.dbname, NULL, 0);
	/* the worker is a superuser: resolve nothing through schemas others can create in */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	SpinLockAcquire(&r1_jobs_shared->mutex);
	r1_jobs_shared->slots[r1_slot].pid = MyProcPid;
	r1_jobs_shared->slots[r1_slot].latch = MyLatch;
	r1_jobs_shared->slots[r1_slot].job_id = 0;
	SpinLockRelease(&r1_jobs_shared->mutex);
	before_shmem_exit(r1_job_worker_on_exit, (Datum) 0);

	r1_item_ctx = AllocSetContextCreate(TopMemoryContext, "r1 job item", ALLOCSET_DEFAULT_SIZES);

	/* an ERROR anywhere below: log it, roll back, keep the item's error, go on */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		ErrorData  *edata;

		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		EmitErrorReport();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		r1_set_slot_job(0);
		pgstat_report_activity(STATE_IDLE, NULL);
		if (r1_item.held && r1_item.error[0] == '\0' && r1_item.response == NULL)
		{
			strlcpy(r1_item.error, edata->message ? edata->message : "unknown error", sizeof(r1_item.error));
			r1_item.refund = true;
		}
		FreeErrorData(edata);
		RESUME_INTERRUPTS();
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
		SpinLockAcquire(&r1_jobs_shared->mutex);
		generation = r1_jobs_shared->launcher_generation;
		SpinLockRelease(&r1_jobs_shared->mutex);
		if (generation != extra.generation && !r1_item.held)
			proc_exit(0);		/* a newer launcher runs its own workers */

		if (!r1_extension_installed())
		{
			r1_item.held = false;	/* its tables are gone */
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
		if (!r1_engine_ready())
			continue;
		if (!r1_claim_item())
		{
			r1_worker_sleep(R1_JOBS_IDLE_MS);
			continue;
		}
		r1_run_item();
		r1_write_item();
		if (r1_item.refund)
			r1_worker_sleep(R1_JOBS_WAIT_LONG_MS);	/* the engine's trouble: do not spin */
	}
}
