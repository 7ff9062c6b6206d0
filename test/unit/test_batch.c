/*
 * test_batch.c - reproducibility under batching and the thinking budget.
 *
 * 1. The CPU backend: a sequence's logits are bitwise the same alone and
 *    inside batches of every shape (decode tokens of other sequences, prompt
 *    chunks that push the batch past the BLAS threshold), with
 *    batch_invariant; small batches (under 8 tokens) are invariant always.
 * 2. The engine (qwen2-tiny): one seeded, sampled request (temperature 0.7)
 *    alone and together with 32 other requests of other prompts and lengths
 *    that join at different steps gives the same ids.
 * 3. max_think_tokens on the demo model, whose greedy output is known.
 */
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat.h"
#include "demo_model.h"
#include "cpu_features.h"
#include "engine.h"
#include "tap.h"

static const char *fixtures;

/* ---------- 1. backend logits ---------- */

static r1_model *
small_model(r1_dtype dt)
{
	r1_config	cfg;
	r1_model   *m;
	r1_error	err;

	/* widths that are not multiples of 16 exercise the scalar tails */
	memset(&cfg, 0, sizeof(cfg));
	cfg.vocab_size = 300;
	cfg.hidden_size = 104;
	cfg.intermediate_size = 200;
	cfg.n_layers = 2;
	cfg.n_heads = 6;
	cfg.n_kv_heads = 2;
	cfg.head_dim = 16;
	cfg.max_position = 256;
	cfg.rope_theta = 10000;
	cfg.rms_norm_eps = 1e-6f;
	cfg.bos_id = cfg.eos_id = -1;
	if (r1_model_random(&m, &cfg, dt, 11, &err) != 0)
	{
		diag("%s", err.msg);
		return NULL;
	}
	return m;
}

#define NSEQ 6
#define PLEN 12
#define STEPS 6

/*
 * Sequence 0 (slot 0): a 12-token prompt, then STEPS decode tokens.  Alone,
 * every batch has only it.  Batched, each step also carries the other
 * sequences: some decoding, some prefilling 9..20-token chunks.  Returns 1
 * when all logits rows of sequence 0 are bitwise equal.
 */
static int	use_cuda = 0;		/* compare_alone_batched on the CUDA backend */
static int	use_exact = 0;		/* the CPU backend's cpu_exact (float32 activations) */
static r1_dtype use_kv = R1_F32;	/* the CPU backend's KV cache type */

static int
compare_alone_batched(r1_model *m, int invariant, int big, double *maxdiff)
{
	r1_backend *be;
	r1_error	err;
	int			vocab = m->cfg.vocab_size;
	float	   *alone = malloc(sizeof(float) * vocab * (STEPS + 1));
	float	   *logits = malloc(sizeof(float) * vocab * NSEQ);
	int32_t		prompt[PLEN],
				toks[256];
	int			same = 1;

	*maxdiff = 0;
	for (int i = 0; i < PLEN; i++)
		prompt[i] = (i * 37 + 5) % vocab;
	if ((use_cuda ? r1_backend_cuda_create(&be, m, NSEQ, 200, 0.3, &err)
		 : r1_backend_cpu_create(&be, m, NSEQ, 200, 0, &err)) != 0)
	{
		diag("%s", err.msg);
		return 0;
	}
	be->batch_invariant = invariant;
	be->cpu_exact = use_exact;
	be->kv_dtype = use_kv;

	/* alone */
	for (int s = 0; s <= STEPS; s++)
	{
		int			slot = 0,
					pos = s == 0 ? 0 : PLEN + s - 1,
					n = s == 0 ? PLEN : 1;
		int32_t		tok = (s * 13 + 7) % vocab;
		r1_batch	b = {1, &slot, &pos, &n, s == 0 ? prompt : &tok, 0, NULL, NULL, 0};

		if (be->forward(be, &b, alone + (size_t) s * vocab, &err) != 0)
			diag("%s", err.msg);
	}
	be->release_slot(be, 0);

	/* batched: other sequences in slots 1..NSEQ-1 */
	{
		int			past[NSEQ] = {0};

		for (int s = 0; s <= STEPS; s++)
		{
			int			slot[NSEQ],
						pos[NSEQ],
						n[NSEQ],
						ns = 0,
						T = 0,
						row = 0;

			for (int k = 0; k < NSEQ; k++)
			{
				/* sequence 0 goes last at odd steps: its row must not matter either */
				int			q = s % 2 == 1 ? (k + 1) % NSEQ : k;
				int			take;

				if (q == 0)
					take = s == 0 ? PLEN : 1;
				else if (!big)
				{
					if (q > 3)
						continue;	/* decode tokens only: under 8 tokens in all */
					take = 1;
				}
				else
					take = (q + s) % 3 == 0 ? 9 + (q * 5 + s) % 12 : 1;
				if (q == 0)
					row = ns;
				slot[ns] = q;
				pos[ns] = q == 0 ? (s == 0 ? 0 : PLEN + s - 1) : past[q];
				n[ns] = take;
				for (int i = 0; i < take; i++)
					toks[T + i] = q == 0 ? (s == 0 ? prompt[i] : (s * 13 + 7) % vocab)
						: (q * 101 + past[q] + i * 7) % vocab;
				if (q > 0)
					past[q] += take;
				T += take;
				ns++;
			}
			{
				r1_batch	b = {ns, slot, pos, n, toks, 0, NULL, NULL, 0};

				if (big && T < 8)
					diag("batch of %d tokens does not reach the BLAS path", T);
				if (be->forward(be, &b, logits, &err) != 0)
				{
					diag("%s", err.msg);
					same = 0;
					break;
				}
				for (int v = 0; v < vocab; v++)
				{
					double		d = fabs((double) logits[(size_t) row * vocab + v] - alone[(size_t) s * vocab + v]);

					if (d > *maxdiff)
						*maxdiff = d;
				}
				if (memcmp(logits + (size_t) row * vocab, alone + (size_t) s * vocab, sizeof(float) * vocab) != 0)
					same = 0;
			}
		}
	}
	be->destroy(be);
	free(alone);
	free(logits);
	return same;
}

static void
check_backend(void)
{
	r1_dtype	dts[] = {R1_F32, R1_F16, R1_BF16};

	for (int k = 0; k < 3; k++)
	{
		r1_model   *m = small_model(dts[k]);
		double		d;
		int			same;

		if (!ok(m != NULL, "%s: random model", r1_dtype_name(dts[k])))
			continue;
		same = compare_alone_batched(m, 0, 0, &d);
		ok(same, "%s: small batches are invariant by default (max |diff| %g)", r1_dtype_name(dts[k]), d);
		same = compare_alone_batched(m, 1, 1, &d);
		ok(same, "%s: batch_invariant: logits bitwise equal alone and in batches of 8+ tokens (max |diff| %g)",
		   r1_dtype_name(dts[k]), d);
		same = compare_alone_batched(m, 0, 1, &d);
		diag("%s: without batch_invariant, BLAS batches differ by up to %g%s", r1_dtype_name(dts[k]), d,
			 same ? " (bitwise equal this time)" : "");
		if (dts[k] == R1_BF16)
		{
			/* above: the fast arithmetic (vdpbf16ps where present); here the float32 one */
			use_exact = 1;
			same = compare_alone_batched(m, 0, 0, &d);
			ok(same, "BF16, float32 activations: small batches are invariant by default (max |diff| %g)", d);
			same = compare_alone_batched(m, 1, 1, &d);
			ok(same, "BF16, float32 activations: batch_invariant: bitwise equal in batches of 8+ tokens (max |diff| %g)", d);
			use_exact = 0;
			/* 16-bit KV caches: each position converted alone, the same in every batch */
			for (int kv = 0; kv < 2; kv++)
			{
				use_kv = kv ? R1_BF16 : R1_F16;
				same = compare_alone_batched(m, 1, 1, &d);
				ok(same, "BF16, %s KV cache: batch_invariant: bitwise equal in batches of 8+ tokens (max |diff| %g)",
				   r1_dtype_name(use_kv), d);
			}
			use_kv = R1_F32;
		}
		r1_model_free(m);
	}
	/*
	 * The CUDA backend, where a GPU is usable (tools/gpu/gpu-check.sh unit): with
	 * batch_invariant, the fixed-order GEMM and attention split must give
	 * bitwise the same logits alone and in any batch.
	 */
	{
		r1_model   *m = small_model(R1_BF16);
		r1_backend *be;
		r1_error	err;

		if (m && r1_backend_cuda_create(&be, m, 1, 64, 0.1, &err) == 0)
		{
			double		d;
			int			same;

			be->destroy(be);
			use_cuda = 1;
			same = compare_alone_batched(m, 1, 1, &d);
			ok(same, "CUDA: batch_invariant: logits bitwise equal alone and in batches of 8+ tokens (max |diff| %g)", d);
			same = compare_alone_batched(m, 0, 1, &d);
			diag("CUDA: without batch_invariant (cuBLAS), batches differ by up to %g%s", d,
				 same ? " (bitwise equal this time)" : "");
			{
				/* a quantised model: r1k_qgemm (invariant in every mode) and the fixed attention split */
				char		path[4096];
				r1_model   *qm;

				snprintf(path, sizeof(path), "%s/qwen2-tiny-gguf/w256-q4_k_m.gguf", fixtures);
				if (ok(r1_model_load(&qm, path, &err) == 0, "CUDA: Q4_K_M fixture loads"))
				{
					same = compare_alone_batched(qm, 1, 1, &d);
					ok(same, "CUDA: Q4_K_M (r1k_qgemm), batch_invariant: logits bitwise equal alone and batched (max |diff| %g)", d);
					r1_model_free(qm);
				}
			}
			use_cuda = 0;
		}
		else
			diag("SKIP CUDA batch invariance: %s", m ? err.msg : "no model");
		r1_model_free(m);
	}
	/* quantised GGUF weights: the decode kernel over the blocks in every batch */
	{
		const char *files[] = {"qwen2-tiny-gguf/qwen2-tiny-q8_0.gguf", "qwen2-tiny-gguf/w256-q4_k_m.gguf",
		"qwen2-tiny-gguf/w256-q5_k.gguf", "qwen2-tiny-gguf/qwen2-tiny-q4_0.gguf", "qwen2-tiny-gguf/qwen2-tiny-q5_0.gguf"};

		for (int k = 0; k < 5; k++)
		{
			char		path[4096];
			r1_model   *m;
			r1_error	err;
			double		d;

			snprintf(path, sizeof(path), "%s/%s", fixtures, files[k]);
			if (!ok(r1_model_load(&m, path, &err) == 0 && m->quantized, "%s loads, quantised", files[k]))
			{
				diag("%s", err.msg);
				continue;
			}
			/* float32 activations (cpu_exact): the float block kernels */
			use_exact = 1;
			int			same = compare_alone_batched(m, 0, 0, &d);

			ok(same, "%s, float32 activations: small batches are invariant by default (max |diff| %g)", files[k], d);
			same = compare_alone_batched(m, 1, 1, &d);
			ok(same, "%s, float32 activations: batch_invariant: logits bitwise equal alone and in batches of 8+ tokens (max |diff| %g)",
			   files[k], d);
			/*
			 * 8-bit activations (the default, qdot.h on the processor's path):
			 * each token quantised alone, each output one kernel call, so
			 * even the prompt GEMM is invariant without the flag
			 */
			use_exact = 0;
			same = compare_alone_batched(m, 1, 1, &d);
			ok(same, "%s, 8-bit activations (%s): batch_invariant: logits bitwise equal alone and in batches of 8+ tokens (max |diff| %g)",
			   files[k], r1_cpu_path_name(r1_cpu()->path), d);
			same = compare_alone_batched(m, 0, 1, &d);
			if (r1_cpu()->amx_int8)

				/*
				 * but for AMX's prompt GEMM (qgemm.h): ggml's arithmetic,
				 * the same values to float rounding
				 */
				ok(d > 0 && d < 1e-4,
				   "%s, 8-bit activations, AMX: without the flag, prompts in batches of 8+ tokens agree to rounding (max |diff| %g)",
				   files[k], d);
			else
				ok(same, "%s, 8-bit activations: bitwise equal in batches of 8+ tokens without the flag too (max |diff| %g)",
				   files[k], d);
			r1_model_free(m);
		}
	}
}

/* ---------- 2. engine: a seeded sampled request alone and among 32 others ---------- */

#define NOTHERS 32
#define GEN 40

static int
run_target(r1_engine *e, const int32_t *prompt, int n, int32_t *out, int *n_out, int with_others)
{
	r1_error	err;
	int64_t		target = -1;
	int			submitted = 0,
				step = 0;
	int32_t		other[64];
	r1_completion c;

	*n_out = 0;
	if (!with_others)
	{
		r1_request	rq = {0};

		rq.prompt_ids = prompt;
		rq.n_prompt = n;
		r1_sampling_defaults(&rq.sampling);
		rq.sampling.temperature = 0.7f;
		rq.sampling.seed = 424242;
		rq.max_tokens = GEN;
		rq.ignore_eos = 1;
		if (r1_engine_submit(e, &rq, &target, &err) != 0)
			return diag("%s", err.msg), -1;
	}
	/* the others: 8 before the target, the rest join a few per step while it runs */
	for (;;)
	{
		while (with_others && submitted < NOTHERS + 1 && (submitted <= 8 || submitted < 9 + step * 3))
		{
			r1_request	rq = {0};

			if (submitted == 8)
			{
				rq.prompt_ids = prompt;
				rq.n_prompt = n;
				rq.sampling.seed = 424242;
			}
			else
			{
				int			len = 3 + (submitted * 7) % 40;

				for (int i = 0; i < len; i++)
					other[i] = (submitted * 31 + i * 17 + 3) % 512;
				rq.prompt_ids = other;
				rq.n_prompt = len;
				rq.sampling.seed = 1000 + submitted;
			}
			rq.sampling.temperature = 0.7f;
			rq.sampling.top_p = R1_DEFAULT_TOP_P;
			rq.max_tokens = submitted == 8 ? GEN : 5 + (submitted * 11) % 50;
			rq.ignore_eos = 1;
			if (r1_engine_submit(e, &rq, submitted == 8 ? &target : NULL, &err) != 0)
				return diag("%s", err.msg), -1;
			submitted++;
		}
		if (!r1_engine_busy(e))
			break;
		if (r1_engine_step(e, &err) != 0)
			return diag("%s", err.msg), -1;
		step++;
	}
	while (r1_engine_poll(e, &c))
	{
		if (c.id == target)
		{
			memcpy(out, c.ids, sizeof(int32_t) * c.n_ids);
			*n_out = c.n_ids;
		}
		r1_completion_free(&c);
	}
	return 0;
}

static void
check_engine(const char *device)
{
	char		dir[4096];
	r1_engine_opts o;
	r1_engine  *e;
	r1_error	err;
	int32_t		prompt[23],
				alone[GEN],
				batched[GEN];
	int			na,
				nb;

	snprintf(dir, sizeof(dir), "%s/qwen2-tiny", fixtures);
	for (int i = 0; i < 23; i++)
		prompt[i] = (i * 53 + 11) % 512;
	r1_engine_opts_defaults(&o);
	o.model_dir = dir;
	o.device = device;
	o.max_seqs = 33;
	o.prefill_chunk = 16;		/* prompts are spread over steps: chunks join decode batches */
	o.batch_invariant = 1;
	if (strcmp(device, "cuda") == 0 && r1_engine_open(&e, &o, &err) != 0)
	{
		diag("SKIP the engine on CUDA: %s", err.msg);
		return;
	}
	else if (strcmp(device, "cuda") != 0 &&
			 !ok(r1_engine_open(&e, &o, &err) == 0, "engine opens (qwen2-tiny, batch_invariant)"))
	{
		diag("%s", err.msg);
		return;
	}
	run_target(e, prompt, 23, alone, &na, 0);
	run_target(e, prompt, 23, batched, &nb, 1);
	is_int(na, GEN, "%s alone: %d tokens", device, GEN);
	is_int(nb, GEN, "%s among 32 others: %d tokens", device, GEN);
	ok(na == nb && memcmp(alone, batched, sizeof(int32_t) * na) == 0,
	   "%s: seeded sampled request: the same ids alone and among 32 other requests", device);
	{
		int			distinct = 0;

		for (int i = 1; i < na; i++)
			distinct += alone[i] != alone[i - 1];
		ok(distinct > GEN / 4, "the trace is sampled, not a constant (%d changes)", distinct);
	}
	r1_engine_close(e);
}

/* ---------- 2b. a KV cache too small for everyone: wait, preempt, recompute ---------- */

#define NKV 8
#define KV_GEN 300

/* run NKV seeded sampled requests through e; out[i] gets request i's ids */
static int
run_kv_set(r1_engine *e, int32_t out[NKV][KV_GEN], int n_out[NKV], char errors[NKV][R1_ERROR_LEN])
{
	r1_error	err;
	r1_completion c;

	for (int i = 0; i < NKV; i++)
	{
		r1_request	rq = {0};
		int32_t		prompt[24];
		int			len = 8 + (i * 5) % 17;

		for (int j = 0; j < len; j++)
			prompt[j] = (i * 37 + j * 13 + 5) % 512;
		rq.prompt_ids = prompt;
		rq.n_prompt = len;
		r1_sampling_defaults(&rq.sampling);
		rq.sampling.temperature = 0.8f;
		rq.sampling.seed = 7000 + i;
		rq.max_tokens = KV_GEN - 60 + (i * 13) % 60;
		rq.ignore_eos = 1;
		rq.user = (void *) (intptr_t) i;
		n_out[i] = -1;
		errors[i][0] = '\0';
		if (r1_engine_submit(e, &rq, NULL, &err) != 0)
			return diag("%s", err.msg), -1;
	}
	while (r1_engine_busy(e))
		if (r1_engine_step(e, &err) != 0)
			return diag("step: %s", err.msg), -1;
	while (r1_engine_poll(e, &c))
	{
		int			i = (int) (intptr_t) c.user;

		if (c.n_ids > 0)
			memcpy(out[i], c.ids, sizeof(int32_t) * c.n_ids);
		n_out[i] = c.n_ids;
		snprintf(errors[i], R1_ERROR_LEN, "%s", c.error);
		r1_completion_free(&c);
	}
	return 0;
}

static void
check_kv_pressure(void)
{
	char		dir[4096];
	r1_engine_opts o;
	r1_engine  *e;
	r1_error	err;
	r1_engine_stats st;
	static int32_t ref[NKV][KV_GEN],
				got[NKV][KV_GEN];
	int			n_ref[NKV],
				n_got[NKV],
				same = 0;
	static char errs[NKV][R1_ERROR_LEN];

	snprintf(dir, sizeof(dir), "%s/qwen2-tiny", fixtures);
	r1_engine_opts_defaults(&o);
	o.model_dir = dir;
	o.device = "cpu";
	o.max_seqs = NKV;
	o.prefill_chunk = 64;
	o.batch_invariant = 1;
	o.kv_cache_dtype = R1_F32;	/* the sizes below count 4-byte keys and values */
	/* the reference: no limit */
	if (!ok(r1_engine_open(&e, &o, &err) == 0, "kv: reference engine opens"))
		return diag("%s", err.msg);
	run_kv_set(e, ref, n_ref, errs);
	r1_engine_close(e);
	/*
	 * qwen2-tiny: 2 layers x 2 KV heads x 16 x (K, V) x 4 bytes = 512 bytes a
	 * position; a slot grows 256, 512 positions: 128 KB, 256 KB.  Room for 2
	 * slots at their first size, 8 sequences that each grow to 512.
	 */
	o.kv_memory_bytes = 5 * 64 * 1024;
	if (!ok(r1_engine_open(&e, &o, &err) == 0, "kv: engine with a 320 KB KV cache opens"))
		return diag("%s", err.msg);
	ok(run_kv_set(e, got, n_got, errs) == 0, "kv: every step runs (a full cache fails no forward)");
	r1_engine_stats_get(e, &st);
	for (int i = 0; i < NKV; i++)
	{
		if (n_got[i] == n_ref[i] && n_ref[i] > 0 && memcmp(got[i], ref[i], sizeof(int32_t) * n_ref[i]) == 0)
			same++;
		else
			diag("  request %d: %d ids (%d unlimited) %s", i, n_got[i], n_ref[i], errs[i]);
	}
	is_int(same, NKV, "kv: all %d sampled traces equal those of an unlimited cache", NKV);
	ok(st.preemptions > 0, "kv: sequences were preempted and recomputed (%llu times)",
	   (unsigned long long) st.preemptions);
	ok(st.memory_used <= o.kv_memory_bytes + 4u * 1024 * 1024, "kv: memory stayed near the limit");
	r1_engine_close(e);
	/* a cache smaller than one sequence's first 256 positions: a clear error, nothing else breaks */
	o.kv_memory_bytes = 64 * 1024;
	if (!ok(r1_engine_open(&e, &o, &err) == 0, "kv: engine with a 64 KB KV cache opens"))
		return diag("%s", err.msg);
	ok(run_kv_set(e, got, n_got, errs) == 0, "kv: steps run");
	{
		int			failed = 0;

		for (int i = 0; i < NKV; i++)
			failed += strstr(errs[i], "KV cache cannot hold this sequence") && strstr(errs[i], "--kv-memory");
		is_int(failed, NKV, "kv: each request fails (at 128 positions) with a message naming the engine option (--kv-memory)");
	}
	r1_engine_close(e);
	/*
	 * 300 positions of f32 (150 KB): a slot grows from 256 to 300, not to
	 * 512, so a sequence that fits alone finishes (2026-12-02: every one
	 * failed); the two that need 301 and 302 positions fail with the message
	 */
	o.kv_memory_bytes = 300 * 512;
	if (!ok(r1_engine_open(&e, &o, &err) == 0, "kv: engine with a 300-position KV cache opens"))
		return diag("%s", err.msg);
	ok(run_kv_set(e, got, n_got, errs) == 0, "kv: steps run");
	{
		int			right = 0;

		for (int i = 0; i < NKV; i++)
		{
			int			need = 8 + (i * 5) % 17 + KV_GEN - 60 + (i * 13) % 60;

			if (need <= 300 ? n_got[i] == n_ref[i] && memcmp(got[i], ref[i], sizeof(int32_t) * n_ref[i]) == 0
				: strstr(errs[i], "KV cache cannot hold this sequence") != NULL)
				right++;
			else
				diag("  request %d (%d positions): %d ids, %s", i, need, n_got[i], errs[i]);
		}
		is_int(right, NKV, "kv: sequences that fit in 300 positions finish as unlimited; longer ones fail clearly");
	}
	r1_engine_close(e);
	/*
	 * f16: 256 bytes a position, so 64 KB holds exactly one slot's first 256
	 * positions and never its next 256.  The sole holder that cannot grow
	 * fails; before, it was preempted for another sequence that then hit the
	 * same wall, and the two took turns forever.
	 */
	o.kv_cache_dtype = R1_F16;
	o.kv_memory_bytes = 64 * 1024;
	if (!ok(r1_engine_open(&e, &o, &err) == 0, "kv: f16 engine with a 64 KB KV cache (one first slot exactly) opens"))
		return diag("%s", err.msg);
	ok(run_kv_set(e, got, n_got, errs) == 0, "kv: steps run and end (no preemption ping-pong)");
	{
		int			clear = 0;

		for (int i = 0; i < NKV; i++)
		{
			int			c = n_ref[i] <= 256 - 1 ||
				(strstr(errs[i], "KV cache cannot hold this sequence") && strstr(errs[i], "--kv-memory"));

			if (!c)
				diag("  request %d: %d ids (%d unlimited) %s", i, n_got[i], n_ref[i], errs[i]);
			clear += c;
		}
		is_int(clear, NKV, "kv: a request longer than the cache fails with the message; shorter ones finish");
	}
	r1_engine_close(e);
}

/* ---------- 3. max_think_tokens ---------- */

#define DEMO_TEXT "Okay, six times seven equals forty-two.\n</think>\n\nThe answer is $\\boxed{42}$."

static int
write_demo(char *dir)
{
	char		tokdir[4096],
				src[4096],
				dst[4096];
	r1_tokenizer *tok;
	r1_error	err;
	int32_t    *ids,
			   *chain;
	size_t		n;

	snprintf(tokdir, sizeof(tokdir), "%s/tokenizer", fixtures);
	if (r1_tokenizer_load(&tok, tokdir, &err) != 0 ||
		r1_tokenizer_encode(tok, DEMO_TEXT, strlen(DEMO_TEXT), &ids, &n, &err) != 0)
		return diag("%s", err.msg), -1;
	chain = malloc(sizeof(int32_t) * (n + 2));
	chain[0] = r1_tokenizer_token_id(tok, "\xc4\x8a");
	memcpy(chain + 1, ids, sizeof(int32_t) * n);
	chain[n + 1] = r1_tokenizer_eos_id(tok);
	if (r1_demo_model_write(dir, chain, (int) n + 2, 151936, r1_tokenizer_bos_id(tok),
							r1_tokenizer_eos_id(tok), &err) != 0)
		return diag("%s", err.msg), -1;
	for (int k = 0; k < 2; k++)
	{
		const char *name = k ? "tokenizer_config.json" : "tokenizer.json";
		char	   *buf;
		size_t		len;
		FILE	   *f;

		snprintf(src, sizeof(src), "%s/%s", tokdir, name);
		snprintf(dst, sizeof(dst), "%s/%s", dir, name);
		if (r1_read_file(src, &buf, &len, &err) != 0)
			return -1;
		f = fopen(dst, "wb");
		fwrite(buf, 1, len, f);
		fclose(f);
		free(buf);
	}
	free(chain);
	free(ids);
	r1_tokenizer_free(tok);
	return 0;
}

static int
think_run(r1_engine *e, int max_think, int max_tokens, r1_completion *c)
{
	r1_request	rq = {0};
	r1_error	err;
	int32_t    *ids;
	size_t		n;
	int			rc;

	if (r1_engine_encode_prompt(e, NULL, "What is 6*7?", 0, &ids, &n, &err) != 0)
		return diag("%s", err.msg), -1;
	rq.prompt_ids = ids;
	rq.n_prompt = n;
	r1_sampling_defaults(&rq.sampling);
	rq.sampling.temperature = 0;
	rq.max_tokens = max_tokens;
	rq.max_think_tokens = max_think;
	rc = r1_engine_run(e, &rq, c, &err);
	if (rc != 0)
		diag("%s", err.msg);
	free(ids);
	return rc;
}

static void
check_think_budget(void)
{
	char		dir[] = "/tmp/r1-think-XXXXXX";
	r1_engine_opts o;
	r1_engine  *e;
	r1_error	err;
	r1_completion c;

	if (!mkdtemp(dir) || write_demo(dir) != 0)
	{
		ok(0, "demo model written");
		return;
	}
	r1_engine_opts_defaults(&o);
	o.model_dir = dir;
	o.device = "cpu";
	o.max_ctx = 256;
	if (!ok(r1_engine_open(&e, &o, &err) == 0, "demo engine opens"))
	{
		diag("%s", err.msg);
		return;
	}
	if (think_run(e, 0, 100, &c) == 0)
	{
		is_str(c.think, "Okay, six times seven equals forty-two.", "no budget: the whole think trace");
		is_str(c.finish_reason, "stop", "no budget: finish_reason stop");
		is_int(c.think_budget_hit, 0, "no budget: not hit");
		r1_completion_free(&c);
	}
	if (think_run(e, 3, 100, &c) == 0)
	{
		is_str(c.think, "Okay, six", "budget 3: think cut after 3 tokens");
		is_str(c.answer, "The answer is $\\boxed{42}$.", "budget 3: the model still answers");
		is_str(c.boxed, "42", "budget 3: boxed");
		is_str(c.finish_reason, "think_budget", "budget 3: finish_reason think_budget");
		is_int(c.think_tokens, 4, "budget 3: think_tokens counts the forced </think>");
		is_int(c.think_budget_hit, 1, "budget 3: hit");
		r1_completion_free(&c);
	}
	if (think_run(e, 1000, 100, &c) == 0)
	{
		is_str(c.finish_reason, "stop", "budget larger than the trace: stop");
		is_int(c.think_budget_hit, 0, "budget larger than the trace: not hit");
		r1_completion_free(&c);
	}
	if (think_run(e, 2, 5, &c) == 0)
	{
		is_str(c.finish_reason, "length", "budget hit, then max_tokens: length wins");
		is_int(c.think_budget_hit, 1, "budget hit, then max_tokens: hit");
		is_int(c.completion_tokens, 5, "5 tokens");
		r1_completion_free(&c);
	}
	{
		r1_request	rq = {0};
		int32_t		id = 5;

		rq.prompt_ids = &id;
		rq.n_prompt = 1;
		r1_sampling_defaults(&rq.sampling);
		rq.max_tokens = 4;
		rq.max_think_tokens = -1;
		ok(r1_engine_submit(e, &rq, NULL, &err) != 0 && strstr(err.msg, "max_think_tokens"),
		   "negative max_think_tokens is refused: %s", err.msg);
	}
	r1_engine_close(e);
	{
		const char *names[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
		char		p[4200];

		for (int i = 0; i < 4; i++)
		{
			snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
			unlink(p);
		}
		rmdir(dir);
	}
}

int
main(void)
{
	fixtures = getenv("R1_FIXTURES") ? getenv("R1_FIXTURES") : "test/fixtures";
	check_backend();
	check_engine("cpu");
	check_engine("cuda");
	check_kv_pressure();
	check_think_budget();
	return done_testing();
}
