/*
 * jobs_launcher.c - the "r1 jobs launcher": a static background worker
 * without a database connection that waits until r1.jobs_database exists and
 * keeps r1.job_workers dynamic "r1 job worker" processes (jobs_worker.c)
 * running there, restarting one that stops after a backoff, and all of them
 * when either setting changes on reload (a worker stopped so hands its item
 * back without counting an attempt: jobs_worker.c).  A new launcher (after
 * its own restart) bumps a generation counter: workers of an older one exit.
 *
 * Being a static worker that is always there, the launcher also writes the
 * role quota usage to its file every second when it changed (quota.c).
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "jobs.h"
#include "job_servers.h"
#include "quota.h"

#define R1_JOBS_WORKER_BACKOFF_MS	5000	/* before restarting a stopped
											 * worker */
#define R1_JOBS_DB_POLL_MS			1000	/* while r1.jobs_database does not
											 * exist */

/*
 * Without a database only shared catalogs can be read, and only with heap
 * scans (an index scan needs pg_class): autovacuum's get_database_list().
 */
static bool
r1_jobs_database_exists(const char *dbname)
{
	bool		exists = false;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!exists && HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
		exists = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname), dbname) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return exists;
}

/*
 * The engine slot runs on: 0 for this server (the first r1.job_workers
 * slots), n for r1.job_servers entry n (max_running slots each).
 */
static int
r1_jobs_slot_server(int slot)
{
	int			first = r1_job_workers;

	if (slot < first)
		return 0;
	for (int i = 0; i < r1_job_servers_list->n; i++)
	{
		first += r1_job_servers_list->servers[i].max_running;
		if (slot < first)
			return i + 1;
	}
	return 0;
}

static BackgroundWorkerHandle *
r1_jobs_start_worker(int slot, uint32 generation, const char *dbname)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	R1JobsWorkerExtra extra;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;	/* the launcher restarts
													 * it */
	strlcpy(worker.bgw_library_name, "r1_pg", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "r1_job_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "r1 job worker %d", slot);
	strlcpy(worker.bgw_type, "r1 job worker", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(slot);
	worker.bgw_notify_pid = MyProcPid;
	memset(&extra, 0, sizeof(extra));
	extra.generation = generation;
	strlcpy(extra.dbname, dbname, sizeof(extra.dbname));
	extra.server = r1_jobs_slot_server(slot);
	StaticAssertStmt(sizeof(extra) <= BGW_EXTRALEN, "bgw_extra too small");
	memcpy(worker.bgw_extra, &extra, sizeof(extra));

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		return NULL;
	return handle;
}

void
r1_jobs_launcher_main(Datum main_arg)
{
	BackgroundWorkerHandle *handles[R1_JOBS_MAX_WORKERS];
	TimestampTz next_start[R1_JOBS_MAX_WORKERS];
	char		dbname[NAMEDATALEN] = "";
	char	   *servers = pstrdup("");	/* the r1.job_servers the workers were
										 * started for */
	int			nworkers = 0;
	bool		logged_missing = false;
	bool		logged_no_slot = false;
	uint32		generation;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	/* no database: pg_database is a shared catalog */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	SpinLockAcquire(&r1_jobs_shared->mutex);
	generation = ++r1_jobs_shared->launcher_generation;
	SpinLockRelease(&r1_jobs_shared->mutex);

	memset(handles, 0, sizeof(handles));
	memset(next_start, 0, sizeof(next_start));

	for (;;)
	{
		long		timeout = 1000; /* the quota usage is flushed every second */
		TimestampTz now;

		CHECK_FOR_INTERRUPTS();
		r1_quota_flush(false);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* a changed setting: stop every worker, start the new set */
		if (strncmp(dbname, r1_jobs_database, NAMEDATALEN - 1) != 0 ||
			nworkers != Min(r1_job_workers + r1_job_servers_list->total, R1_JOBS_MAX_WORKERS) ||
			strcmp(servers, r1_job_servers ? r1_job_servers : "") != 0)
		{
			for (int i = 0; i < R1_JOBS_MAX_WORKERS; i++)
			{
				if (handles[i] != NULL)
				{
					TerminateBackgroundWorker(handles[i]);
					pfree(handles[i]);
					handles[i] = NULL;
				}
				next_start[i] = 0;
			}
			strlcpy(dbname, r1_jobs_database, sizeof(dbname));
			/* the local workers, then max_running for each job server */
			nworkers = Min(r1_job_workers + r1_job_servers_list->total, R1_JOBS_MAX_WORKERS);
			pfree(servers);
			servers = pstrdup(r1_job_servers ? r1_job_servers : "");
			logged_missing = false;
			if (dbname[0] != '\0' && nworkers > 0)
				ereport(LOG,
						(errmsg("r1 jobs: running jobs of database \"%s\" with %d workers",
								dbname, nworkers),
						 r1_job_servers_list->n > 0 ?
						 errdetail("%d for this server's engine, %d for the %d servers of r1.job_servers.",
								   r1_job_workers, nworkers - Min(r1_job_workers, nworkers),
								   r1_job_servers_list->n) : 0));
		}

		if (dbname[0] != '\0' && nworkers > 0)
		{
			if (!r1_jobs_database_exists(dbname))
			{
				if (!logged_missing)
					ereport(LOG,
							(errmsg("r1 jobs: database \"%s\" does not exist; waiting for it", dbname),
							 errhint("Create the database and the r1_pg extension in it, or change r1.jobs_database.")));
				logged_missing = true;
				timeout = R1_JOBS_DB_POLL_MS;
			}
			else
			{
				logged_missing = false;
				now = GetCurrentTimestamp();
				for (int i = 0; i < nworkers; i++)
				{
					pid_t		pid;

					if (handles[i] != NULL &&
						GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
					{
						pfree(handles[i]);
						handles[i] = NULL;
						next_start[i] = TimestampTzPlusMilliseconds(now, R1_JOBS_WORKER_BACKOFF_MS);
					}
					if (handles[i] == NULL && now >= next_start[i])
					{
						handles[i] = r1_jobs_start_worker(i, generation, dbname);
						if (handles[i] == NULL)
						{
							if (!logged_no_slot)
								ereport(LOG,
										(errmsg("r1 jobs: could not start a job worker: no background worker slot free"),
										 errhint("Raise max_worker_processes or lower r1.job_workers.")));
							logged_no_slot = true;
							next_start[i] = TimestampTzPlusMilliseconds(now, 10000);
						}
					}
					if (handles[i] == NULL)
						timeout = Min(timeout, Max(1, (long) ((next_start[i] - now) / 1000)));
				}
			}
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
