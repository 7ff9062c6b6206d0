/*
 * traces.h - the trace audit: with r1.log_traces = on, every call records a
 * row in r1.traces (src/traces.c explains where and as whom).
 */
#ifndef R1_TRACES_H
#define R1_TRACES_H

#include "postgres_ext.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* One finished call, as the caller saw it. */
typedef struct R1TraceInfo
{
	const char *source;			/* "r1_reason", "r1_reason_many", "job",
								 * "r1_replay" */
	Oid			role;			/* when valid, the role the call ran for (a
								 * job's submitter), recorded as role and
								 * session_role */
	Oid			session_role;	/* when valid, recorded as session_role
								 * instead (a job's submitting session user) */
	TimestampTz started;		/* when the call began */
	text	   *prompt;			/* server encoding */
	text	   *system;			/* NULL when none */
	Jsonb	   *parameters;		/* what the engine was given (request.c's
								 * r1_params_jsonb) */
	bool		has_seed;
	int64		seed;
	Jsonb	   *response;		/* the host's generate response (think,
								 * answer, boxed, finish_reason, token counts,
								 * ms, model, weights_checksum) */
} R1TraceInfo;

/*
 * Call before sending a request when r1_log_traces is on: fails (25006) where
 * the trace could not be written afterwards (read-only transaction, standby),
 * so no generation is wasted and auditing cannot be bypassed.
 */
extern void r1_trace_check_writable(void);

/*
 * Insert the row (in a transaction of its own with r1.trace_autonomous, in
 * the caller's otherwise) and prune old rows now and then.
 */
extern void r1_trace_record(const R1TraceInfo *t);

#endif							/* R1_TRACES_H */
