/*
 * r1_pg.c - module load: the settings, one pair of shared-memory hooks for
 * every module, and the background workers (the "r1 engine" worker, the jobs
 * launcher, the trace writers).  The extension works only when loaded
 * through shared_preload_libraries: the model lives in a process the engine
 * worker starts.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "activity.h"
#include "jobs.h"
#include "quota.h"
#include "settings.h"
#include "shmem.h"
#include "trace_writer.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void
r1_shmem_request_hook(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	r1_shmem_request();
	r1_activity_shmem_request();
	r1_quota_shmem_request();
	r1_jobs_shmem_request();
	r1_trace_writer_shmem_request();
}

static void
r1_shmem_startup_hook(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	r1_shmem_init();
	r1_activity_shmem_init();
	r1_quota_shmem_init();
	r1_jobs_shmem_init();
	r1_trace_writer_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
_PG_init(void)
{
	/*
	 * The engine runs in a worker the postmaster starts, and r1.engine_path
	 * can only be defined at server start: loaded any other way (CREATE
	 * EXTENSION, LOAD) r1_pg refuses with an ERROR, not the FATAL that
	 * defining a PGC_POSTMASTER setting late would raise.
	 */
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1_pg must be loaded via shared_preload_libraries"),
				 errdetail("The model runs in a background worker that starts with the server."),
				 errhint("Add r1_pg to shared_preload_libraries in postgresql.conf (or with ALTER SYSTEM) and restart the server.")));

	r1_settings_define();
	r1_limits_init();
	r1_jobs_define_settings();
	MarkGUCPrefixReserved("r1");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = r1_shmem_request_hook;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = r1_shmem_startup_hook;

	/* these register no worker in binary-upgrade mode (pg_upgrade) */
	r1_register_worker();
	r1_jobs_preload();
	r1_trace_writer_preload();
}
