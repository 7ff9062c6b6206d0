/*
 * jobs_remote.c - a job worker whose engine is another r1_pg server (an
 * r1.job_servers entry: a hot standby or an independent node).
 *
 * The worker claims and writes items on the primary exactly as a local one
 * does (the lease is its pid and start time); only the call differs: instead
 * of the local engine host, it runs r1_reason() on the remote server over
 * libpq (src/remote.c), in a session with r1.log_traces off there, so that
 * the trace is written once, on the primary, with the result.
 *
 * A worker keeps its connection between items.  Before claiming, it
 * connects (or checks its connection); a server it cannot reach gets no
 * item, and the worker tries again after R1_REMOTE_RETRY_MS.  When the
 * connection breaks during a call (the server crashed or was stopped), the
 * call fails with a connection error (class 08), which does not count as an
 * attempt: the item goes back to the queue at once and another worker, local
 * or on another server, runs it.  A cancel or a stop cancels the remote
 * call (PQcancel) before the connection is closed.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "client.h"
#include "job_servers.h"
#include "jobs_remote.h"
#include "remote.h"
#include "request.h"

#define R1_REMOTE_CONNECT_MS	30000	/* give up connecting after this */
#define R1_REMOTE_RETRY_MS		2000	/* then try again after this */

static PGconn * r1_conn = NULL;
static int	r1_conn_server = -1;
static char *r1_conn_nsp = NULL;	/* the extension's schema there, quoted */
static bool r1_conn_failing = false;	/* an outage is logged once */

/*
 * The parameters of a job that r1_reason() takes from its session's
 * settings (r1_params_session) are set there before the call, only when
 * they differ from what the session has (a cache per connection; NULL = the
 * server's own value), so the usual item needs no extra round trip.
 */
#define R1_SESSION_PARAMS R1_SESSION_NPARAMS
static char *r1_conn_sent[R1_SESSION_PARAMS];	/* in TopMemoryContext */
static char r1_label[R1_JOB_SERVER_LABEL] = "";

const char *
r1_jobs_remote_label(void)
{
	return r1_label;
}

void
r1_jobs_remote_close(void)
{
	if (r1_conn == NULL)
		return;
	if (PQtransactionStatus(r1_conn) == PQTRANS_ACTIVE)
	{
		PGcancel   *c = PQgetCancel(r1_conn);
		char		err[256];

		/*
		 * stop the model there too (a short blocking send, as postgres_fdw
		 * does on abort)
		 */
		if (c)
		{
			(void) PQcancel(c, err, sizeof(err));
			PQfreeCancel(c);
		}
	}
	PQfinish(r1_conn);
	r1_conn = NULL;
}

bool
r1_jobs_remote_refunded(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:	/* lost or refused */
		case ERRCODE_INSUFFICIENT_RESOURCES:	/* queue full, trace timeout */
		case ERRCODE_OPERATOR_INTERVENTION: /* cancel, shutdown there */
			return true;
		default:
			break;
	}

	/*
	 * engine not ready there; a recovery conflict on a standby; a limit of
	 * its queue
	 */
	return sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE ||
		sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		sqlerrcode == ERRCODE_CONFIGURATION_LIMIT_EXCEEDED ||
		sqlerrcode == ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION;
}

/* connect and prepare the session: the extension's schema, no traces there */
static void
r1_jobs_remote_connect(int server, const char *dbname)
{
	const char *conninfo = r1_job_server_conninfo(server);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), R1_REMOTE_CONNECT_MS);
	PGresult   *res;
	char		what[R1_JOB_SERVER_LABEL + 32];

	snprintf(what, sizeof(what), "job server %s", r1_label);
	r1_conn = r1_remote_connect(conninfo, dbname, what, deadline);
	r1_conn_server = server;
	for (int i = 0; i < R1_SESSION_PARAMS; i++)
	{
		if (r1_conn_sent[i])
			pfree(r1_conn_sent[i]);
		r1_conn_sent[i] = NULL;
	}
	res = r1_remote_exec(r1_conn,
						 "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e"
						 " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'r1_pg'",
						 0, NULL, NULL, what, deadline);
	if (PQntuples(res) != 1)
	{
		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1_pg is not installed in the database of job server %s", r1_label),
				 errhint("Run CREATE EXTENSION r1_pg there, or name another dbname in r1.job_servers.")));
	}
	if (r1_conn_nsp)
		pfree(r1_conn_nsp);
	r1_conn_nsp = MemoryContextStrdup(TopMemoryContext, PQgetvalue(res, 0, 0));
	PQclear(res);
	/* the primary writes the trace with the result: exactly once */
	PQclear(r1_remote_exec(r1_conn, "SELECT pg_catalog.set_config('r1.log_traces', 'off', false)",
						   0, NULL, NULL, what, deadline));
}

bool
r1_jobs_remote_ready(int server, const char *dbname)
{
	MemoryContext cxt = CurrentMemoryContext;

	if (server < 0 || server >= r1_job_servers_list->n)
		return false;
	strlcpy(r1_label, r1_job_servers_list->servers[server].label, sizeof(r1_label));
	if (r1_conn && (PQstatus(r1_conn) != CONNECTION_OK || r1_conn_server != server))
		r1_jobs_remote_close();
	if (r1_conn)
		return true;

	PG_TRY();
	{
		r1_jobs_remote_connect(server, dbname);
	}
	PG_CATCH();
	{
		ErrorData  *ed;

		MemoryContextSwitchTo(cxt);
		ed = CopyErrorData();
		FlushErrorState();
		r1_jobs_remote_close();
		if (!r1_conn_failing)
			ereport(LOG,
					(errmsg("r1 job worker: job server %s is not usable: %s", r1_label, ed->message),
					 errdetail("Its items run on the other servers; this worker tries again every %d ms.",
							   R1_REMOTE_RETRY_MS)));
		r1_conn_failing = true;
		FreeErrorData(ed);
	}
	PG_END_TRY();
	if (r1_conn == NULL)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 R1_REMOTE_RETRY_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		return false;
	}
	if (r1_conn_failing)
		ereport(LOG, (errmsg("r1 job worker: job server %s is usable again", r1_label)));
	r1_conn_failing = false;
	return true;
}

static void
r1_json_member_text(StringInfo buf, const char *key, PGresult * res, int col)
{
	appendStringInfo(buf, ",\"%s\":", key);
	if (PQgetisnull(res, 0, col))
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, PQgetvalue(res, 0, col));
}

static void
r1_json_member_num(StringInfo buf, const char *key, PGresult * res, int col)
{
	const char *v = PQgetisnull(res, 0, col) ? "null" : PQgetvalue(res, 0, col);

	/* int4 and float8 output: JSON numbers, except NaN and infinities */
	if (strcmp(v, "NaN") == 0 || strstr(v, "Infinity"))
		v = "null";
	appendStringInfo(buf, ",\"%s\":%s", key, v);
}

/* the job's session parameters in the remote session */
static void
r1_jobs_remote_session_params(const R1Params *params, const char *what)
{
	const char *settings[R1_SESSION_PARAMS];
	const char *want[R1_SESSION_PARAMS];
	const char *values[R1_SESSION_PARAMS];
	Oid			types[R1_SESSION_PARAMS];
	StringInfoData sql;
	int			n = 0;

	r1_params_session(params, settings, want);
	initStringInfo(&sql);
	for (int i = 0; i < R1_SESSION_PARAMS; i++)
	{
		if ((want[i] == NULL) == (r1_conn_sent[i] == NULL) &&
			(want[i] == NULL || strcmp(want[i], r1_conn_sent[i]) == 0))
			continue;
		/* NULL: back to the server's own value */
		appendStringInfo(&sql, "%spg_catalog.set_config('%s', coalesce($%d, (SELECT s.reset_val"
						 " FROM pg_catalog.pg_settings s WHERE s.name = '%s')), false)",
						 n ? ", " : "SELECT ", settings[i], n + 1, settings[i]);
		types[n] = TEXTOID;
		values[n++] = want[i];
	}
	if (n == 0)
		return;
	PQclear(r1_remote_exec(r1_conn, sql.data, n, types, values, what, 0));
	for (int i = 0; i < R1_SESSION_PARAMS; i++)
	{
		if (r1_conn_sent[i])
			pfree(r1_conn_sent[i]);
		r1_conn_sent[i] = want[i] ? MemoryContextStrdup(TopMemoryContext, want[i]) : NULL;
	}
}

Jsonb *
r1_jobs_remote_call(text *prompt, Jsonb *params)
{
	const char *values[R1_SQL_CALL_NARGS];
	Oid			types[R1_SQL_CALL_NARGS];
	R1Params	p;
	char	   *sql;
	char		what[R1_JOB_SERVER_LABEL + 32];
	PGresult   *res;
	StringInfoData buf;
	Jsonb	   *response;

	if (r1_conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_DOES_NOT_EXIST),
				 errmsg("no connection to job server %s", r1_label)));
	snprintf(what, sizeof(what), "job server %s", r1_label);
	r1_params_from_jsonb(params, &p);
	r1_jobs_remote_session_params(&p, what);
	sql = psprintf("SELECT r.think, r.answer, r.boxed, r.finish_reason, r.prompt_tokens,"
				   " r.completion_tokens, r.think_tokens, r.ms, s.model_name, s.weights_checksum"
				   " FROM %s r, %s.r1_status() s",
				   r1_params_sql_call(r1_conn_nsp, text_to_cstring(prompt), &p, values, types),
				   r1_conn_nsp);
	res = r1_remote_exec(r1_conn, sql, R1_SQL_CALL_NARGS, types, values, what, 0);
	if (PQntuples(res) != 1 || PQnfields(res) != 10)
	{
		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("job server %s returned an unexpected result for r1_reason()", r1_label)));
	}
	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"server\":");
	escape_json(&buf, r1_label);
	r1_json_member_text(&buf, "think", res, 0);
	r1_json_member_text(&buf, "answer", res, 1);
	r1_json_member_text(&buf, "boxed", res, 2);
	r1_json_member_text(&buf, "finish_reason", res, 3);
	r1_json_member_num(&buf, "prompt_tokens", res, 4);
	r1_json_member_num(&buf, "completion_tokens", res, 5);
	r1_json_member_num(&buf, "think_tokens", res, 6);
	r1_json_member_num(&buf, "ms", res, 7);
	r1_json_member_text(&buf, "model", res, 8);
	r1_json_member_text(&buf, "weights_checksum", res, 9);
	appendStringInfoChar(&buf, '}');
	PQclear(res);
	response = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	return response;
}
