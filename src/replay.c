/*
 * replay.c - r1_replay(trace_id): run a recorded call again and say whether
 * it reproduced exactly: the same think and answer text from the same
 * weights (checksum).  A greedy call (temperature 0) or a seeded one is
 * deterministic on a given engine; an unseeded sampled call is not and
 * cannot be replayed.
 *
 * The trace is read as the calling role, so r1.traces' privileges apply
 * (r1_auditor).  The stored parameters object is read back the way it was
 * written (request.c), so every parameter the engine was given replays, with
 * the caller's limits: max_tokens is checked against r1.max_tokens_per_call,
 * the call reserves and is charged against the caller's r1.role_quota like
 * r1_reason, and ignore_eos and parse_special (r1.debug_ignore_eos,
 * r1.parse_special_tokens: superuser-only) are replayed only for a role that
 * may set those settings; otherwise they are left out and the note says so.
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
#include "settings.h"
#include "request.h"
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

/* May the caller set this superuser-only setting? */
static bool
r1_may_set(const char *setting)
{
	return superuser() || pg_parameter_aclcheck(setting, GetUserId(), ACL_SET) == ACLCHECK_OK;
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
	R1Params	params;
	R1Call		call;
	StringInfoData note;
	bool		dropped_ignore_eos,
				dropped_parse_special;
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

	r1_params_from_jsonb(t.parameters, &params);
	params.system = t.system;
	params.has_seed = t.has_seed;
	params.seed = t.seed;
	/* the caller's limits, as for r1_reason */
	if (t.parameters && r1_json_int(t.parameters, "max_tokens") > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("trace " INT64_FORMAT " cannot be replayed", id),
				 errdetail("Its max_tokens (" INT64_FORMAT ") is out of range.",
						   r1_json_int(t.parameters, "max_tokens"))));
	if (params.max_tokens <= 0)
		params.max_tokens = r1_max_tokens_default;
	r1_check_sampling(params.max_tokens, params.temperature, params.top_p, params.top_k, params.min_p);
	r1_check_max_tokens(params.max_tokens, false);
	dropped_ignore_eos = params.ignore_eos && !r1_may_set("r1.debug_ignore_eos");
	if (dropped_ignore_eos)
		params.ignore_eos = false;
	dropped_parse_special = params.parse_special && !r1_may_set("r1.parse_special_tokens");
	if (dropped_parse_special)
		params.parse_special = false;
	if (!t.has_seed && params.temperature > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trace " INT64_FORMAT " cannot be replayed", id),
				 errdetail("It was sampled (temperature %g) without a seed, so its output was random.",
						   params.temperature),
				 errhint("Only greedy (temperature 0) and seeded calls can be replayed: pass seed => N to r1_reason.")));

	/* traced as what was run: without a flag that was left out */
	call.source = "r1_replay";
	call.prompt = t.prompt;
	call.params = &params;
	call.trace_parameters = r1_params_jsonb(&params, false);
	resp = r1_generate(&call);

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
	if (dropped_parse_special)
		appendStringInfo(&note, "%sthe trace ran with parse_special, which was not replayed: only a role that may set r1.parse_special_tokens (superuser) replays it",
						 note.len ? "; " : "");
	if (!same_text)
		appendStringInfo(&note, "%s%s differ%s", note.len ? "; " : "",
						 !r1_text_eq(think, t.think) && !r1_text_eq(answer, t.answer) ? "the think and answer texts" :
						 !r1_text_eq(think, t.think) ? "the think text" : "the answer text",
						 !r1_text_eq(think, t.think) && !r1_text_eq(answer, t.answer) ? "" : "s");

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
