/*
 * request.h - one generate request's parameters, in one place: read and
 * checked from an SQL function's arguments, written into the engine's JSON
 * request (src/serve/protocol.h), stored as jsonb (r1.jobs.parameters,
 * r1.traces.parameters) and read back from it (job workers, r1_replay).
 *
 * Adding a sampling parameter: a member here, its reading, checking and
 * writing in request.c, the SQL declarations, and the engine.
 */
#ifndef R1_REQUEST_H
#define R1_REQUEST_H

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

typedef struct R1Params
{
	int			max_tokens;
	double		temperature;
	double		top_p;
	int			top_k;
	double		min_p;
	bool		has_seed;
	int64		seed;
	int			max_think_tokens;	/* 0: no thinking budget */
	text	   *system;			/* server encoding; NULL when none */
	const char *system_utf8;	/* system in UTF-8 when already converted
								 * (r1_params_from_args), else NULL */
	size_t		system_len;		/* its bytes, with system_utf8 */
	/* from the session's settings when read from arguments */
	bool		ignore_eos;		/* r1.debug_ignore_eos (superuser only) */
	bool		parse_special;	/* r1.parse_special_tokens (superuser only) */
	int			repetition_max_span;	/* r1.repetition_* (loop detection) */
	int			repetition_min_repeats;
	int			repetition_min_tokens;
} R1Params;

/*
 * Where an SQL function takes each parameter (argument numbers from 0).
 * r1_reason, r1_reason_many, r1_submit and r1_submit_query share one order;
 * the voting functions take n first.
 */
typedef struct R1ParamArgs
{
	int			max_tokens;
	int			temperature;
	int			top_p;
	int			seed;
	int			system;
	int			top_k;
	int			min_p;
	int			max_think_tokens;
} R1ParamArgs;

extern const R1ParamArgs r1_reason_args;	/* (prompt, max_tokens, ...) */
extern const R1ParamArgs r1_vote_args;	/* (prompt, n, max_tokens, ...) */

/*
 * Read the parameters from the arguments (NULL or missing: the default) and
 * the session's settings, and check them (22023, 54000 with a hint), with
 * the role's r1.max_tokens_per_call.  system_len (may be NULL) gets the
 * system text's bytes in UTF-8.
 */
extern void r1_params_from_args(FunctionCallInfo fcinfo, const R1ParamArgs *args, R1Params *p,
								size_t *system_len);

/*
 * Read parameters stored by r1_params_jsonb (r1.jobs.parameters,
 * r1.traces.parameters); a missing member is the default (max_tokens 0: not
 * given).  Nothing is checked: the caller applies its own limits.
 */
extern void r1_params_from_jsonb(Jsonb *j, R1Params *p);

/*
 * The parameters as a jsonb object: what the engine was given, for
 * r1.traces.parameters (seed and system have columns of their own there), or
 * with with_seed_system for r1.jobs.parameters.  Flags and loop-detection
 * members appear only when they differ from the defaults.
 */
extern Jsonb *r1_params_jsonb(const R1Params *p, bool with_seed_system);

/*
 * A trace's system, seed (plus seed_offset, as r1_build_request) and
 * parameters object from the parameters the engine was given.
 */
struct R1TraceInfo;
extern void r1_trace_params(struct R1TraceInfo *t, const R1Params *p, int64 seed_offset);

/* r1_build_request's options */
#define R1_REQ_SHARE_PREFILL	0x01	/* samples of one prompt share a
										 * prefill (votes) */
#define R1_REQ_NO_DEADLINE		0x02	/* no timeout_ms from
										 * statement_timeout (job workers) */

/*
 * Append the engine's generate request for prompt (UTF-8) to req: the
 * parameters, the seed plus seed_offset (r1_reason_many's prompt ord - 1, a
 * vote's sample), r1.queue_timeout, and statement_timeout (+1 s) as the
 * engine's own deadline.
 */
extern void r1_build_request(StringInfo req, const char *prompt, const R1Params *p,
							 int64 seed_offset, int flags);

/*
 * The same request as an SQL call on another r1_pg server (r1.job_servers):
 * "NSP.r1_reason($1, max_tokens => $2, ...)" with the prompt and the
 * parameters as R1_SQL_CALL_NARGS text values (NULL: SQL NULL) and their
 * types; the rest of the parameters r1_reason takes from its session's
 * settings: r1_params_session fills R1_SESSION_NPARAMS setting names and
 * values (NULL: the server's own value).
 */
#define R1_SQL_CALL_NARGS	9
#define R1_SESSION_NPARAMS	5
extern char *r1_params_sql_call(const char *nsp, const char *prompt, const R1Params *p,
								const char **values, Oid *types);
extern void r1_params_session(const R1Params *p, const char **settings, const char **values);

/* Argument checks, each a 22023/54000 ERROR with a hint. */
extern void r1_check_sampling(int max_tokens, double temperature, double top_p, int top_k,
							  double min_p);
extern void r1_check_max_think_tokens(int max_think_tokens);
extern void r1_check_prompt_size(size_t len);
extern void r1_check_seed(int64 seed);

/*
 * One generate call of this backend, start to end: a check that its trace
 * can be written (r1.log_traces), the role's quota reserved, the request run
 * (observed in r1.stat_activity, counted in r1.stats), the real tokens
 * charged, and the trace recorded (source, started, the prompt in server
 * encoding, and parameters: what r1.traces.parameters says, or NULL for
 * r1_params_jsonb(p)).  Returns the engine's response.
 */
typedef struct R1Call
{
	const char *source;			/* r1.traces.source */
	text	   *prompt;			/* server encoding */
	const R1Params *params;
	Jsonb	   *trace_parameters;	/* NULL: from params */
} R1Call;

extern Jsonb *r1_generate(const R1Call *call);

#endif							/* R1_REQUEST_H */
