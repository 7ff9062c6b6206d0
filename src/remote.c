/*
 * remote.c - a background worker's libpq connection to another r1_pg server
 * (the primary, for a standby's traces; an r1.job_servers entry, for job
 * items).
 *
 * Plain libpq, the way postgres_fdw's connection.c and libpqwalreceiver use
 * it from a server process, but every wait is WaitLatchOrSocket on the
 * connection's socket and the process latch, followed by
 * CHECK_FOR_INTERRUPTS: a worker waiting on the network still obeys SIGTERM,
 * a cancel, a reload and postmaster death.  (PostgreSQL 16's
 * libpq-be-fe-helpers.h does the same; 15 does not have it.)
 *
 * A PGconn and its PGresults are malloc'd by libpq, not palloc'd: the
 * callers keep the connection in a static and PQfinish it in their error
 * handling; r1_remote_exec clears every result but the one it returns.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "remote.h"

/* ms to wait before the deadline, -1 for none, 0 when it has passed */
static long
r1_remote_timeout(TimestampTz deadline)
{
	TimestampTz now;

	if (deadline == 0)
		return -1;
	now = GetCurrentTimestamp();
	if (now >= deadline)
		return 0;
	return Max(1L, (long) ((deadline - now + 999) / 1000));
}

/* wait for io_flags on the connection's socket or the latch; false at the deadline */
static bool
r1_remote_wait(PGconn * conn, int io_flags, TimestampTz deadline)
{
	long		ms = r1_remote_timeout(deadline);
	int			rc;

	if (ms == 0)
		return false;
	rc = WaitLatchOrSocket(MyLatch,
						   WL_EXIT_ON_PM_DEATH | WL_LATCH_SET | io_flags | (ms > 0 ? WL_TIMEOUT : 0),
						   PQsocket(conn), ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	return true;
}

bool
r1_conninfo_has_dbname(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	bool		has = false;

	if (opts == NULL)
		return false;
	for (PQconninfoOption * o = opts; o->keyword; o++)
		if (strcmp(o->keyword, "dbname") == 0 && o->val && o->val[0])
			has = true;
	PQconninfoFree(opts);
	return has;
}

PGconn *
r1_remote_connect(const char *conninfo, const char *dbname, const char *what, TimestampTz deadline)
{
	const char *keys[10];
	const char *vals[10];
	int			n = 0;
	PGconn	   *conn;
	PostgresPollingStatusType status = PGRES_POLLING_WRITING;
	char	   *err;

	/*
	 * Defaults the connection string may override (libpq keeps the last value
	 * of a key): a server that vanishes from the network is noticed within
	 * about a minute, not after the kernel's two hours.
	 */
	keys[n] = "connect_timeout";
	vals[n++] = "10";
	keys[n] = "keepalives_idle";
	vals[n++] = "30";
	keys[n] = "keepalives_interval";
	vals[n++] = "10";
	keys[n] = "keepalives_count";
	vals[n++] = "3";

	/*
	 * the first dbname is expanded as a connection string, a second one
	 * overrides its dbname
	 */
	keys[n] = "dbname";
	vals[n++] = conninfo;
	if (dbname && !r1_conninfo_has_dbname(conninfo))
	{
		keys[n] = "dbname";
		vals[n++] = dbname;
	}
	keys[n] = "fallback_application_name";
	vals[n++] = MyBgworkerEntry ? MyBgworkerEntry->bgw_type : "r1_pg";
	/* a trace or a result must be durable on the remote side when it answers */
	keys[n] = "options";
	vals[n++] = "-c search_path=pg_catalog,pg_temp -c synchronous_commit=on";
	/* text comes and goes in this database's encoding */
	keys[n] = "client_encoding";
	vals[n++] = GetDatabaseEncodingName();
	keys[n] = NULL;
	vals[n] = NULL;

	conn = PQconnectStartParams(keys, vals, 1);
	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory connecting to %s", what)));
	if (PQstatus(conn) != CONNECTION_BAD)
	{
		while (status != PGRES_POLLING_OK && status != PGRES_POLLING_FAILED)
		{
			int			io = status == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;

			PG_TRY();
			{
				if (!r1_remote_wait(conn, io, deadline))
					status = PGRES_POLLING_FAILED;
			}
			PG_CATCH();
			{
				PQfinish(conn);
				PG_RE_THROW();
			}
			PG_END_TRY();
			if (status != PGRES_POLLING_FAILED)
				status = PQconnectPoll(conn);
		}
	}
	if (PQstatus(conn) == CONNECTION_OK)
		return conn;

	err = pchomp(PQstatus(conn) == CONNECTION_BAD && PQerrorMessage(conn)[0] ?
				 PQerrorMessage(conn) : "timed out");
	PQfinish(conn);
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not connect to %s: %s", what, err)));
	return NULL;				/* keep the compiler quiet */
}

/* an ERROR from a failed result (or the connection's message when res is NULL) */
static void
r1_remote_report(PGconn * conn, PGresult * res, const char *what)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *prim = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
	int			code = ERRCODE_CONNECTION_FAILURE;
	char	   *msg;
	char	   *det = detail ? pstrdup(detail) : NULL;
	char	   *hin = hint ? pstrdup(hint) : NULL;

	if (state && strlen(state) == 5)
		code = MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4]);
	if (prim)
		msg = pstrdup(prim);	/* the remote server's own words */
	else
		msg = psprintf("connection to %s lost: %s", what,
					   pchomp(PQerrorMessage(conn)[0] ? PQerrorMessage(conn) : "no result"));
	if (res)
		PQclear(res);
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s", msg),
			 det ? errdetail_internal("%s", det) : 0,
			 hin ? errhint("%s", hin) : 0));
}

PGresult *
r1_remote_exec(PGconn * conn, const char *sql, int nparams, const Oid *types,
			   const char *const *values, const char *what, TimestampTz deadline)
{
	PGresult   *last = NULL;
	int			flush;

	if (PQsetnonblocking(conn, 1) != 0 ||
		!PQsendQueryParams(conn, sql, nparams, types, values, NULL, NULL, 0))
		r1_remote_report(conn, NULL, what);

	PG_TRY();
	{
		/*
		 * send it all, reading what comes meanwhile so that neither side
		 * blocks
		 */
		while ((flush = PQflush(conn)) == 1)
		{
			if (!r1_remote_wait(conn, WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE, deadline))
				ereport(ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg("timed out sending a query to %s", what)));
			if (!PQconsumeInput(conn))
				r1_remote_report(conn, NULL, what);
		}
		if (flush < 0)
			r1_remote_report(conn, NULL, what);
		for (;;)
		{
			PGresult   *res;

			while (PQisBusy(conn))
			{
				if (!r1_remote_wait(conn, WL_SOCKET_READABLE, deadline))
					ereport(ERROR,
							(errcode(ERRCODE_QUERY_CANCELED),
							 errmsg("timed out waiting for %s to answer", what)));
				if (!PQconsumeInput(conn))
					r1_remote_report(conn, NULL, what);
			}
			res = PQgetResult(conn);
			if (res == NULL)
				break;
			if (last)
				PQclear(last);
			last = res;
			if (PQstatus(conn) == CONNECTION_BAD)
				break;
		}
	}
	PG_CATCH();
	{
		if (last)
			PQclear(last);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (last == NULL)
		r1_remote_report(conn, NULL, what);
	if (PQresultStatus(last) != PGRES_COMMAND_OK && PQresultStatus(last) != PGRES_TUPLES_OK)
		r1_remote_report(conn, last, what);
	return last;
}
