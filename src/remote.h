/*
 * remote.h - libpq connections from a background worker to another r1_pg
 * server (src/remote.c): the trace writer of a standby sends traces to the
 * primary, job workers run items on r1.job_servers.
 */
#ifndef R1_REMOTE_H
#define R1_REMOTE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "libpq-fe.h"

/*
 * Connect to conninfo (a libpq connection string or URI; dbname, when it
 * has none, as given), waiting on the latch so that the process stays
 * interruptible; gives up at deadline (0: never; libpq's connect_timeout
 * still applies).  On failure an ERROR (08001) names what: "the primary",
 * "job server ...".  The session runs with search_path = pg_catalog,
 * pg_temp and synchronous_commit = on.
 */
extern PGconn * r1_remote_connect(const char *conninfo, const char *dbname, const char *what,
								  TimestampTz deadline);

/*
 * Send sql with text parameters and wait (interruptibly, until deadline)
 * for its last result, which the caller PQclear()s.  A failed query or a
 * lost connection is an ERROR carrying the remote SQLSTATE (08006 for a
 * lost connection, 57014 after the deadline); the connection should then be
 * closed (PQfinish).
 */
extern PGresult * r1_remote_exec(PGconn * conn, const char *sql, int nparams, const Oid *types,
								 const char *const *values, const char *what, TimestampTz deadline);

/* conninfo has a dbname of its own */
extern bool r1_conninfo_has_dbname(const char *conninfo);

#endif							/* R1_REMOTE_H */
