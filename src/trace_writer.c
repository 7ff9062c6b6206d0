/*
 * trace_writer.c - trace rows written in their own transaction, so that an
 * audit record outlives the caller's rollback (r1.trace_autonomous), by
 * writers that users cannot starve.
 *
 * The writers are r1.trace_writers static background workers ("r1 trace
 * writer"), registered in _PG_init: a static worker keeps its
 * max_worker_processes slot for the life of the server, so no parallel query
 * or other dynamic worker can take it.  A writer starts without a database;
 * when a trace for database D is queued and no writer serves D, a free writer
 * connects to D and serves it while it has work.  A writer that has been idle
 * for R1_TW_LINGER_MS, or whose slot is needed for a database nobody serves
 * (the oldest request waits for it), exits with code 1 and the postmaster
 * starts it again at once (bgw_restart_time 0), free for another database.
 * So a database can be dropped a moment after its last trace.
 *
 * A call: the backend copies the INSERT's parameters (the Datums traces.c
 * binds) into a dynamic shared memory segment, puts a request naming the
 * segment in the shared queue (one slot per backend: the queue cannot fill
 * up), wakes the writers, and waits on its latch (interruptibly, at most
 * r1.trace_timeout) until a writer has inserted the row as the owner of
 * r1.traces and committed, or reports the error.  When the time runs out, or
 * the writer failed, the call fails: a result is never returned without its
 * trace.  A writer that dies puts the requests it claimed back in the queue.
 *
 * Segment layout: R1TraceMsg, then for each parameter a header (null flag,
 * length) and its bytes at 8-byte alignment: by-value Datums as 8 bytes,
 * varlena and name values as they are in memory.
 *
 * On a hot standby (RecoveryInProgress()) the writers run too and send the
 * row to the primary instead, over libpq (src/remote.c): the same
 * parameterised INSERT, as the role r1.trace_primary_conninfo (by default the
 * standby's primary_conninfo) connects as, which must be allowed to insert
 * into r1.traces there.  The role columns are values the standby computed
 * for the caller, so the primary records the standby's caller, not the
 * connecting role.  A writer keeps its connection while it serves its
 * database; the call fails (with the primary's SQLSTATE, or 08001 when it
 * cannot be reached) when the row is not committed on the primary.
 *
 * Locking: r1_tw->lock (an LWLock) protects the queue and the writer slots;
 * it is held only to read and change them: no allocation, no ereport, no
 * system call (SetLatch is done after releasing it).
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlogrecovery.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "settings.h"
#include "trace_table.h"
#include "remote.h"
#include "trace_writer.h"

#define R1_TW_LINGER_MS			1000	/* a writer idle this long leaves its
										 * database */
#define R1_TW_PRUNE_INTERVAL_MS	60000	/* retention: prune at most this often
										 * per writer */
#define R1_TW_MAGIC				0x52315457	/* "R1TW" */


typedef enum R1TraceReqState
{
	R1_TQ_FREE = 0,
	R1_TQ_QUEUED,				/* waiting for a writer */
	R1_TQ_CLAIMED,				/* a writer is writing it */
	R1_TQ_DONE					/* written or failed (the segment says) */
} R1TraceReqState;

typedef struct R1TraceRequest
{
	R1TraceReqState state;
	bool		abandoned;		/* the caller gave up: the writer frees the
								 * slot */
	Oid			database;
	dsm_handle	handle;
	uint64		seq;			/* queue order; also checked in the segment */
	int			writer;			/* who claimed it */
	Latch	   *latch;			/* the caller's */
} R1TraceRequest;

typedef struct R1TraceWriterSlot
{
	pid_t		pid;			/* 0: not running */
	Latch	   *latch;
	Oid			database;		/* InvalidOid: not connected to one yet */
	TimestampTz last_prune;
	Oid			last_prune_db;
} R1TraceWriterSlot;

typedef struct R1TraceQueue
{
	LWLock	   *lock;
	uint64		next_seq;
	int			nwriters;		/* registered at start */
	R1TraceWriterSlot writers[R1_TRACE_MAX_WRITERS];
	int			nrequests;
	R1TraceRequest requests[FLEXIBLE_ARRAY_MEMBER];
} R1TraceQueue;

/* the segment's header */
typedef struct R1TraceMsg
{
	uint32		magic;
	uint64		seq;
	Oid			database;
	Oid			owner;
	int			nargs;
	int			retention;		/* the caller's r1.trace_retention (minutes) */
	bool		ok;				/* set by the writer */
	bool		remote;			/* sent to the primary (a standby's writer) */
	int			sqlerrcode;		/* the writer's error's SQLSTATE */
	char		error[512];		/* the writer's error message */
} R1TraceMsg;

typedef struct R1TraceArg
{
	int32		isnull;
	int32		len;			/* bytes that follow */
} R1TraceArg;

static R1TraceQueue *r1_tw = NULL;

static int	r1_my_writer = -1;	/* in a writer: its slot */
static PGconn * r1_primary_conn = NULL; /* in a standby's writer: to the
										 * primary */

#define R1_ALIGN8(n) (((n) + 7) & ~((Size) 7))

static Size
r1_arg_len(Oid type, Datum d)
{
	int16		typlen;
	bool		byval;

	get_typlenbyval(type, &typlen, &byval);
	if (byval)
		return sizeof(Datum);
	if (typlen == -1)
		return VARSIZE_ANY(DatumGetPointer(d));
	return typlen;				/* name: NAMEDATALEN */
}

/* ---- settings, shared memory, registration ---- */

/* the connection string a standby sends traces with ("" when none is set) */
const char *
r1_trace_primary_conninfo_value(void)
{
	if (r1_trace_primary_conninfo && r1_trace_primary_conninfo[0])
		return r1_trace_primary_conninfo;
	return PrimaryConnInfo ? PrimaryConnInfo : "";
}

static Size
r1_tw_size(void)
{
	return add_size(offsetof(R1TraceQueue, requests), mul_size(MaxBackends, sizeof(R1TraceRequest)));
}

void
r1_trace_writer_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(r1_tw_size()));
	RequestNamedLWLockTranche("r1_pg trace queue", 1);
}

void
r1_trace_writer_shmem_init(void)
{
	bool		found;

	r1_tw = ShmemInitStruct("r1_pg trace queue", r1_tw_size(), &found);
	if (!found)
	{
		memset(r1_tw, 0, r1_tw_size());
		r1_tw->lock = &(GetNamedLWLockTranche("r1_pg trace queue"))->lock;
		r1_tw->nrequests = MaxBackends;
		r1_tw->next_seq = 1;
		r1_tw->nwriters = IsBinaryUpgrade ? 0 : r1_trace_writers;
	}
}

void
r1_trace_writer_preload(void)
{
	/* no traces are written in binary-upgrade mode (pg_upgrade) */
	if (IsBinaryUpgrade)
		return;
	for (int i = 0; i < r1_trace_writers; i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		/* a hot standby's writers send traces to the primary */
		worker.bgw_start_time = BgWorkerStart_ConsistentState;
		worker.bgw_restart_time = 0;	/* at once: leaving a database is an
										 * exit */
		strlcpy(worker.bgw_library_name, "r1_pg", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, "r1_trace_writer_main", BGW_MAXLEN);
		snprintf(worker.bgw_name, BGW_MAXLEN, "r1 trace writer %d", i);
		strlcpy(worker.bgw_type, "r1 trace writer", BGW_MAXLEN);
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}

/* ---- the calling backend ---- */

/* wake every running writer (after releasing the lock) */
static void
r1_tw_wake_writers(void)
{
	Latch	   *latches[R1_TRACE_MAX_WRITERS];
	int			n = 0;

	LWLockAcquire(r1_tw->lock, LW_SHARED);
	for (int i = 0; i < r1_tw->nwriters; i++)
		if (r1_tw->writers[i].pid != 0 && r1_tw->writers[i].latch != NULL)
			latches[n++] = r1_tw->writers[i].latch;
	LWLockRelease(r1_tw->lock);
	for (int i = 0; i < n; i++)
		SetLatch(latches[i]);
}

/* the caller gives up on its request (time out, cancel, exit) */
static void
r1_tw_abandon(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);
	R1TraceRequest *r = &r1_tw->requests[slot];

	LWLockAcquire(r1_tw->lock, LW_EXCLUSIVE);
	if (r->state == R1_TQ_QUEUED || r->state == R1_TQ_DONE)
		r->state = R1_TQ_FREE;
	else if (r->state == R1_TQ_CLAIMED)
		r->abandoned = true;
	LWLockRelease(r1_tw->lock);
}

void
r1_trace_write_autonomous(Oid owner, int nargs, const Oid *types, const Datum *values,
						  const char *nulls)
{
	Size		size = R1_ALIGN8(sizeof(R1TraceMsg));
	Datum	   *vals = palloc(sizeof(Datum) * nargs);
	dsm_segment *seg;
	char	   *p;
	R1TraceMsg *msg;
	int			slot = -1;
	uint64		seq = 0;
	TimestampTz deadline;
	R1TraceReqState state = R1_TQ_QUEUED;
	int			running = 0;

	if (r1_tw == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1_pg is not loaded"),
				 errhint("Add r1_pg to shared_preload_libraries and restart the server.")));
	if (r1_tw->nwriters == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not record the r1 trace: no r1 trace writer is configured"),
				 errdetail("r1.log_traces and r1.trace_autonomous are on, and r1.trace_writers is 0."),
				 errhint("Set r1.trace_writers to 1 or more and restart the server, or have a superuser set r1.trace_autonomous = off.")));

	for (int i = 0; i < nargs; i++)
	{
		vals[i] = values[i];
		size += R1_ALIGN8(sizeof(R1TraceArg));
		if (nulls[i] == ' ')
		{
			int16		typlen;
			bool		byval;

			get_typlenbyval(types[i], &typlen, &byval);
			/* no compressed or external values in the copy */
			if (!byval && typlen == -1)
				vals[i] = PointerGetDatum(PG_DETOAST_DATUM_PACKED(values[i]));
			size += R1_ALIGN8(r1_arg_len(types[i], vals[i]));
		}
	}
	seg = dsm_create(size, 0);
	msg = dsm_segment_address(seg);
	memset(msg, 0, sizeof(*msg));
	msg->magic = R1_TW_MAGIC;
	msg->database = MyDatabaseId;
	msg->owner = owner;
	msg->nargs = nargs;
	msg->retention = r1_trace_retention;
	p = (char *) msg + R1_ALIGN8(sizeof(R1TraceMsg));
	for (int i = 0; i < nargs; i++)
	{
		R1TraceArg *a = (R1TraceArg *) p;

		p += R1_ALIGN8(sizeof(R1TraceArg));
		a->isnull = nulls[i] != ' ';
		a->len = 0;
		if (!a->isnull)
		{
			int16		typlen;
			bool		byval;

			get_typlenbyval(types[i], &typlen, &byval);
			a->len = (int32) r1_arg_len(types[i], vals[i]);
			if (byval)
				memcpy(p, &vals[i], sizeof(Datum));
			else
				memcpy(p, DatumGetPointer(vals[i]), a->len);
			p += R1_ALIGN8(a->len);
		}
	}

	/* queue it: one request per backend at a time, so a free slot exists */
	LWLockAcquire(r1_tw->lock, LW_EXCLUSIVE);
	for (int i = 0; i < r1_tw->nrequests; i++)
		if (r1_tw->requests[i].state == R1_TQ_FREE)
		{
			R1TraceRequest *r = &r1_tw->requests[i];

			slot = i;
			seq = r1_tw->next_seq++;
			r->state = R1_TQ_QUEUED;
			r->abandoned = false;
			r->database = MyDatabaseId;
			r->handle = dsm_segment_handle(seg);
			r->seq = seq;
			r->writer = -1;
			r->latch = MyLatch;
			msg->seq = seq;
			break;
		}
	LWLockRelease(r1_tw->lock);
	if (slot < 0)
		elog(ERROR, "r1 trace queue is full");
	r1_tw_wake_writers();

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r1_trace_timeout);
	PG_ENSURE_ERROR_CLEANUP(r1_tw_abandon, Int32GetDatum(slot));
	{
		for (;;)
		{
			TimestampTz now;
			long		ms;

			LWLockAcquire(r1_tw->lock, LW_SHARED);
			state = r1_tw->requests[slot].state;
			running = 0;
			for (int i = 0; i < r1_tw->nwriters; i++)
				running += r1_tw->writers[i].pid != 0;
			LWLockRelease(r1_tw->lock);
			if (state == R1_TQ_DONE)
				break;
			now = GetCurrentTimestamp();
			if (now >= deadline)
				break;
			ms = Min((long) ((deadline - now + 999) / 1000), 1000L);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, Max(ms, 1),
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_END_ENSURE_ERROR_CLEANUP(r1_tw_abandon, Int32GetDatum(slot));

	if (state != R1_TQ_DONE)
	{
		r1_tw_abandon(0, Int32GetDatum(slot));
		dsm_detach(seg);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not record the r1 trace within r1.trace_timeout (%d ms)", r1_trace_timeout),
				 running == 0 ?
				 errdetail("No r1 trace writer is running (r1.trace_writers = %d); the call's result is not returned without its trace.",
						   r1_tw->nwriters) :
				 errdetail("The r1 trace writers (%d running) did not commit the trace in time; the call's result is not returned without its trace.",
						   running),
				 errhint("See the server log for the r1 trace writers; a superuser can raise r1.trace_timeout or r1.trace_writers.")));
	}
	/* done: the writer's verdict is in the segment */
	LWLockAcquire(r1_tw->lock, LW_EXCLUSIVE);
	r1_tw->requests[slot].state = R1_TQ_FREE;
	LWLockRelease(r1_tw->lock);
	if (!msg->ok)
	{
		char		error[512];

		strlcpy(error, msg->error[0] ? msg->error : "unknown error", sizeof(error));
		if (msg->remote)
		{
			int			code = msg->sqlerrcode ? msg->sqlerrcode : ERRCODE_CONNECTION_FAILURE;

			dsm_detach(seg);
			ereport(ERROR,
					(errcode(code),
					 errmsg("could not record the r1 trace on the primary: %s", error),
					 errdetail("This server is a standby with r1.log_traces on: its traces are written on the primary, and the call's result is not returned without its trace."),
					 errhint("Check that the primary is reachable with r1.trace_primary_conninfo (empty: primary_conninfo) and that its role may INSERT into r1.traces there, or have a superuser turn r1.log_traces off on this server.")));
		}
		dsm_detach(seg);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not record the r1 trace: %s", error),
				 errdetail("r1.trace_autonomous is on: an r1 trace writer writes each trace in its own transaction, and the call's result is not returned without it."),
				 errhint("See the server log; a superuser can SET r1.trace_autonomous = off to write traces in the caller's transaction.")));
	}
	dsm_detach(seg);
}

/* ---- the writer ---- */

/* the writer exits: requests it claimed go back to the queue */
static void
r1_tw_writer_exit(int code, Datum arg)
{
	Latch	   *wake[R1_TRACE_MAX_WRITERS];
	int			n = 0;

	LWLockAcquire(r1_tw->lock, LW_EXCLUSIVE);
	for (int i = 0; i < r1_tw->nrequests; i++)
	{
		R1TraceRequest *r = &r1_tw->requests[i];

		if (r->state == R1_TQ_CLAIMED && r->writer == r1_my_writer)
		{
			r->state = r->abandoned ? R1_TQ_FREE : R1_TQ_QUEUED;
			r->writer = -1;
		}
	}
	r1_tw->writers[r1_my_writer].pid = 0;
	r1_tw->writers[r1_my_writer].latch = NULL;
	r1_tw->writers[r1_my_writer].database = InvalidOid;
	for (int i = 0; i < r1_tw->nwriters; i++)
		if (i != r1_my_writer && r1_tw->writers[i].pid != 0)
			wake[n++] = r1_tw->writers[i].latch;
	LWLockRelease(r1_tw->lock);
	for (int i = 0; i < n; i++)
		SetLatch(wake[i]);
}

/* Is some writer serving db (or connecting to it)?  Lock held. */
static bool
r1_tw_served_locked(Oid db)
{
	for (int i = 0; i < r1_tw->nwriters; i++)
		if (r1_tw->writers[i].pid != 0 && r1_tw->writers[i].database == db)
			return true;
	return false;
}

/*
 * What to do next (lock held exclusively): claim a request of my database
 * (returns its slot), pick a database to connect to (*bind), or say that
 * this writer should leave its database (*leave).
 */
static int
r1_tw_next_locked(Oid *bind, bool *leave)
{
	R1TraceWriterSlot *me = &r1_tw->writers[r1_my_writer];
	int			mine = -1;
	int			oldest = -1;
	bool		free_writer = false;

	*bind = InvalidOid;
	*leave = false;
	for (int i = 0; i < r1_tw->nrequests; i++)
	{
		R1TraceRequest *r = &r1_tw->requests[i];

		if (r->state != R1_TQ_QUEUED)
			continue;
		if (OidIsValid(me->database) && r->database == me->database &&
			(mine < 0 || r->seq < r1_tw->requests[mine].seq))
			mine = i;
		if (oldest < 0 || r->seq < r1_tw->requests[oldest].seq)
			oldest = i;
	}
	if (oldest < 0)
		return -1;
	if (!OidIsValid(me->database))
	{
		/* free: connect to the database of the oldest request nobody serves */
		int			pick = -1;

		for (int i = 0; i < r1_tw->nrequests; i++)
		{
			R1TraceRequest *r = &r1_tw->requests[i];

			if (r->state == R1_TQ_QUEUED && !r1_tw_served_locked(r->database) &&
				(pick < 0 || r->seq < r1_tw->requests[pick].seq))
				pick = i;
		}
		if (pick >= 0)
			*bind = me->database = r1_tw->requests[pick].database;
		return -1;
	}

	/*
	 * Serving a database: leave it when the oldest request waits for a
	 * database nobody serves, no writer is free, and it is older than mine
	 * (so a busy database cannot starve another one).
	 */
	if (!r1_tw_served_locked(r1_tw->requests[oldest].database) &&
		(mine < 0 || r1_tw->requests[oldest].seq < r1_tw->requests[mine].seq))
	{
		for (int i = 0; i < r1_tw->nwriters; i++)
			if (r1_tw->writers[i].pid != 0 && !OidIsValid(r1_tw->writers[i].database))
				free_writer = true;
		if (!free_writer)
		{
			*leave = true;
			return -1;
		}
	}
	if (mine >= 0)
	{
		r1_tw->requests[mine].state = R1_TQ_CLAIMED;
		r1_tw->requests[mine].writer = r1_my_writer;
		return mine;
	}
	return -1;
}

/*
 * A standby's writer: insert the row on the primary (in a transaction of the
 * caller's writer, for the output functions' catalog lookups).
 */
static void
r1_tw_send_to_primary(int nargs, const Oid *types, const Datum *values, const char *nulls)
{
	static char *conn_for = NULL;	/* the connection string r1_primary_conn
									 * used */
	const char *conninfo = r1_trace_primary_conninfo_value();
	const char **texts = palloc(sizeof(char *) * nargs);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r1_trace_timeout);

	if (conninfo[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no connection string for the primary"),
				 errdetail("r1.trace_primary_conninfo and primary_conninfo are both empty.")));
	for (int i = 0; i < nargs; i++)
	{
		Oid			out;
		bool		varlena;

		texts[i] = NULL;
		if (nulls[i] == ' ')
		{
			getTypeOutputInfo(types[i], &out, &varlena);
			texts[i] = OidOutputFunctionCall(out, values[i]);
		}
	}
	/* a new connection string (reload), or a connection that broke */
	if (r1_primary_conn &&
		(PQstatus(r1_primary_conn) != CONNECTION_OK || conn_for == NULL || strcmp(conn_for, conninfo) != 0))
	{
		PQfinish(r1_primary_conn);
		r1_primary_conn = NULL;
	}
	if (r1_primary_conn == NULL)
	{
		r1_primary_conn = r1_remote_connect(conninfo, get_database_name(MyDatabaseId), "the primary", deadline);
		if (conn_for)
			pfree(conn_for);
		conn_for = MemoryContextStrdup(TopMemoryContext, conninfo);
	}
	PQclear(r1_remote_exec(r1_primary_conn, r1_trace_insert_sql, nargs, types, texts,
						   "the primary", deadline));
}

/* Insert one request's row and commit; the verdict goes into the segment. */
static void
r1_tw_write(int slot)
{
	R1TraceRequest *r = &r1_tw->requests[slot];
	R1TraceWriterSlot *me = &r1_tw->writers[r1_my_writer];
	dsm_handle	handle;
	uint64		seq;
	dsm_segment *seg;
	R1TraceMsg *msg = NULL;
	Latch	   *latch = NULL;
	MemoryContext oldcxt = CurrentMemoryContext;

	LWLockAcquire(r1_tw->lock, LW_SHARED);
	handle = r->handle;
	seq = r->seq;
	LWLockRelease(r1_tw->lock);

	seg = dsm_attach(handle);
	if (seg != NULL)
	{
		msg = dsm_segment_address(seg);
		if (msg->magic != R1_TW_MAGIC || msg->seq != seq || msg->database != MyDatabaseId)
			msg = NULL;			/* not our caller's any more */
	}
	if (msg != NULL)
	{
		msg->remote = RecoveryInProgress();
		pgstat_report_activity(STATE_RUNNING, msg->remote ? "r1 trace writer: sending a trace to the primary" :
							   "r1 trace writer: writing a trace");
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PG_TRY();
		{
			int			nargs = msg->nargs;
			Oid		   *types = palloc(sizeof(Oid) * nargs);
			Datum	   *values = palloc(sizeof(Datum) * nargs);
			char	   *nulls = palloc(nargs);
			char	   *p = (char *) msg + R1_ALIGN8(sizeof(R1TraceMsg));
			Oid			save_user;
			int			save_sec;
			TimestampTz now = GetCurrentTimestamp();

			r1_trace_arg_types(types, nargs);
			for (int i = 0; i < nargs; i++)
			{
				R1TraceArg *a = (R1TraceArg *) p;

				p += R1_ALIGN8(sizeof(R1TraceArg));
				nulls[i] = a->isnull ? 'n' : ' ';
				values[i] = (Datum) 0;
				if (!a->isnull)
				{
					int16		typlen;
					bool		byval;

					get_typlenbyval(types[i], &typlen, &byval);
					if (byval)
						memcpy(&values[i], p, sizeof(Datum));
					else
					{
						char	   *copy = palloc(a->len);

						memcpy(copy, p, a->len);
						values[i] = PointerGetDatum(copy);
					}
					p += R1_ALIGN8(a->len);
				}
			}
			if (msg->remote)
			{
				r1_tw_send_to_primary(nargs, types, values, nulls);
				CommitTransactionCommand();
				msg->ok = true;
			}
			else
			{
				/*
				 * as the owner of r1.traces, schema-qualified SQL, nobody
				 * else's functions
				 */
				GetUserIdAndSecContext(&save_user, &save_sec);
				SetUserIdAndSecContext(msg->owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
									   SECURITY_RESTRICTED_OPERATION);
				if (SPI_connect() != SPI_OK_CONNECT)
					elog(ERROR, "SPI_connect failed");
				PushActiveSnapshot(GetTransactionSnapshot());
				if (SPI_execute_with_args(r1_trace_insert_sql, nargs, types, values, nulls, false, 0) != SPI_OK_INSERT)
					elog(ERROR, "could not insert into r1.traces");
				if (msg->retention > 0 &&
					(me->last_prune_db != MyDatabaseId ||
					 TimestampDifferenceExceeds(me->last_prune, now, R1_TW_PRUNE_INTERVAL_MS)))
				{
					me->last_prune = now;
					me->last_prune_db = MyDatabaseId;
					(void) r1_trace_prune(msg->retention, false);
				}
				SPI_finish();
				PopActiveSnapshot();
				SetUserIdAndSecContext(save_user, save_sec);
				CommitTransactionCommand();
				msg->ok = true;
			}
		}
		PG_CATCH();
		{
			ErrorData  *ed;

			HOLD_INTERRUPTS();
			MemoryContextSwitchTo(oldcxt);
			ed = CopyErrorData();
			strlcpy(msg->error, ed->message ? ed->message : "unknown error", sizeof(msg->error));
			msg->sqlerrcode = ed->sqlerrcode;
			msg->ok = false;
			if (msg->remote && r1_primary_conn)
			{
				/* the connection may be in any state: start afresh next time */
				PQfinish(r1_primary_conn);
				r1_primary_conn = NULL;
			}
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			FreeErrorData(ed);
			RESUME_INTERRUPTS();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(oldcxt);
		pgstat_report_stat(false);
		pgstat_report_activity(STATE_IDLE, NULL);
	}

	LWLockAcquire(r1_tw->lock, LW_EXCLUSIVE);
	if (r->abandoned || msg == NULL)
		r->state = R1_TQ_FREE;
	else
	{
		r->state = R1_TQ_DONE;
		latch = r->latch;
	}
	r->writer = -1;
	LWLockRelease(r1_tw->lock);
	if (latch)
		SetLatch(latch);
	if (seg != NULL)
		dsm_detach(seg);
}

void
r1_trace_writer_main(Datum main_arg)
{
	TimestampTz idle_since = GetCurrentTimestamp();

	r1_my_writer = DatumGetInt32(main_arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	if (r1_my_writer < 0 || r1_my_writer >= r1_tw->nwriters)
		proc_exit(0);

	LWLockAcquire(r1_tw->lock, LW_EXCLUSIVE);
	r1_tw->writers[r1_my_writer].pid = MyProcPid;
	r1_tw->writers[r1_my_writer].latch = MyLatch;
	r1_tw->writers[r1_my_writer].database = InvalidOid;
	LWLockRelease(r1_tw->lock);
	before_shmem_exit(r1_tw_writer_exit, (Datum) 0);

	for (;;)
	{
		Oid			bind;
		bool		leave;
		int			slot;
		bool		connected = OidIsValid(MyDatabaseId);

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		LWLockAcquire(r1_tw->lock, LW_EXCLUSIVE);
		slot = r1_tw_next_locked(&bind, &leave);
		LWLockRelease(r1_tw->lock);

		if (slot >= 0)
		{
			r1_tw_write(slot);
			idle_since = GetCurrentTimestamp();
			continue;
		}
		if (OidIsValid(bind) && !connected)
		{
			/* a database nobody serves: connect (once per process) */
			BackgroundWorkerInitializeConnectionByOid(bind, InvalidOid, BGWORKER_BYPASS_ALLOWCONN);
			SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
			/* a trace is durable when the caller gets its result */
			SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
			pgstat_report_appname("r1 trace writer");
			idle_since = GetCurrentTimestamp();
			continue;
		}

		/*
		 * leave the database: exit 1, the postmaster starts this writer again
		 * at once
		 */
		if (connected &&
			(leave || TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(), R1_TW_LINGER_MS)))
			proc_exit(1);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 connected ? R1_TW_LINGER_MS / 4 : 10000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
