/*
 * request.c - one generate request's parameters: from SQL arguments, into
 * the engine's JSON request, to and from stored jsonb; and the whole call of
 * a backend (quota, activity, trace).  See request.h.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "engine/repetition.h"
#include "serve/protocol.h"
#include "activity.h"
#include "client.h"
#include "quota.h"
#include "r1_pg.h"
#include "request.h"
#include "settings.h"
#include "shmem.h"
#include "traces.h"

/* r1_reason's defaults (the SQL declarations say the same) */
#define R1_DEFAULT_TEMPERATURE	0.6
#define R1_DEFAULT_TOP_P		0.95

const R1ParamArgs r1_reason_args = {
	.max_tokens = 1,.temperature = 2,.top_p = 3,.seed = 4,.system = 5,
	.top_k = 6,.min_p = 7,.max_think_tokens = 8
};

const R1ParamArgs r1_vote_args = {
	.max_tokens = 2,.temperature = 3,.top_p = 4,.seed = 5,.system = 6,
	.top_k = 7,.min_p = 8,.max_think_tokens = 9
};

/* ---- checks ---- */

void
r1_check_sampling(int max_tokens, double temperature, double top_p, int top_k, double min_p)
{
	if (max_tokens < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_tokens must be at least 1"),
				 errdetail("max_tokens is %d.", max_tokens),
				 errhint("Pass a positive max_tokens, or NULL for r1.max_tokens_default.")));
	if (!(temperature >= 0) || isinf(temperature))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("temperature must be a finite number >= 0"),
				 errdetail("temperature is %g.", temperature),
				 errhint("Use 0 for greedy decoding; the models are tuned for 0.5 to 0.7.")));

	/*
	 * the engine samples in single precision: 1e300 would become infinity
	 * there
	 */
	if (temperature > FLT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("temperature must be a finite number >= 0"),
				 errdetail("temperature is %g; the engine samples in single precision, at most %g.",
						   temperature, (double) FLT_MAX),
				 errhint("Use 0 for greedy decoding; the models are tuned for 0.5 to 0.7.")));
	if (!(top_p > 0 && top_p <= 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("top_p must be in (0, 1]"),
				 errdetail("top_p is %g.", top_p),
				 errhint("Use 1 to turn nucleus sampling off.")));
	if (top_k < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("top_k must be at least 0"),
				 errdetail("top_k is %d.", top_k),
				 errhint("Use 0 to turn top-k sampling off.")));
	if (!(min_p >= 0 && min_p < 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("min_p must be in [0, 1)"),
				 errdetail("min_p is %g.", min_p),
				 errhint("Use 0 to turn min-p sampling off.")));
}

void
r1_check_max_think_tokens(int max_think_tokens)
{
	if (max_think_tokens < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_think_tokens must be at least 1"),
				 errdetail("max_think_tokens is %d.", max_think_tokens),
				 errhint("Pass NULL for no thinking budget.")));
}

void
r1_check_prompt_size(size_t len)
{
	if (len > R1_PROTO_MAX_PROMPT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("prompt is too long"),
				 errdetail("The prompt and system text have %zu bytes; the limit is %u.",
						   len, R1_PROTO_MAX_PROMPT),
				 errhint("Shorten the prompt.")));
}

void
r1_check_seed(int64 seed)
{
	if (seed < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seed must be at least 0"),
				 errdetail("seed is " INT64_FORMAT ".", seed),
				 errhint("Pass a seed from 0 to 9223372036854775807, or NULL for a random one.")));
}

/* ---- reading ---- */

static void
r1_params_defaults(R1Params *p)
{
	memset(p, 0, sizeof(*p));
	p->temperature = R1_DEFAULT_TEMPERATURE;
	p->top_p = R1_DEFAULT_TOP_P;
	p->repetition_max_span = R1_REPETITION_MAX_SPAN;
	p->repetition_min_repeats = R1_REPETITION_MIN_REPEATS;
	p->repetition_min_tokens = R1_REPETITION_MIN_TOKENS;
}

void
r1_params_from_args(FunctionCallInfo fcinfo, const R1ParamArgs *a, R1Params *p, size_t *system_len)
{
	size_t		len = 0;

	r1_params_defaults(p);
	p->max_tokens = R1_ARG_ISNULL(a->max_tokens) ? r1_max_tokens_default : PG_GETARG_INT32(a->max_tokens);
	if (!R1_ARG_ISNULL(a->temperature))
		p->temperature = PG_GETARG_FLOAT8(a->temperature);
	if (!R1_ARG_ISNULL(a->top_p))
		p->top_p = PG_GETARG_FLOAT8(a->top_p);
	p->has_seed = !R1_ARG_ISNULL(a->seed);
	p->seed = p->has_seed ? PG_GETARG_INT64(a->seed) : 0;
	p->system = R1_ARG_ISNULL(a->system) ? NULL : PG_GETARG_TEXT_PP(a->system);
	p->top_k = R1_ARG_ISNULL(a->top_k) ? 0 : PG_GETARG_INT32(a->top_k);
	p->min_p = R1_ARG_ISNULL(a->min_p) ? 0.0 : PG_GETARG_FLOAT8(a->min_p);
	p->max_think_tokens = R1_ARG_ISNULL(a->max_think_tokens) ? 0 : PG_GETARG_INT32(a->max_think_tokens);
	p->ignore_eos = r1_debug_ignore_eos;
	p->parse_special = r1_parse_special_tokens;
	p->repetition_max_span = r1_repetition_max_span;
	p->repetition_min_repeats = r1_repetition_min_repeats;
	p->repetition_min_tokens = r1_repetition_min_tokens;

	r1_check_sampling(p->max_tokens, p->temperature, p->top_p, p->top_k, p->min_p);
	if (!R1_ARG_ISNULL(a->max_think_tokens))
		r1_check_max_think_tokens(p->max_think_tokens);
	if (p->has_seed)
		r1_check_seed(p->seed);
	r1_check_max_tokens(p->max_tokens, R1_ARG_ISNULL(a->max_tokens));
	if (p->system != NULL)
	{
		p->system_utf8 = r1_text_to_utf8(p->system, &len);
		p->system_len = len;
		r1_check_prompt_size(len);
	}
	if (system_len)
		*system_len = len;
}

static int64
r1_jsonb_int(Jsonb *j, const char *key, int64 dflt)
{
	JsonbValue	v;

	return r1_json_get(j, key, &v) && v.type == jbvNumeric ? r1_json_int(j, key) : dflt;
}

static double
r1_jsonb_float(Jsonb *j, const char *key, double dflt)
{
	JsonbValue	v;

	return r1_json_get(j, key, &v) && v.type == jbvNumeric ? r1_json_float(j, key) : dflt;
}

static bool
r1_jsonb_bool(Jsonb *j, const char *key)
{
	JsonbValue	v;

	return r1_json_get(j, key, &v) && v.type == jbvBool && v.val.boolean;
}

/* an int member, clamped to int's range (the caller checks what it means) */
static int
r1_jsonb_int32(Jsonb *j, const char *key, int dflt)
{
	int64		v = r1_jsonb_int(j, key, dflt);

	return (int) Max(Min(v, PG_INT32_MAX), PG_INT32_MIN);
}

void
r1_params_from_jsonb(Jsonb *j, R1Params *p)
{
	JsonbValue	v;

	r1_params_defaults(p);
	if (j == NULL || !JB_ROOT_IS_OBJECT(j))
		return;
	p->max_tokens = r1_jsonb_int32(j, "max_tokens", 0);
	p->temperature = r1_jsonb_float(j, "temperature", R1_DEFAULT_TEMPERATURE);
	p->top_p = r1_jsonb_float(j, "top_p", R1_DEFAULT_TOP_P);
	p->top_k = r1_jsonb_int32(j, "top_k", 0);
	p->min_p = r1_jsonb_float(j, "min_p", 0.0);
	p->has_seed = r1_json_get(j, "seed", &v) && v.type == jbvNumeric;
	p->seed = p->has_seed ? r1_json_int(j, "seed") : 0;
	p->max_think_tokens = r1_jsonb_int32(j, "max_think_tokens", 0);
	p->system = r1_json_text(j, "system");
	p->ignore_eos = r1_jsonb_bool(j, "ignore_eos");
	p->parse_special = r1_jsonb_bool(j, "parse_special");
	p->repetition_max_span = r1_jsonb_int32(j, "repetition_max_span", R1_REPETITION_MAX_SPAN);
	p->repetition_min_repeats = r1_jsonb_int32(j, "repetition_min_repeats", R1_REPETITION_MIN_REPEATS);
	p->repetition_min_tokens = r1_jsonb_int32(j, "repetition_min_tokens", R1_REPETITION_MIN_TOKENS);
}

/* ---- writing ---- */

static void
r1_append_float(StringInfo buf, const char *key, double v)
{
	char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

	double_to_shortest_decimal_buf(v, num);
	appendStringInfo(buf, ",\"%s\":%s", key, num);
}

static bool
r1_repetition_is_default(const R1Params *p)
{
	return p->repetition_max_span == R1_REPETITION_MAX_SPAN &&
		p->repetition_min_repeats == R1_REPETITION_MIN_REPEATS &&
		p->repetition_min_tokens == R1_REPETITION_MIN_TOKENS;
}

/*
 * The members shared by the request and the stored object, after a first
 * member: ,"max_think_tokens":N, the flags and the loop-detection members
 * where they are not the defaults.
 */
static void
r1_append_options(StringInfo buf, const R1Params *p)
{
	if (p->max_think_tokens > 0)
		appendStringInfo(buf, ",\"max_think_tokens\":%d", p->max_think_tokens);
	if (p->ignore_eos)
		appendStringInfoString(buf, ",\"ignore_eos\":true");
	if (p->parse_special)
		appendStringInfoString(buf, ",\"parse_special\":true");
	if (!r1_repetition_is_default(p))
		appendStringInfo(buf, ",\"repetition_max_span\":%d,\"repetition_min_repeats\":%d,"
						 "\"repetition_min_tokens\":%d",
						 p->repetition_max_span, p->repetition_min_repeats, p->repetition_min_tokens);
}

Jsonb *
r1_params_jsonb(const R1Params *p, bool with_seed_system)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"max_tokens\":%d", p->max_tokens);
	r1_append_float(&buf, "temperature", p->temperature);
	r1_append_float(&buf, "top_p", p->top_p);
	appendStringInfo(&buf, ",\"top_k\":%d", p->top_k);
	r1_append_float(&buf, "min_p", p->min_p);
	r1_append_options(&buf, p);
	if (with_seed_system)
	{
		if (p->has_seed)
			appendStringInfo(&buf, ",\"seed\":" INT64_FORMAT, p->seed);
		if (p->system)
		{
			appendStringInfoString(&buf, ",\"system\":");
			escape_json(&buf, text_to_cstring(p->system));
		}
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

void
r1_build_request(StringInfo req, const char *prompt, const R1Params *p, int64 seed_offset, int flags)
{
	appendStringInfoString(req, "{\"op\":\"generate\",\"prompt\":");
	escape_json(req, prompt);
	if (p->system)
	{
		size_t		len;

		appendStringInfoString(req, ",\"system\":");
		escape_json(req, p->system_utf8 ? p->system_utf8 : r1_text_to_utf8(p->system, &len));
	}
	/* %.17g: the engine reads back the same double */
	appendStringInfo(req, ",\"max_tokens\":%d,\"temperature\":%.17g,\"top_p\":%.17g,"
					 "\"top_k\":%d,\"min_p\":%.17g,\"queue_timeout_ms\":%d",
					 p->max_tokens, p->temperature, p->top_p, p->top_k, p->min_p, r1_queue_timeout);
	if (p->has_seed)
		appendStringInfo(req, ",\"seed\":" INT64_FORMAT,
						 (int64) ((uint64) p->seed + (uint64) seed_offset));
	r1_append_options(req, p);
	if (flags & R1_REQ_SHARE_PREFILL)
		appendStringInfoString(req, ",\"share_prefill\":true");
	/* the engine's own deadline backs up statement_timeout */
	if (!(flags & R1_REQ_NO_DEADLINE) && StatementTimeout > 0)
		appendStringInfo(req, ",\"timeout_ms\":%d", StatementTimeout + 1000);
	appendStringInfoChar(req, '}');
}

void
r1_trace_params(R1TraceInfo *t, const R1Params *p, int64 seed_offset)
{
	t->system = p->system;
	t->parameters = r1_params_jsonb(p, false);
	t->has_seed = p->has_seed;
	t->seed = (int64) ((uint64) p->seed + (uint64) seed_offset);
}

char *
r1_params_sql_call(const char *nsp, const char *prompt, const R1Params *p, const char **values,
				   Oid *types)
{
	static const Oid t[R1_SQL_CALL_NARGS] = {TEXTOID, INT4OID, FLOAT8OID, FLOAT8OID, INT8OID,
	TEXTOID, INT4OID, FLOAT8OID, INT4OID};

	memcpy(types, t, sizeof(t));
	values[0] = prompt;
	values[1] = psprintf("%d", p->max_tokens);
	values[2] = psprintf("%.17g", p->temperature);
	values[3] = psprintf("%.17g", p->top_p);
	values[4] = p->has_seed ? psprintf(INT64_FORMAT, p->seed) : NULL;
	values[5] = p->system ? text_to_cstring(p->system) : NULL;
	values[6] = psprintf("%d", p->top_k);
	values[7] = psprintf("%.17g", p->min_p);
	values[8] = p->max_think_tokens > 0 ? psprintf("%d", p->max_think_tokens) : NULL;
	return psprintf("%s.r1_reason($1, max_tokens => $2, temperature => $3, top_p => $4, seed => $5,"
					" system => $6, top_k => $7, min_p => $8, max_think_tokens => $9)", nsp);
}

void
r1_params_session(const R1Params *p, const char **settings, const char **values)
{
	int			i = 0;

	settings[i] = "r1.debug_ignore_eos";
	values[i++] = p->ignore_eos ? "on" : NULL;
	settings[i] = "r1.parse_special_tokens";
	values[i++] = p->parse_special ? "on" : NULL;
	settings[i] = "r1.repetition_max_span";
	values[i++] = p->repetition_max_span != R1_REPETITION_MAX_SPAN ?
		psprintf("%d", p->repetition_max_span) : NULL;
	settings[i] = "r1.repetition_min_repeats";
	values[i++] = p->repetition_min_repeats != R1_REPETITION_MIN_REPEATS ?
		psprintf("%d", p->repetition_min_repeats) : NULL;
	settings[i] = "r1.repetition_min_tokens";
	values[i++] = p->repetition_min_tokens != R1_REPETITION_MIN_TOKENS ?
		psprintf("%d", p->repetition_min_tokens) : NULL;
	Assert(i == R1_SESSION_NPARAMS);
}

/* ---- one call ---- */

Jsonb *
r1_generate(const R1Call *call)
{
	const R1Params *p = call->params;
	Oid			role = r1_quota_role();
	char	   *prompt;
	size_t		prompt_len;
	size_t		system_len = 0;
	StringInfoData req;
	R1QuotaHold hold;
	TimestampTz started;
	Jsonb	   *resp;

	r1_quota_check(role);
	prompt = r1_text_to_utf8(call->prompt, &prompt_len);
	if (p->system_utf8)
		system_len = p->system_len;
	else if (p->system)
		(void) r1_text_to_utf8(p->system, &system_len);
	r1_check_prompt_size(prompt_len + system_len);
	initStringInfo(&req);
	r1_build_request(&req, prompt, p, 0, 0);

	if (r1_log_traces)
		r1_trace_check_writable();

	/*
	 * the most this call can cost, held against the role's quota until it
	 * ends
	 */
	r1_quota_reserve(&hold, role, r1_quota_estimate(prompt_len + system_len, p->max_tokens));
	if (r1_shared != NULL)
		pg_atomic_fetch_add_u64(&r1_shared->requests, 1);
	started = GetCurrentTimestamp();
	PG_TRY();
	{
		resp = r1_observed_call(&req, prompt, prompt_len);
	}
	PG_CATCH();
	{
		r1_quota_settle(&hold, 0);
		PG_RE_THROW();
	}
	PG_END_TRY();
	/* charged before the trace: the tokens are spent even if recording fails */
	r1_quota_settle(&hold, r1_json_int(resp, "prompt_tokens") + r1_json_int(resp, "completion_tokens"));
	if (r1_log_traces)
	{
		R1TraceInfo t;

		memset(&t, 0, sizeof(t));
		t.source = call->source;
		t.started = started;
		t.prompt = call->prompt;
		r1_trace_params(&t, p, 0);
		if (call->trace_parameters)
			t.parameters = call->trace_parameters;
		t.response = resp;
		r1_trace_record(&t);
	}
	return resp;
}
