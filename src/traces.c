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
#include "common/shortest_dec.h"
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
#include "trace_writer.h"
#include "traces.h"

#define R1_PRUNE_INTERVAL_MS	60000
#define R1_PRUNE_BATCH			10000

bool		r1_log_traces = false;
int			r1_trace_retention = 0;
bool		r1_trace_autonomous = true;

static TimestampTz r1_last_prune = 0;

void
r1_traces_define_gucs(void)
{
	DefineCustomBoolVariable("r1.log_traces",
							 "Record every r1 call in the table r1.traces.",
							 "Prompt, parameters, think, answer, token counts, model and weights checksum; "
							 "only members of r1_auditor can read them. The row is written in the caller's transaction.",
							 &r1_log_traces,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("r1.trace_autonomous",
							 "Write each trace in a transaction of its own, so that it survives the caller's rollback.",
							 "A static r1 trace writer worker inserts the row and commits before the call returns "
							 "(r1.trace_writers, r1.trace_timeout). Off: the row is written in the caller's transaction.",
							 &r1_trace_autonomous,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("r1.trace_retention",
							"How long rows of r1.traces are kept (0 = forever).",
							"Older rows are deleted by calls that write traces, at most once a minute per session, "
							"or by r1_prune_traces().",
							&r1_trace_retention,
							0, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);
}

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

/* r1.traces and its owner; an ERROR when the extension is not in this database. */
static Oid
r1_traces_owner(void)
{
	Oid			nsp = get_namespace_oid("r1", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("traces", nsp) : InvalidOid;
	HeapTuple	tp;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table r1.traces does not exist"),
				 errdetail("r1.log_traces is on and this database has no r1.traces."),
				 errhint("Run CREATE EXTENSION r1_pg in this database, or turn r1.log_traces off.")));
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

typedef struct R1OwnerContext
{
	Oid			save_user;
	int			save_sec;
	int			nest;
} R1OwnerContext;

/*
 * Become the owner of r1.traces with a safe search_path.  An ERROR before
 * r1_as_owner_end() is undone by the (sub)transaction abort.
 */
static void
r1_as_owner_begin(R1OwnerContext *oc)
{
	Oid			owner = r1_traces_owner();

	GetUserIdAndSecContext(&oc->save_user, &oc->save_sec);
	SetUserIdAndSecContext(owner, oc->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	oc->nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static void
r1_as_owner_end(R1OwnerContext *oc)
{
	AtEOXact_GUC(false, oc->nest);
	SetUserIdAndSecContext(oc->save_user, oc->save_sec);
}

/* Delete rows older than retention_min minutes; returns how many.  Inside SPI, as the owner. */
uint64
r1_trace_prune(int retention_min, bool all)
{
	Datum		cutoff;
	Oid			type = TIMESTAMPTZOID;
	const char *sql = all ?
		"DELETE FROM r1.traces WHERE at < $1" :
		"DELETE FROM r1.traces WHERE id = ANY (ARRAY("
		"SELECT id FROM r1.traces WHERE at < $1 LIMIT " CppAsString2(R1_PRUNE_BATCH)
		" FOR UPDATE SKIP LOCKED))";

	if (retention_min <= 0)
		return 0;
	cutoff = TimestampTzGetDatum(GetCurrentTimestamp() - (TimestampTz) retention_min * USECS_PER_MINUTE);
	if (SPI_execute_with_args(sql, 1, &type, &cutoff, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not prune r1.traces");
	return SPI_processed;
}

static void
r1_append_float(StringInfo buf, const char *key, double v)
{
	char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

	double_to_shortest_decimal_buf(v, num);
	appendStringInfo(buf, ",\"%s\":%s", key, num);
}

static Jsonb *
r1_trace_parameters(const R1TraceInfo *t)
{
	StringInfoData buf;

	if (t->parameters)
		return t->parameters;
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"max_tokens\":%d", t->max_tokens);
	r1_append_float(&buf, "temperature", t->temperature);
	r1_append_float(&buf, "top_p", t->top_p);
	appendStringInfo(&buf, ",\"top_k\":%d", t->top_k);
	r1_append_float(&buf, "min_p", t->min_p);
	if (t->ignore_eos)
		appendStringInfoString(&buf, ",\"ignore_eos\":true");
	if (t->extra_params && t->extra_params[0])
		appendStringInfo(&buf, ",%s", t->extra_params);
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

#define R1_TRACE_NARGS 19

const char	r1_trace_insert_sql[] =
"INSERT INTO r1.traces (at, source, role, session_role, database, prompt, system, "
"parameters, seed, think, answer, boxed, finish_reason, prompt_tokens, "
"completion_tokens, think_tokens, ms, model, weights_checksum) VALUES "
"($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";

void
r1_trace_arg_types(Oid *types, int nargs)
{
	static const Oid t[R1_TRACE_NARGS] = {
		TIMESTAMPTZOID, TEXTOID, NAMEOID, NAMEOID, NAMEOID, TEXTOID, TEXTOID,
		JSONBOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID,
		INT4OID, INT4OID, FLOAT8OID, TEXTOID, TEXTOID
	};

	Assert(nargs == R1_TRACE_NARGS);
	memcpy(types, t, sizeof(t));
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
	R1_SET(JsonbPGetDatum(r1_trace_parameters(t)));
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
