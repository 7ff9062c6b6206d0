/*
 * sqlfuncs.c - the SQL-callable functions: r1_reason, r1_tokenize,
 * r1_count_tokens, r1_extract_boxed, r1_status.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "engine/chat.h"
#include "serve/protocol.h"
#include "engine/version.h"
#include "activity.h"
#include "client.h"
#include "quota.h"
#include "r1_pg.h"
#include "settings.h"
#include "shmem.h"
#include "request.h"
#include "traces.h"

static TupleDesc
r1_result_tupdesc(FunctionCallInfo fcinfo)
{
	TupleDesc	tupdesc;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	return BlessTupleDesc(tupdesc);
}

PG_FUNCTION_INFO_V1(pg_r1_reason);

/*
 * r1_reason(prompt, max_tokens, temperature, top_p, seed, system, top_k, min_p,
 *			 max_think_tokens)
 */
Datum
pg_r1_reason(PG_FUNCTION_ARGS)
{
	R1Params	params;
	R1Call		call;
	TupleDesc	tupdesc;
	Jsonb	   *resp;
	Datum		values[8];
	bool		nulls[8];

	if (R1_ARG_ISNULL(0))
		PG_RETURN_NULL();
	r1_params_from_args(fcinfo, &r1_reason_args, &params, NULL);
	tupdesc = r1_result_tupdesc(fcinfo);
	call.source = "r1_reason";
	call.prompt = PG_GETARG_TEXT_PP(0);
	call.params = &params;
	call.trace_parameters = NULL;
	resp = r1_generate(&call);

	values[0] = PointerGetDatum(r1_json_text(resp, "think"));
	values[1] = PointerGetDatum(r1_json_text(resp, "answer"));
	values[2] = PointerGetDatum(r1_json_text(resp, "boxed"));
	values[3] = PointerGetDatum(r1_json_text(resp, "finish_reason"));
	for (int i = 0; i < 4; i++)
		nulls[i] = values[i] == (Datum) 0;
	values[4] = Int32GetDatum((int32) r1_json_int(resp, "prompt_tokens"));
	values[5] = Int32GetDatum((int32) r1_json_int(resp, "completion_tokens"));
	values[6] = Int32GetDatum((int32) r1_json_int(resp, "think_tokens"));
	values[7] = Float8GetDatum(r1_json_float(resp, "ms"));
	nulls[4] = nulls[5] = nulls[6] = nulls[7] = false;

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

static Jsonb *
r1_tokenize_call(text *t, bool count_only)
{
	size_t		len;
	char	   *s = r1_text_to_utf8(t, &len);
	StringInfoData req;

	r1_check_prompt_size(len);
	initStringInfo(&req);
	appendStringInfoString(&req, "{\"op\":\"tokenize\",\"text\":");
	escape_json(&req, s);
	if (count_only)
		appendStringInfoString(&req, ",\"count_only\":true");
	if (r1_parse_special_tokens)
		appendStringInfoString(&req, ",\"parse_special\":true");
	appendStringInfoChar(&req, '}');
	return r1_call(req.data, req.len, false);
}

PG_FUNCTION_INFO_V1(pg_r1_tokenize);

Datum
pg_r1_tokenize(PG_FUNCTION_ARGS)
{
	Jsonb	   *resp = r1_tokenize_call(PG_GETARG_TEXT_PP(0), false);
	JsonbValue	ids;
	ArrayBuildState *astate = initArrayResult(INT4OID, CurrentMemoryContext, false);

	if (r1_json_get(resp, "ids", &ids) && ids.type == jbvBinary)
	{
		JsonbIterator *it = JsonbIteratorInit(ids.val.binary.data);
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM || v.type != jbvNumeric)
				continue;
			astate = accumArrayResult(astate,
									  DirectFunctionCall1(numeric_int4, NumericGetDatum(v.val.numeric)),
									  false, INT4OID, CurrentMemoryContext);
		}
	}
	PG_RETURN_DATUM(makeArrayResult(astate, CurrentMemoryContext));
}

PG_FUNCTION_INFO_V1(pg_r1_count_tokens);

Datum
pg_r1_count_tokens(PG_FUNCTION_ARGS)
{
	Jsonb	   *resp = r1_tokenize_call(PG_GETARG_TEXT_PP(0), true);

	PG_RETURN_INT32((int32) r1_json_int(resp, "n"));
}

/* r1_extract_boxed_len's callback: it holds no memory, so an ERROR may leave it */
static void
r1_boxed_check_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
}

PG_FUNCTION_INFO_V1(pg_r1_extract_boxed);

Datum
pg_r1_extract_boxed(PG_FUNCTION_ARGS)
{
	size_t		len;
	char	   *s = r1_text_to_utf8(PG_GETARG_TEXT_PP(0), &len);
	char	   *boxed = r1_extract_boxed_len(s, len, r1_boxed_check_interrupts);
	text	   *result;

	if (boxed == NULL)
		PG_RETURN_NULL();
	PG_TRY();
	{
		result = r1_utf8_to_text(boxed, strlen(boxed));
	}
	PG_FINALLY();
	{
		free(boxed);
	}
	PG_END_TRY();
	PG_RETURN_TEXT_P(result);
}

PG_FUNCTION_INFO_V1(pg_r1_status);

Datum
pg_r1_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc = r1_result_tupdesc(fcinfo);
	R1Shared	snap;
	Jsonb	   *st = NULL;
	bool		see_path = r1_can_read_model_path();
	Datum		values[21];
	bool		nulls[21];
	int			i = 0;

	memset(nulls, 0, sizeof(nulls));
	if (r1_shared == NULL)
	{
		memset(&snap, 0, sizeof(snap));
		strlcpy(snap.reason, "r1_pg is not in shared_preload_libraries.", sizeof(snap.reason));
		snap.state = R1_STATE_STARTING;
	}
	else
	{
		r1_shmem_snapshot(&snap);
		if (snap.state == R1_STATE_READY)
		{
			const char *req = "{\"op\":\"status\"}";

			st = r1_call(req, strlen(req), true);
		}
	}

#define R1_TEXT(s) (CStringGetTextDatum(s))
	values[i++] = R1_TEXT(r1_state_name(snap.state));
	nulls[i] = snap.reason[0] == '\0';
	values[i++] = R1_TEXT(see_path ? snap.reason : r1_redact_model_path(snap.reason, snap.model_path));
	nulls[i] = snap.model_name[0] == '\0';
	values[i++] = R1_TEXT(snap.model_name);
	/* r1.model is GUC_SUPERUSER_ONLY: its value is shown to the same roles */
	nulls[i] = snap.model_path[0] == '\0' || !see_path;
	values[i++] = R1_TEXT(snap.model_path);
	values[i++] = R1_TEXT(snap.device[0] ? snap.device : snap.device_setting[0] ? snap.device_setting : r1_device_name(r1_device));
	nulls[i] = snap.host_pid == 0;
	values[i++] = Int32GetDatum((int32) snap.host_pid);
	nulls[i] = st == NULL;
	values[i++] = Int32GetDatum(st ? (int32) r1_json_int(st, "waiting") : 0);
	nulls[i] = st == NULL;
	values[i++] = Int32GetDatum(st ? (int32) r1_json_int(st, "running") : 0);
	nulls[i] = st == NULL;
	values[i++] = Int64GetDatum(st ? r1_json_int(st, "tokens_generated") : 0);
	nulls[i] = st == NULL;
	values[i++] = Int64GetDatum(st ? r1_json_int(st, "requests_done") : 0);
	nulls[i] = st == NULL;
	values[i++] = Int64GetDatum(st ? r1_json_int(st, "memory_used") : 0);
	nulls[i] = snap.state != R1_STATE_READY;
	values[i++] = Int64GetDatum(snap.weight_bytes);
	nulls[i] = snap.state != R1_STATE_READY;
	values[i++] = Int32GetDatum(snap.max_ctx);
	values[i++] = Int32GetDatum(snap.host_restarts);
	nulls[i] = snap.worker_start == 0;
	values[i++] = snap.worker_start ?
		DirectFunctionCall2(timestamp_mi, TimestampTzGetDatum(GetCurrentTimestamp()),
							TimestampTzGetDatum(snap.worker_start)) : (Datum) 0;
	nulls[i] = snap.ready_since == 0;
	values[i++] = TimestampTzGetDatum(snap.ready_since);
	nulls[i] = snap.note[0] == '\0';
	values[i++] = R1_TEXT(snap.note);
	/* computed by the host after it is ready: NULL until then */
	{
		text	   *checksum = st ? r1_json_text(st, "weights_checksum") : NULL;

		nulls[i] = checksum == NULL;
		values[i++] = PointerGetDatum(checksum);
	}
	/* sequences preempted (and recomputed) because the KV cache was full */
	nulls[i] = st == NULL;
	values[i++] = Int64GetDatum(st ? r1_json_int(st, "preemptions") : 0);
	/* 0.2.0: the build, and the CPU kernels the host chose (NULL until ready) */
	values[i++] = R1_TEXT(r1_version());
	{
		text	   *cpu_path = st ? r1_json_text(st, "cpu_path") : NULL;

		nulls[i] = cpu_path == NULL;
		values[i++] = PointerGetDatum(cpu_path);
	}
#undef R1_TEXT
	Assert(i == lengthof(values));

	/*
	 * A database whose extension is still at an older version has fewer
	 * columns in r1.engine_status: fill those it has (ALTER EXTENSION r1_pg
	 * UPDATE adds the rest).
	 */
	if (tupdesc->natts > lengthof(values))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1.engine_status has more columns than this r1_pg library knows"),
				 errhint("Install the r1_pg build that matches the extension's SQL version.")));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
