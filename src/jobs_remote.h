/*
 * jobs_remote.h - a job worker's items run on another r1_pg server of
 * r1.job_servers, over libpq (src/jobs_remote.c).
 */
#ifndef R1_JOBS_REMOTE_H
#define R1_JOBS_REMOTE_H

#include "postgres.h"

#include "utils/jsonb.h"

/*
 * Connected to r1.job_servers entry server (0-based) and ready for an item?
 * Connects when not (dbname when the entry names none); false, after logging
 * the first failure of an outage and waiting a little, when it cannot.
 */
extern bool r1_jobs_remote_ready(int server, const char *dbname);

/*
 * Run one item there with r1_reason(); the response has the members a local
 * engine response has (think, answer, ..., ms, model, weights_checksum).
 * An ERROR when it failed; the caller then calls r1_jobs_remote_close().
 */
extern Jsonb *r1_jobs_remote_call(text *prompt, Jsonb *params);

/* drop the connection (cancelling a call in flight): after any error */
extern void r1_jobs_remote_close(void);

/* the server's trouble, not the item's: requeue without counting the attempt */
extern bool r1_jobs_remote_refunded(int sqlerrcode);

/* the label of the server this worker uses ("host:port") */
extern const char *r1_jobs_remote_label(void);

#endif							/* R1_JOBS_REMOTE_H */
