/*
 * shmem.h - the r1_pg state shared by the "r1 engine" worker and backends.
 */
#ifndef R1_SHMEM_H
#define R1_SHMEM_H

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "storage/spin.h"

#define R1_REASON_LEN 1024
/*
 * The engine host's socket lives beside the server's own, in the first of
 * unix_socket_directories, as ".r1_engine.<port>" (PostgreSQL's is
 * ".s.PGSQL.<port>"): never in the data directory, where base backups and
 * pg_rewind would meet it.  With no socket directory it falls back to the
 * data directory.  The worker chooses it and publishes it here.
 */
#define R1_SOCKET_FALLBACK "r1_engine.sock" /* relative to the data directory */
#define R1_SOCKET_PATH_LEN 108	/* sun_path */

typedef enum R1EngineState
{
	R1_STATE_STARTING = 0,		/* worker not up yet */
	R1_STATE_NOT_CONFIGURED,	/* r1.model is empty */
	R1_STATE_LOADING,			/* host started, loading the model */
	R1_STATE_READY,				/* host accepts requests on its socket */
	R1_STATE_RESTARTING,		/* host died; restart scheduled (backoff) */
	R1_STATE_FAILED,			/* model could not load; waits for a config
								 * change */
	R1_STATE_NO_DEVICE			/* r1.device = cuda and no usable GPU */
} R1EngineState;

typedef struct R1Shared
{
	slock_t		mutex;			/* protects every non-atomic field below */
	R1EngineState state;
	char		reason[R1_REASON_LEN];	/* why FAILED/NO_DEVICE/RESTARTING */
	pid_t		worker_pid;
	pid_t		host_pid;		/* 0 when no host runs */
	uint32		host_generation;	/* bumped at every host start */
	uint32		reload_stopped_generation;	/* last host stopped for a reload */
	int			host_restarts;	/* restarts after a crash */
	TimestampTz worker_start;
	TimestampTz ready_since;	/* when the current host became ready */
	char		model_path[1024];	/* r1.model the worker uses */
	char		socket_path[R1_SOCKET_PATH_LEN];	/* where the host listens */
	char		device_setting[16]; /* r1.device the worker uses */
	char		model_name[256];	/* from the host, once ready */
	char		device[16];		/* "cpu" or "cuda", once ready */
	char		note[256];		/* e.g. why auto fell back to the CPU */
	int			max_ctx;
	int64		weight_bytes;
	pg_atomic_uint64 requests;	/* r1_reason calls sent to the host */
	pg_atomic_uint64 errors;	/* of those, ended in an error */
} R1Shared;

extern R1Shared *r1_shared;

/*
 * Shared memory of every module is requested and set up by r1_pg.c's one
 * pair of hooks, which call each module's *_shmem_request() (from
 * shmem_request_hook) and *_shmem_init() (from shmem_startup_hook, with
 * AddinShmemInitLock held).
 */
extern void r1_shmem_request(void);
extern void r1_shmem_init(void);
extern void r1_shmem_snapshot(R1Shared *out);
extern void r1_shmem_set_state(R1EngineState state, const char *reason);
extern const char *r1_state_name(R1EngineState state);

#endif							/* R1_SHMEM_H */
