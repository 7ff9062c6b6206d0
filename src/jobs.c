/*
 * jobs.c - durable jobs: settings, the job workers' shared slots, the
 * launcher's registration and the commit-time wake-ups.
 *
 * Locking rules: r1_jobs_shared->mutex (a spinlock) protects the slots; it is
 * held only to copy fields, never across a system call.  A worker owns its
 * slot (pid, latch, job_id); backends read slots to wake workers (SetLatch)
 * and to find the worker that runs a cancelled job (kill SIGINT, after the
 * cancelling transaction committed, so the worker sees the item cancelled).
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "jobs.h"
#include "job_servers.h"
#include "quota.h"

char	   *r1_jobs_database = NULL;
int			r1_job_workers = 4;
int			r1_job_max_attempts = 3;
char	   *r1_job_role_max_running = NULL;
void	   *r1_job_role_max_running_list = NULL;

R1JobsShared *r1_jobs_shared = NULL;


/* commit-time actions of this backend's transaction */
static bool r1_xact_callback_registered = false;
static bool r1_wake_pending = false;
static List *r1_cancel_pending = NIL;	/* job ids, in TopTransactionContext */

static bool
r1_job_role_max_running_check(char **newval, void **extra, GucSource source)
{
	return r1_parse_role_list(*newval, extra, "items");
}

static void
r1_job_role_max_running_assign(const char *newval, void *extra)
{
	r1_job_role_max_running_list = extra;
}

void
r1_jobs_define_settings(void)
{
	DefineCustomStringVariable("r1.jobs_database",
							   "Database whose r1.jobs the job workers run (empty: no job workers).",
							   "r1_submit() works only in this database. The database needs the r1_pg extension.",
							   &r1_jobs_database,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("r1.job_workers",
							"Job items run at once (one job worker process each).",
							NULL,
							&r1_job_workers,
							4, 0, R1_JOBS_MAX_WORKERS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("r1.job_max_attempts",
							"Attempts of a job item before it is marked failed.",
							"An attempt that ends because the engine is not configured, its queue is full or the call was interrupted is not counted.",
							&r1_job_max_attempts,
							3, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("r1.job_role_max_running",
							   "Most job items of one role that run at once.",
							   "role=items pairs separated by commas, e.g. 'etl=1, *=2'; \"*\" is every other role. "
							   "A role is the session user that submitted the job. Unlisted roles share the workers fairly.",
							   &r1_job_role_max_running,
							   "",
							   PGC_SIGHUP,
							   0,
							   r1_job_role_max_running_check, r1_job_role_max_running_assign, NULL);

	r1_job_servers_define_gucs();
}

static Size
r1_jobs_shmem_size(void)
{
	return MAXALIGN(sizeof(R1JobsShared));
}

void
r1_jobs_shmem_request(void)
{
	RequestAddinShmemSpace(r1_jobs_shmem_size());
}

void
r1_jobs_shmem_init(void)
{
	bool		found;

	r1_jobs_shared = ShmemInitStruct("r1_pg jobs", r1_jobs_shmem_size(), &found);
	if (!found)
	{
		memset(r1_jobs_shared, 0, sizeof(R1JobsShared));
		SpinLockInit(&r1_jobs_shared->mutex);
	}
}

/* From _PG_init while preloading: the launcher. */
void
r1_jobs_preload(void)
{
	BackgroundWorker worker;

	/*
	 * pg_upgrade starts both clusters in binary-upgrade mode (postgres -b):
	 * no job workers there, they would write to r1.jobs while the catalog is
	 * being rebuilt.
	 */
	if (IsBinaryUpgrade)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, "r1_pg", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "r1_jobs_launcher_main", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "r1 jobs launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "r1 jobs launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

static void
r1_jobs_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && r1_jobs_shared != NULL &&
		(r1_wake_pending || r1_cancel_pending != NIL))
	{
		Latch	   *latches[R1_JOBS_MAX_WORKERS];
		pid_t		victims[R1_JOBS_MAX_WORKERS];
		int			nlatches = 0;
		int			nvictims = 0;

		SpinLockAcquire(&r1_jobs_shared->mutex);
		for (int i = 0; i < R1_JOBS_MAX_WORKERS; i++)
		{
			R1JobSlot  *s = &r1_jobs_shared->slots[i];
			ListCell   *lc;

			if (s->pid == 0)
				continue;
			if (r1_wake_pending)
				latches[nlatches++] = s->latch;
			foreach(lc, r1_cancel_pending)
			{
				int64		id = *(int64 *) lfirst(lc);

				if (s->job_id == id)
				{
					victims[nvictims++] = s->pid;
					break;
				}
			}
		}
		SpinLockRelease(&r1_jobs_shared->mutex);

		for (int i = 0; i < nlatches; i++)
			SetLatch(latches[i]);

		/*
		 * a query cancel: the worker's engine call ends, the engine drops the
		 * sequence
		 */
		for (int i = 0; i < nvictims; i++)
			(void) kill(victims[i], SIGINT);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
	{
		r1_wake_pending = false;
		r1_cancel_pending = NIL;	/* freed with TopTransactionContext */
	}
}

static void
r1_jobs_register_callback(void)
{
	if (!r1_xact_callback_registered)
	{
		RegisterXactCallback(r1_jobs_xact_callback, NULL);
		r1_xact_callback_registered = true;
	}
}

/* Wake the job workers when the current transaction commits. */
void
r1_jobs_wake_at_commit(void)
{
	r1_jobs_register_callback();
	r1_wake_pending = true;
}

/* Interrupt the engine calls of this job when the current transaction commits. */
void
r1_jobs_cancel_at_commit(int64 job_id)
{
	MemoryContext old;
	int64	   *p;

	r1_jobs_register_callback();
	old = MemoryContextSwitchTo(TopTransactionContext);
	p = palloc(sizeof(int64));
	*p = job_id;
	r1_cancel_pending = lappend(r1_cancel_pending, p);
	MemoryContextSwitchTo(old);
}
