/*
 * test_share.c - share_prefill: n samples of one prompt compute the prompt
 * once (one sequence prefills, the others copy its KV cache) and still
 * produce exactly the tokens they produce alone (CPU, batch_invariant).
 */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "tap.h"

#define NS 5
#define NP 40
#define NP_LONG 200
#define NGEN 12

/* the prompt length fill_request uses */
static int	n_prompt = NP;

static int
open_engine(r1_engine **e, int prefill_chunk, int max_seqs)
{
	r1_engine_opts o;
	r1_error	err;
	const char *fx = getenv("R1_FIXTURES") ? getenv("R1_FIXTURES") : "test/fixtures";
	static char dir[4096];

	snprintf(dir, sizeof(dir), "%s/qwen2-tiny", fx);
	r1_engine_opts_defaults(&o);
	o.model_dir = dir;
	o.device = "cpu";
	o.threads = 2;
	o.max_seqs = max_seqs;
	o.prefill_chunk = prefill_chunk;
	o.batch_invariant = 1;
	if (r1_engine_open(e, &o, &err) != 0)
	{
		diag("%s", err.msg);
		return -1;
	}
	return 0;
}

static void
fill_request(r1_request *rq, const int32_t *prompt, int i, int share)
{
	memset(rq, 0, sizeof(*rq));
	rq->prompt_ids = prompt;
	rq->n_prompt = n_prompt;
	r1_sampling_defaults(&rq->sampling);
	rq->sampling.temperature = 1.0f;
	rq->sampling.seed = 100 + i;
	rq->max_tokens = NGEN;
	rq->ignore_eos = 1;
	rq->share_prefill = share;
}

/* all NS samples at once; ids[i][NGEN] */
static int
run_batch(r1_engine *e, const int32_t *prompt, int share, int32_t ids[NS][NGEN])
{
	int64_t		id[NS];
	r1_error	err;
	r1_completion c;
	int			got = 0;

	for (int i = 0; i < NS; i++)
	{
		r1_request	rq;

		fill_request(&rq, prompt, i, share);
		if (r1_engine_submit(e, &rq, &id[i], &err) != 0)
		{
			diag("%s", err.msg);
			return -1;
		}
	}
	while (r1_engine_busy(e))
		if (r1_engine_step(e, &err) != 0)
		{
			diag("%s", err.msg);
			return -1;
		}
	while (r1_engine_poll(e, &c))
	{
		for (int i = 0; i < NS; i++)
			if (c.id == id[i] && c.n_ids == NGEN)
			{
				memcpy(ids[i], c.ids, sizeof(int32_t) * NGEN);
				got++;
			}
		r1_completion_free(&c);
	}
	return got == NS ? 0 : -1;
}

/* each sample on its own; ids[i][NGEN] (all ones where it failed) */
static void
run_alone(r1_engine *e, const int32_t *prompt, int32_t ids[NS][NGEN])
{
	for (int i = 0; i < NS; i++)
	{
		r1_request	rq;
		r1_completion c;
		r1_error	err;

		fill_request(&rq, prompt, i, 0);
		if (r1_engine_run(e, &rq, &c, &err) == 0 && c.n_ids == NGEN)
			memcpy(ids[i], c.ids, sizeof(ids[i]));
		else
			memset(ids[i], 0xff, sizeof(ids[i]));
		r1_completion_free(&c);
	}
}

int
main(void)
{
	int32_t		prompt[NP_LONG];
	int32_t		alone[NS][NGEN],
				shared[NS][NGEN],
				unshared[NS][NGEN];
	r1_engine  *e;
	r1_engine_stats st;
	int			distinct = 0;

	for (int i = 0; i < NP_LONG; i++)
		prompt[i] = 3 + (i * 37) % 200;
	/* each sample alone */
	if (!ok(open_engine(&e, 512, 8) == 0, "engine opens (qwen2-tiny, CPU, batch_invariant)"))
		return 1;
	run_alone(e, prompt, alone);
	for (int i = 1; i < NS; i++)
		distinct += memcmp(alone[i], alone[0], sizeof(alone[0])) != 0;
	ok(distinct > 0, "the seeds give different samples");

	/* together, sharing: a prompt of 40 tokens is computed once */
	ok(run_batch(e, prompt, 1, shared) == 0, "shared batch runs");
	r1_engine_stats_get(e, &st);
	is_int(st.prefill_shared, (NS - 1) * (NP - 1), "four samples copied 39 prompt positions each");
	for (int i = 0; i < NS; i++)
		ok(memcmp(shared[i], alone[i], sizeof(alone[i])) == 0, "sample %d: shared = alone, bitwise", i);
	ok(run_batch(e, prompt, 0, unshared) == 0, "unshared batch runs");
	r1_engine_stats_get(e, &st);
	is_int(st.prefill_shared, (NS - 1) * (NP - 1), "without share_prefill nothing is copied");
	r1_engine_close(e);

	/* prefill in chunks of 8: the others wait five steps, then copy */
	if (ok(open_engine(&e, 8, 8) == 0, "engine with prefill_chunk 8 opens"))
	{
		ok(run_batch(e, prompt, 1, shared) == 0, "chunked shared batch runs");
		r1_engine_stats_get(e, &st);
		is_int(st.prefill_shared, (NS - 1) * (NP - 1), "chunked: the prompt is still computed once");
		is_int(st.prompt_tokens, NP + (NS - 1), "chunked: 40 + 4 prompt tokens computed");
		for (int i = 0; i < NS; i++)
			ok(memcmp(shared[i], alone[i], sizeof(alone[i])) == 0, "chunked sample %d: shared = alone", i);
		r1_engine_close(e);
	}
	/* two slots for five samples: the later ones copy from whichever sharer holds the prompt */
	if (ok(open_engine(&e, 512, 2) == 0, "engine with 2 slots opens"))
	{
		ok(run_batch(e, prompt, 1, shared) == 0, "shared batch over 2 slots runs");
		for (int i = 0; i < NS; i++)
			ok(memcmp(shared[i], alone[i], sizeof(alone[i])) == 0, "2 slots, sample %d: shared = alone", i);
		r1_engine_stats_get(e, &st);
		ok(st.prefill_shared >= NP - 1, "2 slots: some prefill shared (%llu positions)",
		   (unsigned long long) st.prefill_shared);
		r1_engine_close(e);
	}

	/*
	 * A prompt of 200 positions, more than half of the 256 a slot's cache
	 * first holds: the copy must move 200 positions of the cache's type
	 * (f16 by default), no more (ASan: a copy sized in floats overran it).
	 */
	n_prompt = NP_LONG;
	if (ok(open_engine(&e, 512, 8) == 0, "engine for a 200-token prompt opens"))
	{
		run_alone(e, prompt, alone);
		ok(run_batch(e, prompt, 1, shared) == 0, "200-token shared batch runs");
		r1_engine_stats_get(e, &st);
		is_int(st.prefill_shared, (NS - 1) * (NP_LONG - 1), "200 tokens: four samples copied 199 positions each");
		for (int i = 0; i < NS; i++)
			ok(memcmp(shared[i], alone[i], sizeof(alone[i])) == 0, "200 tokens, sample %d: shared = alone", i);
		r1_engine_close(e);
	}
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
