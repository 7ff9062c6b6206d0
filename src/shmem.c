/*
 * shmem.c - r1_pg's shared state: the engine's state and why, the host's pid,
 * what model it serves, counters.
 *
 * Locking rules:
 * - r1_shared->mutex (a spinlock) protects every non-atomic field.  It is held
 *   only to copy fields in or out: no allocation, no ereport, no system call
 *   while it is held.
 * - Only the "r1 engine" worker writes the state fields; backends read a
 *   consistent copy with r1_shmem_snapshot().
 * - The counters are atomics, updated without the lock by any process.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "shmem.h"

R1Shared   *r1_shared = NULL;

/* r1_pg.c's shared-memory hooks: the space, then its initial state */
void
r1_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(R1Shared)));
}

/* With AddinShmemInitLock held. */
void
r1_shmem_init(void)
{
	bool		found;

	r1_shared = ShmemInitStruct("r1_pg", MAXALIGN(sizeof(R1Shared)), &found);
	if (!found)
	{
		memset(r1_shared, 0, sizeof(R1Shared));
		SpinLockInit(&r1_shared->mutex);
		r1_shared->state = R1_STATE_STARTING;
		pg_atomic_init_u64(&r1_shared->requests, 0);
		pg_atomic_init_u64(&r1_shared->errors, 0);
	}
}

void
r1_shmem_snapshot(R1Shared *out)
{
	SpinLockAcquire(&r1_shared->mutex);
	memcpy(out, r1_shared, sizeof(R1Shared));
	SpinLockRelease(&r1_shared->mutex);
}

/* Worker only. */
void
r1_shmem_set_state(R1EngineState state, const char *reason)
{
	SpinLockAcquire(&r1_shared->mutex);
	r1_shared->state = state;
	strlcpy(r1_shared->reason, reason ? reason : "", sizeof(r1_shared->reason));
	SpinLockRelease(&r1_shared->mutex);
}

const char *
r1_state_name(R1EngineState state)
{
	switch (state)
	{
		case R1_STATE_STARTING:
			return "starting";
		case R1_STATE_NOT_CONFIGURED:
			return "not_configured";
		case R1_STATE_LOADING:
			return "loading";
		case R1_STATE_READY:
			return "ready";
		case R1_STATE_RESTARTING:
			return "restarting";
		case R1_STATE_FAILED:
			return "failed";
		case R1_STATE_NO_DEVICE:
			return "no_device";
	}
	return "unknown";
}
