/*
 * replay.c - r1_replay(trace_id): run a recorded call again and say whether
 * it reproduced exactly: the same think and answer text from the same
 * weights (checksum).  A greedy call (temperature 0) or a seeded one is
 * deterministic on a given engine; an unseeded sampled call is not and
 * cannot be replayed.
 *
 * The trace is read as the calling role, so r1.traces' privileges apply
 * (r1_auditor).  The stored parameters object is sent to the engine as it is,
 * so parameters added later (max_think_tokens, ...) replay too, with the
 * caller's limits: max_tokens is checked against r1.max_tokens_per_call, the
 * call reserves and is charged against the caller's r1.role_quota like
 * r1_reason, and ignore_eos (r1.debug_ignore_eos, superuser-only) is replayed
 * only for a role that may set that setting; otherwise it is left out and the
 * note says so.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "activity.h"
#include "client.h"
#include "quota.h"
#include "r1_pg.h"
#include "traces.h"

typedef struct R1Trace
{
	text	   *prompt;
	text	   *system;
	Jsonb	   *parameters;
	bool		has_seed;
	int64		seed;
	text	   *think;
	text	   *answer;
	text	   *checksum;
} R1Trace;

static text *
r1_spi_text(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : DatumGetTextPCopy(d);
}

static void
r1_read_trace(int64 id, R1Trace *t)
{
	MemoryContext cxt = CurrentMemoryContext;
	Oid			type = INT8OID;
	Datum		arg = Int64GetDatum(id);
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT prompt, system, parameters, seed, think, answer, weights_checksum "
							  "FROM r1.traces WHERE id OPERATOR(pg_catalog.=) $1",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read r1.traces");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("trace " INT64_FORMAT " does not exist", id),
				 errhint("Pick an id from r1.traces.")));
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	MemoryContextSwitchTo(cxt);
	t->prompt = r1_spi_text(tup, desc, 1);
	t->system = r1_spi_text(tup, desc, 2);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	t->parameters = isnull ? NULL : DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 4, &isnull);
	t->has_seed = !isnull;
	t->seed = isnull ? 0 : DatumGetInt64(d);
	t->think = r1_spi_text(tup, desc, 5);
	t->answer = r1_spi_text(tup, desc, 6);
	t->checksum = r1_spi_text(tup, desc, 7);
	SPI_finish();
	MemoryContextSwitchTo(cxt);
}

static bool
r1_is_reserved(const char *key, int len)
{
	static const char *const reserved[] = {"op", "prompt", "system", "raw", "seed", "tag",
	"timeout_ms", "queue_timeout_ms"};

	for (int i = 0; i < lengthof(reserved); i++)
		if ((int) strlen(reserved[i]) == len && strncmp(reserved[i], key, len) == 0)
			return true;
	return false;
}

/* May the caller run with r1.debug_ignore_eos (a superuser-only setting)? */
static bool
r1_may_ignore_eos(void)
{
	return superuser() ||
		pg_parameter_aclcheck("r1.debug_ignore_eos", GetUserId(), ACL_SET) == ACLCHECK_OK;
}

/*
 * The parameters object's scalar members, appended as ,"key":value;
 * *temperature and *max_tokens (0 when absent) from it; ignore_eos only when
 * allow_ignore_eos (*dropped_ignore_eos says it was left out).
 */
static void
r1_append_parameters(StringInfo req, Jsonb *params, double *temperature, int64 *max_tokens,
					 bool allow_ignore_eos, bool *dropped_ignore_eos)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;
	int			key_len = 0;

	*temperature = 0.6;			/* r1_reason's default */
	*max_tokens = 0;
	*dropped_ignore_eos = false;
	if (params == NULL || !JB_ROOT_IS_OBJECT(params))
		return;
	it = JsonbIteratorInit(&params->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = v.val.string.val;
			key_len = v.val.string.len;
			continue;
		}
		if (tok != WJB_VALUE || key == NULL || r1_is_reserved(key, key_len))
			continue;
		if (v.type != jbvNumeric && v.type != jbvBool)
			continue;
		if (key_len == 10 && strncmp(key, "ignore_eos", 10) == 0 && !allow_ignore_eos)
		{
			*dropped_ignore_eos = v.type != jbvBool || v.val.boolean;
			continue;
		}
		if (key_len == 10 && strncmp(key, "max_tokens", 10) == 0 && v.type == jbvNumeric)
			*max_tokens = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
		appendStringInfoChar(req, ',');
		escape_json(req, pnstrdup(key, key_len));
		appendStringInfoChar(req, ':');
		if (v.type == jbvBool)
			appendStringInfoString(req, v.val.boolean ? "true" : "false");
		else
		{
			appendStringInfoString(req, DatumGetCString(DirectFunctionCall1(numeric_out,
																			NumericGetDatum(v.val.numeric))));
			if (key_len == 11 && strncmp(key, "temperature", 11) == 0)
				*temperature = DatumGetFloat8(DirectFunctionCall1(numeric_float8,
																  NumericGetDatum(v.val.numeric)));
		}
	}
}

static bool
r1_text_eq(text *a, text *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

static char *
r1_text_str(text *t)
{
	return t ? text_to_cstring(t) : "(none)";
}

PG_FUNCTION_INFO_V1(pg_r1_replay);

Datum
pg_r1_replay(PG_FUNCTION_ARGS)
{
	int64		id = PG_GETARG_INT64(0);
	TupleDesc	tupdesc;
	R1Trace		t;
	StringInfoData req;
	StringInfoData note;
	double		temperature;
	int64		max_tokens;
	bool		dropped_ignore_eos;
	R1QuotaHold hold;
	char	   *prompt;
	size_t		prompt_len;
	size_t		system_len = 0;
	TimestampTz started = GetCurrentTimestamp();
	Jsonb	   *resp;
	text	   *think,
			   *answer,
			   *checksum;
	bool		same_text,
				reproduced;
	Datum		values[13];
	bool		nulls[13];
	int			c = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);

	r1_read_trace(id, &t);
	if (t.prompt == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("trace " INT64_FORMAT " has no prompt", id)));

	initStringInfo(&req);
	appendStringInfoString(&req, "{\"op\":\"generate\"");
	r1_append_parameters(&req, t.parameters, &temperature, &max_tokens, r1_may_ignore_eos(),
						 &dropped_ignore_eos);
	/* the caller's limits, as for r1_reason */
	if (max_tokens <= 0)
	{
		max_tokens = r1_max_tokens_default;
		appendStringInfo(&req, ",\"max_tokens\":%d", r1_max_tokens_default);
	}
	if (max_tokens > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("trace " INT64_FORMAT " cannot be replayed", id),
				 errdetail("Its max_tokens (" INT64_FORMAT ") is out of range.", max_tokens)));
	r1_check_max_tokens((int) max_tokens, false);
	r1_quota_check(r1_quota_role());
	if (!t.has_seed && temperature > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trace " INT64_FORMAT " cannot be replayed", id),
				 errdetail("It was sampled (temperature %g) without a seed, so its output was random.", temperature),
				 errhint("Only greedy (temperature 0) and seeded calls can be replayed: pass seed => N to r1_reason.")));
	prompt = r1_text_to_utf8(t.prompt, &prompt_len);
	appendStringInfoString(&req, ",\"prompt\":");
	escape_json(&req, prompt);
	if (t.system)
	{
		appendStringInfoString(&req, ",\"system\":");
		escape_json(&req, r1_text_to_utf8(t.system, &system_len));
	}
	if (t.has_seed)
		appendStringInfo(&req, ",\"seed\":" INT64_FORMAT, t.seed);
	appendStringInfo(&req, ",\"queue_timeout_ms\":%d", r1_queue_timeout);
	if (StatementTimeout > 0)
		appendStringInfo(&req, ",\"timeout_ms\":%d", StatementTimeout + 1000);
	appendStringInfoChar(&req, '}');

	if (r1_log_traces)
		r1_trace_check_writable();
	r1_quota_reserve(&hold, r1_quota_role(), r1_quota_estimate(prompt_len + system_len, max_tokens));
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
	r1_quota_settle(&hold, r1_json_int(resp, "prompt_tokens") + r1_json_int(resp, "completion_tokens"));

	think = r1_json_text(resp, "think");
	answer = r1_json_text(resp, "answer");
	checksum = r1_json_text(resp, "weights_checksum");
	same_text = r1_text_eq(think, t.think) && r1_text_eq(answer, t.answer);
	reproduced = same_text && t.checksum && checksum && r1_text_eq(checksum, t.checksum);

	initStringInfo(&note);
	if (t.checksum == NULL)
		appendStringInfoString(&note, "the trace has no weights checksum, so the weights cannot be compared");
	else if (checksum == NULL)
		appendStringInfoString(&note, "the engine has not finished computing its weights checksum; run r1_replay again in a moment");
	else if (!r1_text_eq(checksum, t.checksum))
		appendStringInfo(&note, "the engine serves other weights (checksum %s; the trace was made with %s)",
						 r1_text_str(checksum), r1_text_str(t.checksum));
	if (dropped_ignore_eos)
		appendStringInfo(&note, "%sthe trace ran with ignore_eos, which was not replayed: only a role that may set r1.debug_ignore_eos (superuser) replays it",
						 note.len ? "; " : "");
	if (!same_text)
		appendStringInfo(&note, "%s%s differ%s", note.len ? "; " : "",
						 !r1_text_eq(think, t.think) && !r1_text_eq(answer, t.answer) ? "the think and answer texts" :
						 !r1_text_eq(think, t.think) ? "the think text" : "the answer text",
						 !r1_text_eq(think, t.think) && !r1_text_eq(answer, t.answer) ? "" : "s");

	if (r1_log_traces)
	{
		R1TraceInfo rt;

		memset(&rt, 0, sizeof(rt));
		rt.source = "r1_replay";
		rt.started = started;
		rt.prompt = t.prompt;
		rt.system = t.system;
		rt.parameters = t.parameters ? t.parameters :
			DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
		/* what was run: without the ignore_eos that was left out */
		if (dropped_ignore_eos)
			rt.parameters = DatumGetJsonbP(DirectFunctionCall2(jsonb_delete, JsonbPGetDatum(rt.parameters),
															   CStringGetTextDatum("ignore_eos")));
		rt.has_seed = t.has_seed;
		rt.seed = t.seed;
		rt.response = resp;
		r1_trace_record(&rt);
	}

	memset(nulls, 0, sizeof(nulls));
	values[c++] = Int64GetDatum(id);
	values[c++] = BoolGetDatum(reproduced);
#define R1_TEXT_COL(p) (nulls[c] = (p) == NULL, values[c++] = PointerGetDatum(p))
	R1_TEXT_COL(think);
	R1_TEXT_COL(answer);
	R1_TEXT_COL(r1_json_text(resp, "boxed"));
	R1_TEXT_COL(r1_json_text(resp, "finish_reason"));
	values[c++] = Int32GetDatum((int32) r1_json_int(resp, "prompt_tokens"));
	values[c++] = Int32GetDatum((int32) r1_json_int(resp, "completion_tokens"));
	values[c++] = Int32GetDatum((int32) r1_json_int(resp, "think_tokens"));
	values[c++] = Float8GetDatum(r1_json_float(resp, "ms"));
	R1_TEXT_COL(r1_json_text(resp, "model"));
	R1_TEXT_COL(checksum);
	R1_TEXT_COL(note.len ? cstring_to_text(note.data) : NULL);
#undef R1_TEXT_COL
	Assert(c == lengthof(values));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
