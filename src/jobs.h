/*
 * jobs.h - durable jobs: r1_submit()/r1_submit_query() record work in
 * r1.jobs/r1.job_items; the "r1 jobs launcher" keeps r1.job_workers "r1 job
 * worker" processes connected to r1.jobs_database, which claim items and run
 * them through the engine host.
 */
#ifndef R1_JOBS_H
#define R1_JOBS_H

#include "fmgr.h"
#include "storage/latch.h"
#include "storage/spin.h"

#define R1_JOBS_MAX_WORKERS 64
#define R1_JOBS_CHANNEL "r1_jobs"	/* NOTIFY channel; the payload is the job
									 * id */

/* settings (jobs.c) */
extern char *r1_jobs_database;
extern int	r1_job_workers;
extern int	r1_job_max_attempts;
extern char *r1_job_role_max_running;
extern void *r1_job_role_max_running_list;	/* parsed (quota.h:
											 * r1_role_list_lookup) */

/*
 * One entry per running job worker, so that backends can wake the workers
 * (new items committed) and interrupt the call of a cancelled job.
 */
typedef struct R1JobSlot
{
	pid_t		pid;			/* 0 when free */
	Latch	   *latch;
	int64		job_id;			/* job of the call in flight, 0 when none */
	Oid			role;			/* the role the held (or being claimed) item
								 * is charged to */
} R1JobSlot;

typedef struct R1JobsShared
{
	slock_t		mutex;			/* protects the slots (and so the running
								 * count per role) */
	uint32		launcher_generation;	/* bumped at every launcher start */
	R1JobSlot	slots[R1_JOBS_MAX_WORKERS];
} R1JobsShared;

extern R1JobsShared *r1_jobs_shared;

/* what the launcher tells a worker (bgw_extra); bgw_main_arg is the slot */
typedef struct R1JobsWorkerExtra
{
	uint32		generation;
	char		dbname[NAMEDATALEN];
	int			server;			/* 0: this server's engine; n: r1.job_servers
								 * entry n */
} R1JobsWorkerExtra;

/* jobs.c */
extern void r1_jobs_define_settings(void);
extern void r1_jobs_preload(void);	/* the launcher */
extern void r1_jobs_shmem_request(void);	/* shared memory (shmem.h says
											 * when) */
extern void r1_jobs_shmem_init(void);
extern void r1_jobs_wake_at_commit(void);
extern void r1_jobs_cancel_at_commit(int64 job_id);

/* jobs_launcher.c */
extern PGDLLEXPORT void r1_jobs_launcher_main(Datum main_arg);

/* jobs_worker.c */
extern PGDLLEXPORT void r1_job_worker_main(Datum main_arg);

#endif							/* R1_JOBS_H */
