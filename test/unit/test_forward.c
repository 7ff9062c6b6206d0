/*
 * test_forward.c - the CPU forward pass against float64 references from
 * Hugging Face transformers (test/fixtures/qwen2-tiny), for the float32 and
 * bfloat16 weight files: logits at every prompt position within 1e-4 relative
 * (max |diff| / max |ref|), every greedy id, the logits along the greedy path;
 * then the same greedy paths through the scheduler, alone and all four at
 * once with chunked prefill (continuous batching must not change results).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "cpu_features.h"
#include "tap.h"

#define NCASES 4
#define NGREEDY 24
#define TOL 1e-4
#define FAST_TOL 2e-2			/* the fixtures' README for bfloat16 arithmetic */
#define KV_F16_TOL 2e-3			/* float32 arithmetic over an f16 KV cache */

static const char *fixtures;

static double
rel_err(const float *got, const float *ref, size_t n)
{
	double		maxdiff = 0,
				maxref = 0;

	for (size_t i = 0; i < n; i++)
	{
		double		d = fabs((double) got[i] - ref[i]);

		if (d > maxdiff || isnan(d))
			maxdiff = isnan(d) ? INFINITY : d;
		if (fabs(ref[i]) > maxref)
			maxref = fabs(ref[i]);
	}
	return maxdiff / maxref;
}

typedef struct golden_case
{
	int32_t		ids[64];
	int			n;
	int32_t		greedy[NGREEDY];
	const float *logits;		/* [n, vocab] */
	const float *greedy_logits; /* [NGREEDY, vocab] */
} golden_case;

static int
load_cases(r1_safetensors *st, const char *path, golden_case *cases)
{
	r1_error	err;

	if (r1_st_open(st, path, &err) != 0)
	{
		diag("%s", err.msg);
		return -1;
	}
	for (int k = 0; k < NCASES; k++)
	{
		char		name[64];
		const r1_tensor *t;

		snprintf(name, sizeof(name), "case%d.input_ids", k);
		t = r1_st_find(st, name);
		if (!t || t->dtype != R1_I64 || t->shape[0] > 64)
			return -1;
		cases[k].n = (int) t->shape[0];
		for (int i = 0; i < cases[k].n; i++)
			cases[k].ids[i] = (int32_t) ((const int64_t *) t->data)[i];
		snprintf(name, sizeof(name), "case%d.greedy_ids", k);
		t = r1_st_find(st, name);
		if (!t || t->dtype != R1_I64 || t->shape[0] != NGREEDY)
			return -1;
		for (int i = 0; i < NGREEDY; i++)
			cases[k].greedy[i] = (int32_t) ((const int64_t *) t->data)[i];
		snprintf(name, sizeof(name), "case%d.logits", k);
		t = r1_st_find(st, name);
		if (!t || t->dtype != R1_F32)
			return -1;
		cases[k].logits = t->data;
		snprintf(name, sizeof(name), "case%d.greedy_logits", k);
		t = r1_st_find(st, name);
		if (!t || t->dtype != R1_F32)
			return -1;
		cases[k].greedy_logits = t->data;
	}
	return 0;
}

/*
 * exact: the reference arithmetic (float32 activations) at TOL; otherwise the
 * default fast one (bf16 weights meet bf16 activations where the processor
 * has vdpbf16ps) at the fixtures' bf16 tolerance, greedy ids still required
 * (the golden margins are far above its error here).
 */
static void
check_backend(const char *label, const r1_model *m, golden_case *cases, int exact, r1_dtype kv, double tol)
{
	r1_backend *be;
	r1_error	err;
	int			vocab = m->cfg.vocab_size;
	float	   *logits = malloc(sizeof(float) * 64 * vocab);

	if (!ok(r1_backend_cpu_create(&be, m, 2, 128, 0, &err) == 0, "%s: CPU backend", label))
	{
		diag("%s", err.msg);
		return;
	}
	be->cpu_exact = exact;
	be->kv_dtype = kv;
	for (int k = 0; k < NCASES; k++)
	{
		golden_case *c = &cases[k];
		int			slot = 1,
					pos = 0,
					n = c->n;
		r1_batch	b = {1, &slot, &pos, &n, c->ids, 1, NULL, NULL, 0};
		double		worst = 0;
		int			path_ok = 1;

		ok(be->forward(be, &b, logits, &err) == 0, "%s case %d: prompt forward", label, k);
		{
			double		e = rel_err(logits, c->logits, (size_t) n * vocab);

			if (!ok(e <= tol, "%s case %d: prompt logits (T=%d) rel err %.2e", label, k, n, e))
				diag("  tolerance %.0e", tol);
		}
		/* greedy path: feed the golden ids one at a time */
		{
			int32_t		next = r1_argmax(logits + (size_t) (n - 1) * vocab, vocab);

			for (int i = 0; i < NGREEDY; i++)
			{
				double		e;

				if (i > 0)
				{
					int32_t		tok = c->greedy[i - 1];
					int			one = 1,
								p = c->n + i - 1;
					r1_batch	d = {1, &slot, &p, &one, &tok, 0, NULL, NULL, 0};

					if (be->forward(be, &d, logits, &err) != 0)
					{
						path_ok = 0;
						break;
					}
					next = r1_argmax(logits, vocab);
					e = rel_err(logits, c->greedy_logits + (size_t) i * vocab, vocab);
					if (e > worst)
						worst = e;
				}
				if (next != c->greedy[i])
				{
					diag("  step %d: got %d, want %d", i, next, c->greedy[i]);
					path_ok = 0;
					break;
				}
			}
		}
		ok(path_ok, "%s case %d: all %d greedy ids", label, k, NGREEDY);
		ok(worst <= tol, "%s case %d: logits along the greedy path rel err %.2e", label, k, worst);
		be->release_slot(be, slot);
	}
	be->destroy(be);
	free(logits);
}

static void
check_engine(const char *label, const char *dir, golden_case *cases)
{
	r1_engine_opts o;
	r1_engine  *e;
	r1_error	err;
	int64_t		ids[NCASES];
	int			good[NCASES] = {0};

	r1_engine_opts_defaults(&o);
	o.model_dir = dir;
	o.device = "cpu";
	o.max_seqs = 3;				/* fewer slots than requests: the fourth waits */
	o.prefill_chunk = 5;		/* the 64-token prompt is prefilled over many steps */
	if (!ok(r1_engine_open(&e, &o, &err) == 0, "%s: engine opens", label))
	{
		diag("%s", err.msg);
		return;
	}
	/* one at a time */
	for (int k = 0; k < NCASES; k++)
	{
		r1_request	rq = {0};
		r1_completion c;
		int			same;

		rq.prompt_ids = cases[k].ids;
		rq.n_prompt = cases[k].n;
		r1_sampling_defaults(&rq.sampling);
		rq.sampling.temperature = 0;
		rq.max_tokens = NGREEDY;
		rq.ignore_eos = 1;
		if (!ok(r1_engine_run(e, &rq, &c, &err) == 0, "%s case %d: run", label, k))
			continue;
		same = c.n_ids == NGREEDY && memcmp(c.ids, cases[k].greedy, sizeof(int32_t) * NGREEDY) == 0;
		ok(same, "%s case %d: scheduler greedy ids", label, k);
		is_str(c.finish_reason, "length", "%s case %d: finish_reason length", label, k);
		r1_completion_free(&c);
	}
	/* all at once, continuous batching with chunked prefill */
	for (int k = 0; k < NCASES; k++)
	{
		r1_request	rq = {0};

		rq.prompt_ids = cases[k].ids;
		rq.n_prompt = cases[k].n;
		r1_sampling_defaults(&rq.sampling);
		rq.sampling.temperature = 0;
		rq.max_tokens = NGREEDY;
		rq.ignore_eos = 1;
		if (r1_engine_submit(e, &rq, &ids[k], &err) != 0)
			diag("%s", err.msg);
	}
	while (r1_engine_busy(e))
		if (r1_engine_step(e, &err) != 0)
		{
			diag("%s", err.msg);
			break;
		}
	{
		r1_completion c;

		while (r1_engine_poll(e, &c))
		{
			for (int k = 0; k < NCASES; k++)
				if (c.id == ids[k])
					good[k] = c.n_ids == NGREEDY &&
						memcmp(c.ids, cases[k].greedy, sizeof(int32_t) * NGREEDY) == 0;
			r1_completion_free(&c);
		}
	}
	for (int k = 0; k < NCASES; k++)
		ok(good[k], "%s case %d: same greedy ids when batched with the others", label, k);
	r1_engine_close(e);
}

static void
run_file(const char *label, const char *weights, const char *golden)
{
	char		dir[] = "/tmp/r1-forward-XXXXXX";
	char		src[4096],
				dst[4096];
	r1_model   *m;
	r1_error	err;
	r1_safetensors gs;
	golden_case cases[NCASES];

	if (!mkdtemp(dir))
		return;
	/* a checkpoint directory with this weight file as model.safetensors */
	snprintf(src, sizeof(src), "%s/qwen2-tiny/config.json", fixtures);
	snprintf(dst, sizeof(dst), "%s/config.json", dir);
	if (src[0] != '/')
	{
		char		cwd[2048];

		if (getcwd(cwd, sizeof(cwd)))
		{
			char		abs[4096];

			snprintf(abs, sizeof(abs), "%.2000s/%.2000s", cwd, src);
			symlink(abs, dst);
			snprintf(abs, sizeof(abs), "%.2000s/%.1000s/qwen2-tiny/%.500s", cwd, fixtures, weights);
			snprintf(dst, sizeof(dst), "%s/model.safetensors", dir);
			symlink(abs, dst);
		}
	}
	else
	{
		symlink(src, dst);
		snprintf(src, sizeof(src), "%s/qwen2-tiny/%s", fixtures, weights);
		snprintf(dst, sizeof(dst), "%s/model.safetensors", dir);
		symlink(src, dst);
	}
	snprintf(src, sizeof(src), "%s/qwen2-tiny/%s", fixtures, golden);
	if (!ok(load_cases(&gs, src, cases) == 0, "%s: golden file %s", label, golden))
		return;
	/* loop detection (on by default in SQL) never fires on a golden greedy path */
	for (int k = 0; k < NCASES; k++)
	{
		r1_repetition_opts ro;
		r1_repdet	d;
		int			hit = 0;

		r1_repetition_defaults(&ro);
		if (r1_repdet_init(&d, &ro, &err) != 0)
			continue;
		for (int i = 1; i <= NGREEDY; i++)
			hit |= r1_repdet_push(&d, cases[k].greedy, i);
		ok(!hit, "%s case %d: the greedy path is not a loop to the detector", label, k);
		r1_repdet_free(&d);
	}
	if (ok(r1_model_load(&m, dir, &err) == 0, "%s: model loads", label))
	{
		char		fl[64];

		check_backend(label, m, cases, 1, R1_F32, TOL);
		snprintf(fl, sizeof(fl), "%s [fast: %s]", label, m->dtype == R1_BF16 && r1_cpu()->avx512_bf16 ?
				 "bf16 activations, vdpbf16ps" : "float32");
		check_backend(fl, m, cases, 0, R1_F32, FAST_TOL);
		/* 16-bit KV caches: f16 rounds keys and values to 11 bits, bf16 to 8 */
		snprintf(fl, sizeof(fl), "%s [kv f16]", label);
		check_backend(fl, m, cases, 1, R1_F16, KV_F16_TOL);
		snprintf(fl, sizeof(fl), "%s [kv bf16]", label);
		check_backend(fl, m, cases, 1, R1_BF16, FAST_TOL);
		r1_model_free(m);
	}
	else
		diag("%s", err.msg);
	check_engine(label, dir, cases);
	r1_st_close(&gs);
	snprintf(dst, sizeof(dst), "%s/config.json", dir);
	unlink(dst);
	snprintf(dst, sizeof(dst), "%s/model.safetensors", dir);
	unlink(dst);
	rmdir(dir);
}

/* a small random-weights shape: 2 layers, 6 heads of 16 over 2 KV heads, hidden wide */
static void
small_config(r1_config *cfg, int hidden)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->vocab_size = 300;
	cfg->hidden_size = hidden;
	cfg->intermediate_size = 200;
	cfg->n_layers = 2;
	cfg->n_heads = 6;
	cfg->n_kv_heads = 2;
	cfg->head_dim = 16;
	cfg->max_position = 256;
	cfg->rope_theta = 10000;
	cfg->rms_norm_eps = 1e-6f;
	cfg->bos_id = cfg->eos_id = -1;
}

/*
 * The two ways through a linear layer (BLAS over widened rows for prompts,
 * the streaming dot product for decode) must compute the same function for
 * every weight dtype: prefill 20 tokens at once, then one at a time, and
 * compare the logits of every position.
 */
static void
check_paths(r1_dtype dt)
{
	r1_config	cfg;
	r1_model   *m;
	r1_backend *be;
	r1_error	err;
	int32_t		toks[20];
	float	   *all,
			   *one;
	double		worst = 0;
	int			vocab;

	small_config(&cfg, 96);
	if (!ok(r1_model_random(&m, &cfg, dt, 7, &err) == 0, "%s: random model", r1_dtype_name(dt)))
	{
		diag("%s", err.msg);
		return;
	}
	vocab = cfg.vocab_size;
	for (int i = 0; i < 20; i++)
		toks[i] = (i * 37 + 11) % vocab;
	all = malloc(sizeof(float) * 20 * vocab);
	one = malloc(sizeof(float) * vocab);
	if (r1_backend_cpu_create(&be, m, 2, 64, 0, &err) == 0)
	{
		int			slot = 0,
					pos = 0,
					n = 20;
		r1_batch	b = {1, &slot, &pos, &n, toks, 1, NULL, NULL, 0};

		ok(be->forward(be, &b, all, &err) == 0, "%s: prefill of 20 tokens", r1_dtype_name(dt));
		for (int t = 0; t < 20; t++)
		{
			int			s1 = 1,
						p = t,
						n1 = 1;
			r1_batch	d = {1, &s1, &p, &n1, &toks[t], 0, NULL, NULL, 0};
			double		e;

			if (be->forward(be, &d, one, &err) != 0)
				break;
			e = rel_err(one, all + (size_t) t * vocab, vocab);
			if (e > worst)
				worst = e;
		}
		ok(worst < 1e-4, "%s: prefill (BLAS) and decode (dot) agree, rel err %.2e", r1_dtype_name(dt), worst);
		/* 5 tokens at once take the 4-token dot kernel plus one single */
		{
			int			s2 = 1,
						p0 = 0,
						n5 = 5;
			r1_batch	five = {1, &s2, &p0, &n5, toks, 1, NULL, NULL, 0};
			float	   *got = malloc(sizeof(float) * 5 * vocab);

			double		e5 = INFINITY;

			be->release_slot(be, 1);
			if (be->forward(be, &five, got, &err) == 0)
				e5 = rel_err(got, all, (size_t) 5 * vocab);
			ok(e5 < 1e-4, "%s: a 5-token batch (4-token dot kernel) agrees, rel err %.2e",
			   r1_dtype_name(dt), e5);
			free(got);
		}
		be->destroy(be);
	}
	free(all);
	free(one);
	r1_model_free(m);
}

/*
 * Two backends on one model, 1 thread and then 2: the first still runs on
 * its one thread (its per-thread buffers hold one slice), giving the same
 * logits as before the second existed.  exact: the widening prompt path
 * (bf16), else the fast one (the prompt GEMM's unpacked rows).
 */
static void
check_two_backends(const char *label, r1_model *m, int exact)
{
	r1_backend *a,
			   *b;
	r1_error	err;
	int			vocab = m->cfg.vocab_size;
	int32_t		toks[16];
	float	   *before = malloc(sizeof(float) * vocab),
			   *after = malloc(sizeof(float) * vocab);
	int			rc = -1;

	for (int i = 0; i < 16; i++)
		toks[i] = (i * 37 + 11) % vocab;
	if (r1_backend_cpu_create(&a, m, 2, 64, 1, &err) != 0)
	{
		ok(0, "%s: 1-thread backend: %s", label, err.msg);
		goto out;
	}
	a->cpu_exact = exact;
	{
		int			s0 = 0,
					s1 = 1,
					pos = 0,
					n = 16;
		r1_batch	b0 = {1, &s0, &pos, &n, toks, 0, NULL, NULL, 0};
		r1_batch	b1 = {1, &s1, &pos, &n, toks, 0, NULL, NULL, 0};

		if (a->forward(a, &b0, before, &err) == 0 && r1_backend_cpu_create(&b, m, 1, 64, 2, &err) == 0)
		{
			rc = a->forward(a, &b1, after, &err);
			b->destroy(b);
		}
	}
	ok(rc == 0 && memcmp(before, after, sizeof(float) * vocab) == 0,
	   "%s: a 1-thread backend after a 2-thread one was created: 16 tokens, the same logits", label);
	a->destroy(a);
out:
	free(before);
	free(after);
}

int
main(void)
{
	check_paths(R1_F32);
	check_paths(R1_F16);
	check_paths(R1_BF16);
	fixtures = getenv("R1_FIXTURES") ? getenv("R1_FIXTURES") : "test/fixtures";
	run_file("f32", "model.safetensors", "golden.safetensors");
	run_file("bf16", "model-bf16.safetensors", "golden-bf16.safetensors");
	{
		r1_model   *m;
		r1_error	err;
		char		path[4096];

		r1_config	cfg;

		small_config(&cfg, 104);
		if (ok(r1_model_random(&m, &cfg, R1_BF16, 11, &err) == 0, "random bf16 model"))
		{
			check_two_backends("bf16 exact", m, 1);
			r1_model_free(m);
		}
		snprintf(path, sizeof(path), "%s/qwen2-tiny-gguf/qwen2-tiny-q8_0.gguf", fixtures);
		if (ok(r1_model_load(&m, path, &err) == 0, "qwen2-tiny Q8_0 GGUF loads"))
		{
			check_two_backends("qwen2-tiny Q8_0 fast", m, 0);
			r1_model_free(m);
		}
	}
	return done_testing();
}
