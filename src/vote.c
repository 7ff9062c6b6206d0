/*
 * vote.c - reasoning-aware SQL: r1_answers_equal(a, b), the grading of a
 * final answer (src/engine/answer_equal.c does the work); the loop-detection
 * settings r1.repetition_* (src/engine/repetition.h); self-consistency
 * voting, r1_reason_vote() and r1_reason_vote_many().
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "engine/answer_equal.h"
#include "engine/repetition.h"
#include "serve/protocol.h"
#include "activity.h"
#include "client.h"
#include "client_many.h"
#include "quota.h"
#include "r1_pg.h"
#include "settings.h"
#include "shmem.h"
#include "request.h"
#include "traces.h"

PG_FUNCTION_INFO_V1(pg_r1_answers_equal);

/*
 * r1_answers_equal(a text, b text) -> bool (STRICT).  Texts too long to be
 * answers are compared byte for byte without converting them.
 */
Datum
pg_r1_answers_equal(PG_FUNCTION_ARGS)
{
	text	   *a = PG_GETARG_TEXT_PP(0);
	text	   *b = PG_GETARG_TEXT_PP(1);
	size_t		al = VARSIZE_ANY_EXHDR(a),
				bl = VARSIZE_ANY_EXHDR(b);
	char	   *ua,
			   *ub;
	size_t		ual,
				ubl;

	if (al > 4 * (size_t) R1_ANSWER_MAX_LEN || bl > 4 * (size_t) R1_ANSWER_MAX_LEN)
		PG_RETURN_BOOL(al == bl && memcmp(VARDATA_ANY(a), VARDATA_ANY(b), al) == 0);
	ua = r1_text_to_utf8(a, &ual);
	ub = r1_text_to_utf8(b, &ubl);
	PG_RETURN_BOOL(r1_answers_equal(ua, ual, ub, ubl) != 0);
}

/* ---- self-consistency voting ---- */

#define R1_VOTE_NATTS	12		/* r1.vote */
#define R1_VOTE_MAX_N	256		/* samples per prompt */
#define R1_VOTE_MIN_WINDOW 64

/* one finished sample */
typedef struct R1Sample
{
	bool		done;
	text	   *boxed;			/* server encoding, NULL when none */
	text	   *finish;
	text	   *think;
	text	   *answer;
	int64		prompt_tokens;
	int64		completion_tokens;
	double		ms;
} R1Sample;

/* one prompt's samples */
typedef struct R1VotePrompt
{
	int			n_done;
	bool		emitted;
	char	   *error;			/* the first failure, 'SQLSTATE: message' */
	R1Sample   *samples;		/* [n] */
} R1VotePrompt;

typedef struct R1VoteState
{
	const char *source;			/* "r1_reason_vote" or "r1_reason_vote_many" */
	int			n_prompts;
	int			n;				/* samples per prompt */
	bool		strict;
	bool		single;			/* r1_reason_vote: every failure raises */
	R1Many	   *many;
	R1VotePrompt *prompts;
	Datum	   *prompt_texts;	/* for traces */
	int			next_ready;		/* SRF: prompts that failed before sending
								 * come first */
	Oid			role;
	R1Params	params;
	TimestampTz started;
	int64	   *cost;			/* [n_prompts * n] the most a sample can cost */
	R1QuotaHold *holds;			/* [n_prompts * n] reservations of samples in
								 * flight */
	MemoryContextCallback release;	/* gives unsettled holds back */
} R1VoteState;

static void
r1_vote_errcontext(void *arg)
{
	errcontext("r1_reason_vote_many prompt %d", *(int *) arg);
}

/* the seed of sample i (from 0) of prompt p (from 0): seed + p * n + i */
static int64
r1_vote_seed(int64 seed, int n, int p, int i)
{
	return (int64) ((uint64) seed + (uint64) p * (uint64) n + (uint64) i);
}

/*
 * Arguments, shared by both functions: (prompt(s), n, max_tokens,
 * temperature, top_p, seed, system, top_k, min_p, max_think_tokens[, strict]).
 */
/*
 * A sample about to be sent: reserve what it can cost (r1.role_quota), as
 * r1_reason_many does for a prompt; one that does not fit fails its prompt.
 */
static R1Admit
r1_vote_admit(int index, int in_flight, void *arg)
{
	R1VoteState *st = (R1VoteState *) arg;
	R1VotePrompt *vp = &st->prompts[index / st->n];
	char	   *refusal;

	if (r1_quota_admit_item(&st->holds[index], st->role, st->cost[index], in_flight, GetMemoryChunkContext(st),
							&refusal))
		return R1_ADMIT_SEND;
	if (refusal == NULL)
		return R1_ADMIT_LATER;
	if (vp->error == NULL)
		vp->error = refusal;
	return R1_ADMIT_REFUSE;
}

/* the call ended (done, an error, a cancel): give back what is still held */
static void
r1_vote_release(void *arg)
{
	R1VoteState *st = (R1VoteState *) arg;

	r1_quota_release_all(st->holds, st->n_prompts * st->n);
}

static R1VoteState *
r1_vote_start(FunctionCallInfo fcinfo, bool single)
{
	int			n = R1_ARG_ISNULL(1) ? 8 : PG_GETARG_INT32(1);
	R1VoteState *st = palloc0(sizeof(R1VoteState));
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n_prompts;
	size_t		system_len = 0;
	char	  **bodies;
	size_t	   *lens;
	int			window;

	if (n < 1 || n > R1_VOTE_MAX_N)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("n must be between 1 and %d", R1_VOTE_MAX_N),
				 errdetail("n is %d.", n),
				 errhint("Vote over 8 to 64 samples, as the published cons@k results do.")));
	r1_params_from_args(fcinfo, &r1_vote_args, &st->params, &system_len);
	st->role = r1_quota_role();
	r1_quota_check(st->role);

	if (single)
	{
		elems = palloc(sizeof(Datum));
		elem_nulls = palloc(sizeof(bool));
		elems[0] = PG_GETARG_DATUM(0);
		elem_nulls[0] = false;
		n_prompts = 1;
	}
	else if (R1_ARG_ISNULL(0))
	{
		elems = NULL;
		elem_nulls = NULL;
		n_prompts = 0;
	}
	else
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elem_nulls, &n_prompts);
	if ((int64) n_prompts * n > INT_MAX / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many samples in one call"),
				 errdetail("%d prompts with %d samples each.", n_prompts, n),
				 errhint("Vote over fewer prompts per call.")));

	/*
	 * sample i of prompt p is sampled with seed + p * n + i: that must stay a
	 * valid seed
	 */
	if (st->params.has_seed && (int64) n_prompts * n > 1 &&
		st->params.seed > PG_INT64_MAX - ((int64) n_prompts * n - 1))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seed is too large for %d samples", n_prompts * n),
				 errdetail("Sample i of prompt p is sampled with seed + (p - 1) * n + i - 1; with seed " INT64_FORMAT " the last sample's seed would be past 9223372036854775807.",
						   st->params.seed),
				 errhint("Pass a seed of at most " INT64_FORMAT ".", PG_INT64_MAX - ((int64) n_prompts * n - 1))));
	if (r1_log_traces)
		r1_trace_check_writable();

	st->source = single ? "r1_reason_vote" : "r1_reason_vote_many";
	st->single = single;
	st->strict = single || (!R1_ARG_ISNULL(10) && PG_GETARG_BOOL(10));
	st->n = n;
	st->n_prompts = n_prompts;
	st->prompt_texts = elems;
	if (st->params.system)
		st->params.system = PG_GETARG_TEXT_P_COPY(6);
	st->prompts = palloc0(sizeof(R1VotePrompt) * Max(n_prompts, 1));
	st->started = GetCurrentTimestamp();

	st->cost = palloc0(sizeof(int64) * Max(n_prompts * n, 1));
	st->holds = palloc0(sizeof(R1QuotaHold) * Max(n_prompts * n, 1));
	bodies = palloc0(sizeof(char *) * Max(n_prompts * n, 1));
	lens = palloc0(sizeof(size_t) * Max(n_prompts * n, 1));
	for (int p = 0; p < n_prompts; p++)
	{
		R1VotePrompt *vp = &st->prompts[p];
		int			ord = p + 1;
		ErrorContextCallback ctx;
		char	   *prompt;
		size_t		len;

		vp->samples = palloc0(sizeof(R1Sample) * n);
		ctx.callback = r1_vote_errcontext;
		ctx.arg = &ord;
		ctx.previous = error_context_stack;
		if (!single)
			error_context_stack = &ctx;
		if (elem_nulls[p])
		{
			if (st->strict)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("prompt is NULL"),
						 errhint("Remove NULL elements from the array, or call without strict to get an error row.")));
			vp->error = psprintf("22004: prompt is NULL");
		}
		else
		{
			prompt = r1_text_to_utf8(DatumGetTextPP(elems[p]), &len);
			if (len + system_len > R1_PROTO_MAX_PROMPT)
			{
				if (st->strict)
					r1_check_prompt_size(len + system_len);
				vp->error = psprintf("54000: prompt is too long (%zu bytes of prompt and system text; the limit is %u)",
									 len + system_len, R1_PROTO_MAX_PROMPT);
			}
			else
				for (int i = 0; i < n; i++)
				{
					StringInfoData req;

					initStringInfo(&req);
					r1_build_request(&req, prompt, &st->params, r1_vote_seed(0, n, p, i),
									 R1_REQ_SHARE_PREFILL);
					bodies[p * n + i] = req.data;
					lens[p * n + i] = req.len;
					st->cost[p * n + i] = r1_quota_estimate(len + system_len, st->params.max_tokens);
				}
			pfree(prompt);
		}
		if (!single)
			error_context_stack = ctx.previous;
	}

	/* a prompt's samples go out together so the engine shares their prefill */
	window = Max(R1_VOTE_MIN_WINDOW, 2 * r1_max_seqs);
	window = Max(window, n);
	window = Min(window, r1_max_queued);
	if (n_prompts > 0)
	{
		st->many = r1_many_start(n_prompts * n, bodies, lens, window);
		if (r1_quota_of(st->role) >= 0)
		{
			r1_many_set_admit(st->many, r1_vote_admit, st);
			st->release.func = r1_vote_release;
			st->release.arg = st;
			MemoryContextRegisterResetCallback(GetMemoryChunkContext(st), &st->release);
		}
	}
	return st;
}

/*
 * Wait for the next sample; returns the index of a prompt whose samples are
 * all back, or -1 when every prompt is done.
 */
static int
r1_vote_next(R1VoteState *st)
{
	for (;;)
	{
		Jsonb	   *resp;
		int			index,
					p,
					i;
		R1VotePrompt *vp;
		R1Sample   *s;

		if (st->many == NULL || (index = r1_many_next(st->many, &resp)) < 0)
			return -1;
		p = index / st->n;
		i = index % st->n;
		vp = &st->prompts[p];
		s = &vp->samples[i];
		if (resp == NULL)
		{
			/*
			 * refused before sending: r1.role_quota has no room (vp->error
			 * says so)
			 */
			if (st->strict)
				ereport(ERROR,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("the vote's samples do not fit in the role's token quota for today"),
						 errdetail("%s", vp->error ? vp->error : "53400"),
						 errhint("Vote over fewer samples or with a smaller max_tokens, or wait for the quota to reset at 00:00 UTC.")));
			s->done = true;
			if (++vp->n_done == st->n)
				return p;
			continue;
		}
		if (!r1_response_ok(resp))
		{
			text	   *code = r1_json_text(resp, "code");
			text	   *error = r1_json_text(resp, "error");

			r1_quota_settle(&st->holds[index], 0);	/* failed: not charged */

			if (st->strict)
			{
				ErrorContextCallback ctx;
				int			ord = p + 1;

				ctx.callback = r1_vote_errcontext;
				ctx.arg = &ord;
				ctx.previous = error_context_stack;
				if (!st->single)
					error_context_stack = &ctx;
				r1_raise_response(resp);
			}
			pg_atomic_fetch_add_u64(&r1_shared->errors, 1);
			r1_stats_count_outcome(R1_OUTCOME_ERROR, 0, 0, 0);
			if (vp->error == NULL)
				vp->error = psprintf("%s: %s", code ? text_to_cstring(code) : "XX000",
									 error ? text_to_cstring(error) : "r1 engine error");
		}
		else
		{
			s->boxed = r1_json_text(resp, "boxed");
			s->finish = r1_json_text(resp, "finish_reason");
			s->think = r1_json_text(resp, "think");
			s->answer = r1_json_text(resp, "answer");
			s->prompt_tokens = r1_json_int(resp, "prompt_tokens");
			s->completion_tokens = r1_json_int(resp, "completion_tokens");
			s->ms = r1_json_float(resp, "ms");
			if (st->holds[index].limited)
				r1_quota_settle(&st->holds[index], s->prompt_tokens + s->completion_tokens);
			else
				r1_quota_charge(st->role, s->prompt_tokens + s->completion_tokens);
			r1_stats_count_outcome(R1_OUTCOME_COMPLETED, s->ms, s->prompt_tokens, s->completion_tokens);
			r1_stats_count_finish(resp);
			if (r1_log_traces)
			{
				R1TraceInfo t;

				memset(&t, 0, sizeof(t));
				t.source = st->source;
				t.started = st->started;
				t.prompt = DatumGetTextPP(st->prompt_texts[p]);
				r1_trace_params(&t, &st->params, r1_vote_seed(0, st->n, p, i));
				t.response = resp;
				r1_trace_record(&t);
			}
		}
		s->done = true;
		if (++vp->n_done == st->n)
			return p;
	}
}

static bool
r1_boxed_equal(text *a, text *b)
{
	size_t		al,
				bl;
	char	   *ua = r1_text_to_utf8(a, &al);
	char	   *ub = r1_text_to_utf8(b, &bl);

	return r1_answers_equal(ua, al, ub, bl) != 0;
}

/*
 * The vote of one prompt into values[off..off+R1_VOTE_NATTS): samples are
 * grouped by r1_answers_equal() in sample order; the largest group wins, the
 * earliest formed on a tie; its first sample gives think and answer.
 */
static void
r1_vote_values(R1VoteState *st, R1VotePrompt *vp, Datum *values, bool *nulls)
{
	int			n = st->n;
	int		   *group = palloc(sizeof(int) * n);	/* sample -> its group's
													 * first sample */
	int		   *count = palloc0(sizeof(int) * n);	/* by first sample */
	int			best = -1,
				n_boxed = 0;
	int64		prompt_tokens = 0,
				completion_tokens = 0;
	double		ms = 0;
	Datum	   *answers = palloc(sizeof(Datum) * n);
	bool	   *answer_nulls = palloc(sizeof(bool) * n);
	Datum	   *finishes = palloc(sizeof(Datum) * n);
	bool	   *finish_nulls = palloc(sizeof(bool) * n);
	int			dims[1] = {n},
				lbs[1] = {1};
	int			c = 0;

	for (int i = 0; i < n; i++)
	{
		R1Sample   *s = &vp->samples[i];

		group[i] = -1;
		answers[i] = s->boxed ? PointerGetDatum(s->boxed) : (Datum) 0;
		answer_nulls[i] = s->boxed == NULL;
		finishes[i] = s->finish ? PointerGetDatum(s->finish) : (Datum) 0;
		finish_nulls[i] = s->finish == NULL;
		prompt_tokens = Max(prompt_tokens, s->prompt_tokens);
		completion_tokens += s->completion_tokens;
		ms = Max(ms, s->ms);
		if (s->boxed == NULL)
			continue;
		n_boxed++;
		for (int j = 0; j < i && group[i] < 0; j++)
			if (group[j] == j && r1_boxed_equal(vp->samples[j].boxed, s->boxed))
				group[i] = j;
		if (group[i] < 0)
			group[i] = i;
		count[group[i]]++;
		if (best < 0 || count[group[i]] > count[best])
			best = group[i];
	}
	/* the earliest group among those with the most votes */
	for (int j = 0; j < n && best >= 0; j++)
		if (group[j] == j && count[j] == count[best])
		{
			best = j;
			break;
		}

	memset(nulls, 0, sizeof(bool) * R1_VOTE_NATTS);
	nulls[c] = best < 0;
	values[c++] = best < 0 ? (Datum) 0 : PointerGetDatum(vp->samples[best].boxed);
	values[c++] = Float8GetDatum(best < 0 ? 0.0 : (double) count[best] / n);
	values[c++] = Int32GetDatum(best < 0 ? 0 : count[best]);
	values[c++] = Int32GetDatum(n_boxed);
	values[c++] = Int32GetDatum(n);
	values[c++] = PointerGetDatum(construct_md_array(answers, answer_nulls, 1, dims, lbs,
													 TEXTOID, -1, false, TYPALIGN_INT));
	values[c++] = PointerGetDatum(construct_md_array(finishes, finish_nulls, 1, dims, lbs,
													 TEXTOID, -1, false, TYPALIGN_INT));
	nulls[c] = best < 0 || vp->samples[best].think == NULL;
	values[c] = nulls[c] ? (Datum) 0 : PointerGetDatum(vp->samples[best].think);
	c++;
	nulls[c] = best < 0 || vp->samples[best].answer == NULL;
	values[c] = nulls[c] ? (Datum) 0 : PointerGetDatum(vp->samples[best].answer);
	c++;
	values[c++] = Int32GetDatum((int32) prompt_tokens);
	values[c++] = Int64GetDatum(completion_tokens);
	values[c++] = Float8GetDatum(ms);
	Assert(c == R1_VOTE_NATTS);
}

PG_FUNCTION_INFO_V1(pg_r1_reason_vote);

/*
 * r1_reason_vote(prompt, n, max_tokens, temperature, top_p, seed, system,
 *				  top_k, min_p, max_think_tokens) -> r1.vote
 */
Datum
pg_r1_reason_vote(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	R1VoteState *st;
	Datum		values[R1_VOTE_NATTS];
	bool		nulls[R1_VOTE_NATTS];

	if (R1_ARG_ISNULL(0))
		PG_RETURN_NULL();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != R1_VOTE_NATTS)
		elog(ERROR, "r1.vote must have %d columns", R1_VOTE_NATTS);
	tupdesc = BlessTupleDesc(tupdesc);
	st = r1_vote_start(fcinfo, true);
	while (r1_vote_next(st) >= 0)
		;
	r1_vote_values(st, &st->prompts[0], values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(pg_r1_reason_vote_many);

/*
 * r1_reason_vote_many(prompts, n, max_tokens, temperature, top_p, seed,
 *					   system, top_k, min_p, max_think_tokens, strict)
 *	-> SETOF r1.vote_item (ord, the columns of r1.vote, error)
 */
Datum
pg_r1_reason_vote_many(PG_FUNCTION_ARGS)
{
	FuncCallContext *funcctx;
	R1VoteState *st;
	Datum		values[R1_VOTE_NATTS + 2];
	bool		nulls[R1_VOTE_NATTS + 2];
	int			p = -1;

	if (SRF_IS_FIRSTCALL())
	{
		MemoryContext old;
		TupleDesc	tupdesc;

		funcctx = SRF_FIRSTCALL_INIT();
		old = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);
		if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		if (tupdesc->natts != R1_VOTE_NATTS + 2)
			elog(ERROR, "r1.vote_item must have %d columns", R1_VOTE_NATTS + 2);
		funcctx->tuple_desc = BlessTupleDesc(tupdesc);
		funcctx->user_fctx = r1_vote_start(fcinfo, false);
		MemoryContextSwitchTo(old);
	}
	funcctx = SRF_PERCALL_SETUP();
	st = funcctx->user_fctx;

	/* prompts that failed before sending come first */
	while (st->next_ready < st->n_prompts && p < 0)
	{
		int			k = st->next_ready++;

		if (st->prompts[k].error && st->prompts[k].n_done == 0)
			p = k;
	}
	if (p < 0)
	{
		/* the samples' texts live as long as the call */
		MemoryContext old = MemoryContextSwitchTo(funcctx->multi_call_memory_ctx);

		p = r1_vote_next(st);
		MemoryContextSwitchTo(old);
		if (p < 0)
			SRF_RETURN_DONE(funcctx);
	}
	st->prompts[p].emitted = true;
	memset(nulls, true, sizeof(nulls));
	values[0] = Int32GetDatum(p + 1);
	nulls[0] = false;
	if (st->prompts[p].error)
	{
		values[R1_VOTE_NATTS + 1] = CStringGetTextDatum(st->prompts[p].error);
		nulls[R1_VOTE_NATTS + 1] = false;
	}
	else
		r1_vote_values(st, &st->prompts[p], values + 1, nulls + 1);
	{
		HeapTuple	tuple = heap_form_tuple(funcctx->tuple_desc, values, nulls);

		/* the row holds copies: a long table keeps only the samples in flight */
		for (int i = 0; i < st->n && st->prompts[p].samples; i++)
		{
			R1Sample   *s = &st->prompts[p].samples[i];

			if (s->think)
				pfree(s->think);
			if (s->answer)
				pfree(s->answer);
			s->think = s->answer = NULL;
		}
		SRF_RETURN_NEXT(funcctx, HeapTupleGetDatum(tuple));
	}
}
