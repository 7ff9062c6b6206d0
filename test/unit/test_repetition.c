/*
 * test_repetition.c - loop detection: the detector on synthetic sequences,
 * then the engine on a generated model whose greedy path is a 4-token cycle
 * (it stops with finish_reason "repetition"), with detection off, and with
 * ignore_eos; a model with a fork, whose sampled output depends on the
 * seed (r1_demo_model_write_forks).  test_forward.c checks that the golden greedy paths never
 * trigger it.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo_model.h"
#include "engine.h"
#include "repetition.h"
#include "tap.h"

/* the n at which the detector first fires on seq, or 0 */
static int
first_hit(const r1_repetition_opts *o, const int32_t *seq, int n, int *span)
{
	r1_repdet	d;
	r1_error	err;
	int			at = 0;

	*span = 0;
	if (r1_repdet_init(&d, o, &err) != 0)
		return -1;
	for (int i = 1; i <= n && !at; i++)
		if ((*span = r1_repdet_push(&d, seq, i)) > 0)
			at = i;
	r1_repdet_free(&d);
	return at;
}

static void
detector(void)
{
	int32_t    *seq = malloc(sizeof(int32_t) * 6000);
	r1_repetition_opts o;
	r1_error	err;
	uint32_t	x = 12345;
	int			span,
				at;

	/* period 3 from the start */
	for (int i = 0; i < 6000; i++)
		seq[i] = i % 3;
	o = (r1_repetition_opts) {8, 4, 12};
	at = first_hit(&o, seq, 6000, &span);
	is_int(at, 12, "period 3, 4 repeats, 12 tokens: fires at token 12");
	is_int(span, 3, "  with span 3");
	o.min_tokens = 30;
	is_int(first_hit(&o, seq, 6000, &span), 30, "min_tokens 30: fires at token 30");
	o = (r1_repetition_opts) {2, 4, 1};
	is_int(first_hit(&o, seq, 6000, &span), 0, "a period longer than max_span is not looked for");
	o = (r1_repetition_opts) {0, 4, 1};
	is_int(first_hit(&o, seq, 6000, &span), 0, "max_span 0: off");

	/* pseudo-random text never fires with the defaults */
	for (int i = 0; i < 6000; i++)
	{
		x = x * 1103515245u + 12345u;
		seq[i] = (int32_t) ((x >> 16) % 1000);
	}
	r1_repetition_defaults(&o);
	is_int(first_hit(&o, seq, 6000, &span), 0, "6000 pseudo-random tokens: no loop (defaults)");

	/* 100 tokens of text, then a loop of period 7 */
	for (int i = 100; i < 6000; i++)
		seq[i] = 2000 + (i - 100) % 7;
	at = first_hit(&o, seq, 6000, &span);
	ok(at >= 100 + R1_REPETITION_MIN_TOKENS && at <= 100 + R1_REPETITION_MIN_TOKENS + 7,
	   "text then a period-7 loop: fires after min_tokens of loop (at %d)", at);
	is_int(span, 7, "  with span 7");

	/* a long period: 300 distinct tokens repeated; 4 copies = 1200 tokens */
	for (int i = 0; i < 6000; i++)
		seq[i] = 5000 + i % 300;
	at = first_hit(&o, seq, 6000, &span);
	is_int(at, 1200, "period 300: fires after 4 copies (1200 tokens)");
	is_int(span, 300, "  with span 300");

	/* three copies are not enough, a fourth would be */
	for (int i = 0; i < 6000; i++)
		seq[i] = i < 900 ? 5000 + i % 300 : 9000 + i;
	is_int(first_hit(&o, seq, 6000, &span), 0, "three copies of a 300-token span: no loop");

	/* bounds */
	o = (r1_repetition_opts) {R1_REPETITION_SPAN_LIMIT + 1, 4, 256};
	ok(r1_repetition_validate(&o, &err) != 0, "max_span over the limit is refused");
	o = (r1_repetition_opts) {16, 1, 256};
	ok(r1_repetition_validate(&o, &err) != 0, "min_repeats 1 is refused");
	o = (r1_repetition_opts) {16, 2, 0};
	ok(r1_repetition_validate(&o, &err) != 0, "min_tokens 0 is refused");
	o = (r1_repetition_opts) {0, 0, 0};
	ok(r1_repetition_validate(&o, &err) == 0, "off needs no other values");
	free(seq);
}

/* one greedy run on the cycling model */
static void
run_cycle(r1_engine *e, int max_span, int ignore_eos, float temperature, const char *want_finish,
		  int want_tokens, const char *name)
{
	int32_t		prompt[2] = {3, 5};
	r1_request	rq;
	r1_completion c;
	r1_error	err;
	int			cycles = 1;

	memset(&rq, 0, sizeof(rq));
	rq.prompt_ids = prompt;
	rq.n_prompt = 2;
	r1_sampling_defaults(&rq.sampling);
	rq.sampling.temperature = temperature;
	rq.sampling.seed = 7;
	rq.max_tokens = 1000;
	rq.ignore_eos = ignore_eos;
	r1_repetition_defaults(&rq.repetition);
	rq.repetition.max_span = max_span;
	if (!ok(r1_engine_run(e, &rq, &c, &err) == 0, "%s: runs", name))
	{
		diag("%s", err.msg);
		return;
	}
	is_str(c.finish_reason, want_finish, "%s: finish_reason", name);
	is_int(c.completion_tokens, want_tokens, "%s: tokens", name);
	for (int i = 0; i < c.n_ids; i++)
		if (c.ids[i] != 6 + i % 4)
			cycles = 0;
	ok(cycles, "%s: the ids are the cycle 6 7 8 9", name);
	if (strcmp(want_finish, "repetition") == 0)
		is_int(c.repetition_span, 4, "%s: span 4", name);
	r1_completion_free(&c);
}

static void
engine_cycle(void)
{
	char		dir[] = "/tmp/r1-repetition-XXXXXX";
	/* 3 -> 5 -> 6 -> 7 -> 8 -> 9 -> 6: a 4-token cycle after the prompt 3 5 */
	int32_t		chain[] = {3, 5, 6, 7, 8, 9, 6};
	r1_engine_opts o;
	r1_engine  *e;
	r1_engine_stats st;
	r1_error	err;
	char		path[4096];

	if (!mkdtemp(dir) ||
		!ok(r1_demo_model_write(dir, chain, 7, 64, 0, 1, &err) == 0, "a model with a 4-token cycle"))
		return;
	r1_engine_opts_defaults(&o);
	o.model_dir = dir;
	o.device = "cpu";
	o.threads = 2;
	o.max_seqs = 4;
	if (ok(r1_engine_open(&e, &o, &err) == 0, "engine opens"))
	{
		run_cycle(e, R1_REPETITION_MAX_SPAN, 0, 0, "repetition", R1_REPETITION_MIN_TOKENS, "greedy, defaults");
		run_cycle(e, R1_REPETITION_MAX_SPAN, 0, 0.6f, "repetition", R1_REPETITION_MIN_TOKENS, "sampled, defaults");
		run_cycle(e, 0, 0, 0, "length", 1000, "detection off");
		run_cycle(e, R1_REPETITION_MAX_SPAN, 1, 0, "length", 1000, "ignore_eos");
		run_cycle(e, 3, 0, 0, "length", 1000, "max_span 3 < the period");
		r1_engine_stats_get(e, &st);
		is_int(st.repetitions, 2, "engine stats count two repetitions");
		r1_engine_close(e);
	}
	else
		diag("%s", err.msg);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	unlink(path);
	rmdir(dir);
}

/* a fork in the chain: the sampled branch depends on the seed, greedy takes the lowest id */
static void
engine_fork(void)
{
	char		dir[] = "/tmp/r1-fork-XXXXXX";
	int32_t		chain[] = {3, 5, 6, 7, 8, 1};
	int32_t		fork_at[] = {3},
				fork_id[] = {9};
	r1_engine_opts o;
	r1_engine  *e;
	r1_error	err;
	char		path[4096];
	int			seen7 = 0,
				seen9 = 0;

	if (!mkdtemp(dir))
		return;
	ok(r1_demo_model_write_forks(dir, chain, 6, 64, 0, 1, (int32_t[]) {6}, fork_id, 1, &err) != 0,
	   "a fork past the chain is refused");
	ok(r1_demo_model_write_forks(dir, chain, 6, 64, 0, 1, fork_at, (int32_t[]) {6}, 1, &err) != 0,
	   "a fork token in the chain is refused");
	if (!ok(r1_demo_model_write_forks(dir, chain, 6, 64, 0, 1, fork_at, fork_id, 1, &err) == 0,
			"a model with a fork: 6 -> 7 or 9, then 8"))
		return;
	r1_engine_opts_defaults(&o);
	o.model_dir = dir;
	o.device = "cpu";
	o.threads = 2;
	if (ok(r1_engine_open(&e, &o, &err) == 0, "fork engine opens"))
	{
		for (int seed = 0; seed < 16; seed++)
		{
			int32_t		prompt[2] = {3, 5};
			r1_request	rq;
			r1_completion c;

			memset(&rq, 0, sizeof(rq));
			rq.prompt_ids = prompt;
			rq.n_prompt = 2;
			r1_sampling_defaults(&rq.sampling);
			rq.sampling.temperature = seed == 15 ? 0 : 0.6f;
			rq.sampling.seed = (uint64_t) seed;
			rq.max_tokens = 10;
			if (r1_engine_run(e, &rq, &c, &err) != 0)
				continue;
			if (c.n_ids == 4 && c.ids[0] == 6 && c.ids[2] == 8 && c.ids[3] == 1 && seed < 15)
			{
				seen7 += c.ids[1] == 7;
				seen9 += c.ids[1] == 9;
			}
			if (seed == 15)
				ok(c.n_ids == 4 && c.ids[1] == 7, "greedy takes the lower id of the fork");
			r1_completion_free(&c);
		}
		ok(seen7 > 0 && seen9 > 0 && seen7 + seen9 == 15, "sampled: both branches (%d and %d of 15)", seen7, seen9);
		r1_engine_close(e);
	}
	snprintf(path, sizeof(path), "%s/config.json", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	unlink(path);
	rmdir(dir);
}

int
main(void)
{
	detector();
	engine_cycle();
	engine_fork();
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
