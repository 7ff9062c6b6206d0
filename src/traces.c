/*
 * traces.c - the trace audit (r1.log_traces, r1.trace_retention, r1.traces).
 *
 * Where the row is written: with r1.trace_autonomous (the default), in a
 * transaction of its own, by one of the static "r1 trace writer" workers
 * (trace_writer.c), so that a call is audited even when the caller's
 * transaction rolls back; the call waits until the row is committed and
 * fails when it is not (no writer, r1.trace_timeout, an error): a result is
 * never returned without its trace.  With the setting off, in the caller's
 * transaction through SPI (a rolled-back call then leaves no trace, like any
 * other row it wrote).  Job workers always write in their result's
 * transaction (the trace and the result commit together).  On a hot standby
 * a trace writer sends the row to the primary (whatever
 * r1.trace_autonomous says: nothing can be written here), and the call fails
 * when it is not committed there.  Where a trace cannot be written at all (a
 * standby without a connection string for the primary; a read-only
 * transaction when it would be written there) the call fails before it runs.
 *
 * As whom: callers need no privilege on r1.traces (only r1_auditor may read
 * it).  The insert runs as the table's owner (the extension's owner), as a
 * security-restricted operation with search_path = pg_catalog, pg_temp, and
 * names every object schema-qualified, the way maintenance commands run
 * index expressions.
 *
 * Retention: with r1.trace_retention > 0, the process that writes a trace (a
 * trace writer, or the caller with r1.trace_autonomous off) deletes rows
 * older than that, at most once a minute and at most 10000 rows
 * at a time, skipping rows another transaction holds (SKIP LOCKED), so two
 * callers never wait on each other.  r1_prune_traces() prunes on demand.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "client.h"
#include "settings.h"
#include "trace_table.h"
#include "trace_writer.h"
#include "traces.h"

#define R1_PRUNE_INTERVAL_MS	60000

static TimestampTz r1_last_prune = 0;

void
r1_trace_check_writable(void)
{
	if (RecoveryInProgress())
	{
		/* a trace writer sends it to the primary */
		if (MyBackendType != B_BACKEND)
			ereport(ERROR,
					(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
					 errmsg("cannot record an r1 trace during recovery"),
					 errdetail("r1.log_traces is on: only a client session's traces are sent to the primary.")));
		if (r1_trace_primary_conninfo_value()[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
					 errmsg("cannot record an r1 trace during recovery"),
					 errdetail("r1.log_traces is on: a standby records its traces on the primary, and neither r1.trace_primary_conninfo nor primary_conninfo is set."),
					 errhint("Have a superuser set r1.trace_primary_conninfo to a connection string for the primary, or turn r1.log_traces off for this server.")));
		return;
	}
	if (XactReadOnly && !(r1_trace_autonomous && MyBackendType == B_BACKEND))
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot record an r1 trace in a read-only transaction"),
				 errdetail("r1.log_traces is on: every call writes a row to r1.traces."),
				 errhint("Call the model in a read-write transaction.")));
}

void
r1_trace_record(const R1TraceInfo *t)
{
	Oid			types[R1_TRACE_NARGS];
	Datum		values[R1_TRACE_NARGS];
	char		nulls[R1_TRACE_NARGS];
	char	   *db = get_database_name(MyDatabaseId);
	Jsonb	   *r = t->response;
	TimestampTz now = GetCurrentTimestamp();
	R1OwnerContext oc;
	int			i = 0;

	memset(nulls, ' ', sizeof(nulls));
#define R1_SET(d) (values[i++] = (d))
#define R1_SET_TEXT(p) (nulls[i] = (p) ? ' ' : 'n', values[i++] = PointerGetDatum(p))
	R1_SET(TimestampTzGetDatum(t->started));
	R1_SET(CStringGetTextDatum(t->source));
	/* names as the caller is, before becoming the owner */
	R1_SET(DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(OidIsValid(t->role) ? t->role : GetUserId(), false))));
	R1_SET(DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(OidIsValid(t->session_role) ? t->session_role :
																		 OidIsValid(t->role) ? t->role : GetSessionUserId(), false))));
	R1_SET(DirectFunctionCall1(namein, CStringGetDatum(db ? db : "")));
	R1_SET_TEXT(t->prompt);
	R1_SET_TEXT(t->system);
	R1_SET(JsonbPGetDatum(t->parameters));
	nulls[i] = t->has_seed ? ' ' : 'n';
	R1_SET(Int64GetDatum(t->seed));
	R1_SET_TEXT(r1_json_text(r, "think"));
	R1_SET_TEXT(r1_json_text(r, "answer"));
	R1_SET_TEXT(r1_json_text(r, "boxed"));
	R1_SET_TEXT(r1_json_text(r, "finish_reason"));
	R1_SET(Int32GetDatum((int32) r1_json_int(r, "prompt_tokens")));
	R1_SET(Int32GetDatum((int32) r1_json_int(r, "completion_tokens")));
	R1_SET(Int32GetDatum((int32) r1_json_int(r, "think_tokens")));
	R1_SET(Float8GetDatum(r1_json_float(r, "ms")));
	R1_SET_TEXT(r1_json_text(r, "model"));
	R1_SET_TEXT(r1_json_text(r, "weights_checksum"));
#undef R1_SET
#undef R1_SET_TEXT
	Assert(i == R1_TRACE_NARGS);
	r1_trace_arg_types(types, R1_TRACE_NARGS);

	/*
	 * A backend's call: in a transaction of its own, by a trace writer (which
	 * also prunes); the call fails when it cannot be written.
	 */
	if ((r1_trace_autonomous || RecoveryInProgress()) && MyBackendType == B_BACKEND)
	{
		r1_trace_write_autonomous(r1_traces_owner(), R1_TRACE_NARGS, types, values, nulls);
		return;
	}

	/* in the caller's transaction (r1.trace_autonomous off, job workers) */
	r1_as_owner_begin(&oc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(r1_trace_insert_sql, R1_TRACE_NARGS, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into r1.traces");
	if (r1_trace_retention > 0 &&
		TimestampDifferenceExceeds(r1_last_prune, now, R1_PRUNE_INTERVAL_MS))
	{
		r1_last_prune = now;
		(void) r1_trace_prune(r1_trace_retention, false);
	}
	SPI_finish();
	r1_as_owner_end(&oc);
}

PG_FUNCTION_INFO_V1(pg_r1_prune_traces);

/* r1_prune_traces(): delete every row older than r1.trace_retention now. */
Datum
pg_r1_prune_traces(PG_FUNCTION_ARGS)
{
	R1OwnerContext oc;
	uint64		n;

	r1_as_owner_begin(&oc);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	n = r1_trace_prune(r1_trace_retention, true);
	SPI_finish();
	r1_as_owner_end(&oc);
	PG_RETURN_INT64((int64) n);
}
