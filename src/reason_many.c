/*
 * reason_many.c - r1_reason_many(prompts text[], ...): every prompt in flight
 * at once so the engine batches them; one r1.reasoning_item row per prompt,
 * returned as each finishes (completion order; ord is the prompt's position
 * in the array, from 1).
 *
 * A prompt that fails (NULL, too long, the engine refused it) gives a row
 * with error = 'SQLSTATE: message' and the other columns NULL; strict => true
 * raises the first such error instead.  With r1.role_quota, each prompt
 * reserves what it can cost (prompt bytes + template + max_tokens) when it is
 * about to be sent, and settles to its real tokens when it finishes; a prompt
 * that does not fit waits while earlier prompts of this call are in flight
 * (they may give tokens back), and then gets a 53400 error row.  Invalid
 * parameters fail the whole call.  A seed makes every prompt reproducible: prompt ord uses
 * seed + ord - 1, so r1_reason(prompt, seed => seed + ord - 1, ...) alone
 * gives the same row.
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

#include "serve/protocol.h"
#include "activity.h"
#include "quota.h"
#include "traces.h"
#include "client.h"
#include "client_many.h"
#include "r1_pg.h"
#include "settings.h"
#include "shmem.h"
#include "request.h"

#define R1_MANY_NATTS 10
#define R1_MANY_MIN_WINDOW 64

typedef struct R1ManyState
{
	R1Many	   *many;
	int			n;
	char	  **errors;			/* [n] error found before sending, or NULL */
	int			next_error;		/* scan position in errors */
	bool		strict;
	Oid			role;			/* charged for the tokens (r1.role_quota) */
	int64	   *cost;			/* [n] what each prompt can cost at most */
	R1QuotaHold *holds;			/* [n] reservations of prompts in flight */
	MemoryContextCallback release;	/* gives unsettled holds back */
	MemoryContext mcxt;			/* multi_call_memory_ctx */
	/* what r1.traces records of each finished prompt */
	Datum	   *prompts;
	R1Params	params;
	TimestampTz started;
} R1ManyState;

/* error context for strict mode: which prompt failed */
static void
r1_many_errcontext(void *arg)
{
	errcontext("r1_reason_many prompt %d", *(int *) arg);
}

/* a prompt about to be sent: reserve what it can cost */
static R1Admit
r1_many_admit(int index, int in_flight, void *arg)
{
	R1ManyState *st = (R1ManyState *) arg;
	char	   *refusal;

	if (r1_quota_admit_item(&st->holds[index], st->role, st->cost[index], in_flight, st->mcxt, &refusal))
		return R1_ADMIT_SEND;
	if (refusal == NULL)
		return R1_ADMIT_LATER;
	st->errors[index] = refusal;
	return R1_ADMIT_REFUSE;
}

/* the call ended (done, an error, a cancel, a LIMIT): give back what is still held */
static void
r1_many_release(void *arg)
{
	R1ManyState *st = (R1ManyState *) arg;

	r1_quota_release_all(st->holds, st->n);
}

/* set up: check parameters, build every request, start sending */
static void
r1_many_setup(FunctionCallInfo fcinfo, FuncCallContext *funcctx)
{
	bool		strict = R1_ARG_ISNULL(9) ? false : PG_GETARG_BOOL(9);
	MemoryContext old = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
	R1ManyState *st = palloc0(sizeof(R1ManyState));
	TupleDesc	tupdesc;
	Datum	   *elems = NULL;
	bool	   *elem_nulls = NULL;
	int			n = 0;
	char	  **bodies;
	size_t	   *lens;
	size_t		system_len = 0;
	int			window;

	r1_params_from_args(fcinfo, &r1_reason_args, &st->params, &system_len);
	st->role = r1_quota_role();
	r1_quota_check(st->role);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != R1_MANY_NATTS)
		elog(ERROR, "r1.reasoning_item must have %d columns", R1_MANY_NATTS);
	funcctx->tuple_desc = BlessTupleDesc(tupdesc);

	if (!R1_ARG_ISNULL(0))
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elem_nulls, &n);
	/* prompt ord is sampled with seed + ord - 1: that must stay a valid seed */
	if (!R1_ARG_ISNULL(4) && n > 1 && PG_GETARG_INT64(4) > PG_INT64_MAX - (n - 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seed is too large for %d prompts", n),
				 errdetail("Prompt ord is sampled with seed + ord - 1; with seed " INT64_FORMAT " the last prompt's seed would be past 9223372036854775807.",
						   PG_GETARG_INT64(4)),
				 errhint("Pass a seed of at most " INT64_FORMAT ".", PG_INT64_MAX - (n - 1))));
	if (r1_log_traces)
		r1_trace_check_writable();
	st->prompts = elems;
	/* the system text outlives this call of the function */
	if (st->params.system)
		st->params.system = PG_GETARG_TEXT_P_COPY(5);
	st->started = GetCurrentTimestamp();

	st->n = n;
	st->strict = strict;
	st->errors = palloc0(sizeof(char *) * Max(n, 1));
	st->cost = palloc0(sizeof(int64) * Max(n, 1));
	st->holds = palloc0(sizeof(R1QuotaHold) * Max(n, 1));
	bodies = palloc0(sizeof(char *) * Max(n, 1));
	lens = palloc0(sizeof(size_t) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		char	   *prompt;
		size_t		len;
		int			ord = i + 1;
		ErrorContextCallback ctx;

		ctx.callback = r1_many_errcontext;
		ctx.arg = &ord;
		ctx.previous = error_context_stack;
		error_context_stack = &ctx;
		if (elem_nulls[i])
		{
			if (strict)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("prompt is NULL"),
						 errhint("Remove NULL elements from the array, or call without strict to get an error row.")));
			st->errors[i] = psprintf("22004: prompt is NULL");
		}
		else
		{
			char	   *error = NULL;

			/* text the engine cannot read (SQL_ASCII bytes): an error row */
			prompt = strict ? r1_text_to_utf8(DatumGetTextPP(elems[i]), &len) :
				r1_text_to_utf8_row(DatumGetTextPP(elems[i]), &len, &error);
			if (prompt == NULL)
				st->errors[i] = error;
			else if (len + system_len > R1_PROTO_MAX_PROMPT)
			{
				if (strict)
					r1_check_prompt_size(len + system_len);
				st->errors[i] = psprintf("54000: prompt is too long (%zu bytes of prompt and system text; the limit is %u)",
										 len + system_len, R1_PROTO_MAX_PROMPT);
			}
			else
			{
				StringInfoData req;

				initStringInfo(&req);
				/* prompt ord is sampled with seed + ord - 1 */
				r1_build_request(&req, prompt, &st->params, ord - 1, 0);
				bodies[i] = req.data;
				lens[i] = req.len;
				st->cost[i] = r1_quota_estimate(len + system_len, st->params.max_tokens);
			}
			if (prompt)
				pfree(prompt);
		}
		error_context_stack = ctx.previous;
	}

	/*
	 * In flight at once: enough to keep the engine's batch full twice over,
	 * never more than it accepts; the rest follow as these finish.
	 */
	window = Min(r1_max_queued, Max(R1_MANY_MIN_WINDOW, 2 * r1_max_seqs));
	if (n > 0)
	{
		st->many = r1_many_start(n, bodies, lens, window);
		if (r1_quota_of(st->role) >= 0)
		{
			st->mcxt = funcctx->multi_call_memory_ctx;
			r1_many_set_admit(st->many, r1_many_admit, st);
			st->release.func = r1_many_release;
			st->release.arg = st;
			MemoryContextRegisterResetCallback(funcctx->multi_call_memory_ctx, &st->release);
		}
	}
	funcctx->user_fctx = st;
	MemoryContextSwitchTo(old);
}

static HeapTuple
r1_many_error_row(FuncCallContext *funcctx, int ord, const char *error)
{
	Datum		values[R1_MANY_NATTS];
	bool		nulls[R1_MANY_NATTS];

	memset(nulls, true, sizeof(nulls));
	values[0] = Int32GetDatum(ord);
	nulls[0] = false;
	values[9] = CStringGetTextDatum(error);
	nulls[9] = false;
	return heap_form_tuple(funcctx->tuple_desc, values, nulls);
}

PG_FUNCTION_INFO_V1(pg_r1_reason_many);

/*
 * r1_reason_many(prompts, max_tokens, temperature, top_p, seed, system,
 *				  top_k, min_p, max_think_tokens, strict)
 */
Datum
pg_r1_reason_many(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	R1ManyState *st;
	Jsonb	   *resp;
	int			index;
	Datum		values[R1_MANY_NATTS];
	bool		nulls[R1_MANY_NATTS];

	if (SRF_IS_FIRSTCALL())
	{
		funcctx = SRF_FIRSTCALL_INIT();
		r1_many_setup(fcinfo, funcctx);
	}
	funcctx = SRF_PERCALL_SETUP();
	st = funcctx->user_fctx;

	/*
	 * rows for prompts that failed before sending come first: they finished
	 * first
	 */
	while (st->next_error < st->n)
	{
		int			i = st->next_error++;

		if (st->errors[i])
			SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(r1_many_error_row(funcctx, i + 1, st->errors[i])));
	}
	if (st->many == NULL || (index = r1_many_next(st->many, &resp)) < 0)
		SRF_RETURN_DONE(funcctx);

	if (resp == NULL)
	{
		/* refused before sending: it does not fit in the role's quota */
		int			ord = index + 1;

		if (st->strict)
		{
			ErrorContextCallback ctx;

			ctx.callback = r1_many_errcontext;
			ctx.arg = &ord;
			ctx.previous = error_context_stack;
			error_context_stack = &ctx;
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("%s", st->errors[index] + strlen("53400: ")),
					 errhint("Pass a smaller max_tokens or fewer prompts, or call without strict to get an error row.")));
		}
		SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(r1_many_error_row(funcctx, ord, st->errors[index])));
	}
	if (!r1_response_ok(resp))
	{
		text	   *code = r1_json_text(resp, "code");
		text	   *error = r1_json_text(resp, "error");
		int			ord = index + 1;

		r1_quota_settle(&st->holds[index], 0);	/* failed: not charged */

		if (st->strict)
		{
			ErrorContextCallback ctx;

			ctx.callback = r1_many_errcontext;
			ctx.arg = &ord;
			ctx.previous = error_context_stack;
			error_context_stack = &ctx;
			r1_raise_response(resp);
		}
		pg_atomic_fetch_add_u64(&r1_shared->errors, 1);
		r1_stats_count_outcome(R1_OUTCOME_ERROR, 0, 0, 0);
		SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(
												   r1_many_error_row(funcctx, ord,
																	 psprintf("%s: %s", code ? text_to_cstring(code) : "XX000",
																			  error ? text_to_cstring(error) : "r1 engine error"))));
	}

	values[0] = Int32GetDatum(index + 1);
	values[1] = PointerGetDatum(r1_json_text(resp, "think"));
	values[2] = PointerGetDatum(r1_json_text(resp, "answer"));
	values[3] = PointerGetDatum(r1_json_text(resp, "boxed"));
	values[4] = PointerGetDatum(r1_json_text(resp, "finish_reason"));
	for (int i = 0; i < 5; i++)
		nulls[i] = values[i] == (Datum) 0;
	nulls[0] = false;
	values[5] = Int32GetDatum((int32) r1_json_int(resp, "prompt_tokens"));
	values[6] = Int32GetDatum((int32) r1_json_int(resp, "completion_tokens"));
	values[7] = Int32GetDatum((int32) r1_json_int(resp, "think_tokens"));
	values[8] = Float8GetDatum(r1_json_float(resp, "ms"));
	nulls[5] = nulls[6] = nulls[7] = nulls[8] = false;
	values[9] = (Datum) 0;
	r1_quota_settle(&st->holds[index], r1_json_int(resp, "prompt_tokens") + r1_json_int(resp, "completion_tokens"));
	r1_stats_count_outcome(R1_OUTCOME_COMPLETED, r1_json_float(resp, "ms"),
						   r1_json_int(resp, "prompt_tokens"), r1_json_int(resp, "completion_tokens"));
	r1_stats_count_finish(resp);
	if (r1_log_traces)
	{
		R1TraceInfo t;

		memset(&t, 0, sizeof(t));
		t.source = "r1_reason_many";
		t.started = st->started;
		t.prompt = DatumGetTextPP(st->prompts[index]);
		/* prompt ord is sampled with seed + ord - 1 (as the request said) */
		r1_trace_params(&t, &st->params, index);
		t.response = resp;
		r1_trace_record(&t);
	}
	nulls[9] = true;
	SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(heap_form_tuple(funcctx->tuple_desc, values, nulls)));
}
