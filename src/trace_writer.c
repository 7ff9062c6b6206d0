/*
 * trace_writer.c - a trace row written in its own transaction, so that an
 * audit record outlives the caller's rollback (r1.trace_autonomous).
 *
 * The caller copies the INSERT's parameters (the same Datums traces.c binds)
 * into a dynamic shared memory segment, starts a short-lived background
 * worker connected to its database as the owner of r1.traces, and waits for
 * it to exit: the worker inserts the row, commits, and reports success or the
 * error in the segment.  The caller's transaction is not involved, so
 * ROLLBACK (or a read-only transaction) no longer hides a call from the
 * audit.  When no worker slot frees up within 2 s (max_worker_processes),
 * the caller writes the row in its own transaction instead, with a WARNING.
 *
 * Segment layout: R1TraceMsg, then for each parameter a header (null flag,
 * length) and its bytes at 8-byte alignment: by-value Datums as 8 bytes,
 * varlena and name values as they are in memory.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "trace_writer.h"

#define R1_TW_NOT_RUN	0
#define R1_TW_OK		1
#define R1_TW_FAILED	2
#define R1_TW_SLOT_TRIES 200	/* x 10 ms: how long to wait for a worker slot */

typedef struct R1TraceMsg
{
	Oid			database;
	Oid			owner;
	int			nargs;
	volatile int status;		/* R1_TW_*, set by the worker */
	char		error[512];		/* the worker's error message */
} R1TraceMsg;

typedef struct R1TraceArg
{
	int32		isnull;
	int32		len;			/* bytes that follow */
} R1TraceArg;

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

bool
r1_trace_write_autonomous(Oid owner, int nargs, const Oid *types, const Datum *values,
						  const char *nulls)
{
	Size		size = R1_ALIGN8(sizeof(R1TraceMsg));
	Datum	   *vals = palloc(sizeof(Datum) * nargs);
	dsm_segment *seg;
	char	   *p;
	R1TraceMsg *msg;
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus st;

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
	msg->database = MyDatabaseId;
	msg->owner = owner;
	msg->nargs = nargs;
	msg->status = R1_TW_NOT_RUN;
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

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "r1_pg", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "r1_trace_writer_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "r1 trace writer for PID %d", MyProcPid);
	strlcpy(worker.bgw_type, "r1 trace writer", BGW_MAXLEN);
	worker.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
	worker.bgw_notify_pid = MyProcPid;
	/* slots free up within milliseconds (each writer lives that long): retry a while */
	for (int tries = 0; !RegisterDynamicBackgroundWorker(&worker, &handle); tries++)
	{
		if (tries >= R1_TW_SLOT_TRIES)
		{
			dsm_detach(seg);
			return false;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	st = WaitForBackgroundWorkerShutdown(handle);
	if (msg->status != R1_TW_OK)
	{
		char		error[512];

		strlcpy(error, msg->status == R1_TW_FAILED ? msg->error : "the worker did not run", sizeof(error));
		dsm_detach(seg);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not record the r1 trace: %s", error),
				 errdetail("r1.trace_autonomous is on: a background worker writes each trace in its own transaction%s.",
						   st == BGWH_POSTMASTER_DIED ? " (the postmaster died)" : ""),
				 errhint("See the server log; SET r1.trace_autonomous = off writes traces in the caller's transaction.")));
	}
	dsm_detach(seg);
	return true;
}

void
r1_trace_writer_main(Datum main_arg)
{
	dsm_segment *seg;
	R1TraceMsg *msg;
	MemoryContext oldcxt = CurrentMemoryContext;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1 trace writer: the caller's segment is gone")));
	msg = dsm_segment_address(seg);
	BackgroundWorkerInitializeConnectionByOid(msg->database, msg->owner, 0);
	pgstat_report_appname("r1 trace writer");

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		int			nargs = msg->nargs;
		Oid		   *types = palloc(sizeof(Oid) * nargs);
		Datum	   *values = palloc(sizeof(Datum) * nargs);
		char	   *nulls = palloc(nargs);
		char	   *p = (char *) msg + R1_ALIGN8(sizeof(R1TraceMsg));

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
		/* schema-qualified SQL; no function of anyone else's can run here */
		(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SET, true, 0, false);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_execute_with_args(r1_trace_insert_sql, nargs, types, values, nulls, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not insert into r1.traces");
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		msg->status = R1_TW_OK;
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(oldcxt);
		ed = CopyErrorData();
		strlcpy(msg->error, ed->message ? ed->message : "unknown error", sizeof(msg->error));
		msg->status = R1_TW_FAILED;
		PG_RE_THROW();
	}
	PG_END_TRY();
	dsm_detach(seg);
	proc_exit(0);
}
