/*
 * backend_cuda.c - the Qwen2 / Llama forward pass on one NVIDIA GPU (backend.h).
 *
 * Compiled to something only with R1_WITH_CUDA (kernels/cuda.mk defines it
 * when nvcc is found); otherwise backend.c's stub says "built without CUDA".
 * Nothing here runs at load time: the first CUDA call is in
 * r1_backend_cuda_create(), so a process may link this and still fork before
 * touching the GPU (see ../shared/docs/DESIGN.md, "Never call CUDA before a fork").  The nvcc-generated module registration
 * of kernels/r1_kernels.cu only records the fat binary; it does not
 * initialise the driver.
 *
 * Data on the GPU
 *   weights   bf16, converted at upload from F32/F16/BF16 (pinned staging
 *             buffers, two chunks in flight); q/k/v fused into one [qd+2kvd, H]
 *             matrix with one f32 bias, gate/up fused into [2*inter, H];
 *             RMSNorm weights f32; tied lm_head shares the embedding copy.
 *             A quantised (GGUF) model keeps every matrix in its block format
 *             (Q8_0/Q4_K/Q5_K/Q6_K, copied as stored; other matrices bf16),
 *             unfused: decode steps of 1-4 tokens run gemv.cu's per-type
 *             kernels, other batches r1k_qgemm, which decodes the blocks in
 *             registers (quant_blocks.h); CUDA cores for every batch size.
 *   KV cache  bf16, paged: blocks of R1_KV_BLOCK positions from one pool sized
 *             at creation to gpu_memory_fraction of the memory left free after
 *             the weights and an activation reserve; per-slot block tables
 *             (host allocator in cuda_plan.c, mirrored on the device by
 *             scattering new entries each forward).  The scheduler asks
 *             kv_fits before each step (engine.c: sequences wait or are
 *             preempted); a batch that still does not fit fails as a whole
 *             with "KV cache full", never touching other slots.
 *   activations  the residual stream and every GEMM output are f32; GEMM
 *             inputs (normed x, attention output, SwiGLU output) are bf16.
 *
 * A forward (one stream, one host sync at the end):
 *   plan the batch on the host (cuda_plan.c), reserve KV blocks, upload one
 *   int32 block of metadata (tokens, positions, slots, logits rows, new
 *   block-table entries); embed; per layer: rmsnorm -> fused QKV GEMM ->
 *   bias+RoPE+append to the paged cache -> attention -> o_proj GEMM
 *   accumulating into the residual (beta = 1, the residual add) -> rmsnorm ->
 *   fused gate/up GEMM -> SwiGLU -> down GEMM into the residual;
 *   final rmsnorm of the logits rows only -> lm_head GEMM (f32 logits) -> copy
 *   to the caller's host buffer.
 * GEMMs: cublasGemmEx, bf16 inputs, f32 accumulation and f32 output; for
 * 1-4 tokens gemv.cu (gate/up with SwiGLU fused); with batch_invariant,
 * r1k_gemm_fixed (a reduction order fixed per output) for every batch.
 * Attention: every token of the batch is a query over its slot's positions
 * [0, pos].  A range of 32+ consecutive tokens of one sequence (a prompt)
 * goes through prompt_attention (gathered K/V, cuBLAS Q K^T and P V on tensor
 * cores); decode, mixed batches and batch_invariant mode run the split-K
 * kernel (kernels/r1_kernels.cu).
 *
 * Performance intent, and what is not done yet
 *   Decode is memory-bound: the weights (and, for long batches, the KV cache)
 *   must stream once per step.  The attention kernel uses 16-byte loads and
 *   shuffle reductions, and splits long contexts (flash-decoding) so one
 *   sequence at 16k keeps every SM busy.  Decode steps (a token and a logits
 *   row per sequence) are captured as CUDA graphs once per shape and replayed
 *   (graph_for; R1_CUDA_GRAPHS=0 turns that off).  Tokens are chosen on the
 *   GPU (r1k_sample: r1_sample's algorithm and Philox draw), so only the ids
 *   cross to the host (R1_GPU_SAMPLING=0 copies the logits and samples on
 *   the host instead).  Not yet done: fused norm/RoPE prologues
 *   and epilogues (small kernels are about 40% of a 1.5B decode step), a
 *   decode attention near bandwidth at long contexts, an FP8 KV cache.
 *
 * Checked on an H100 (2026-11-23, BENCHMARKS.md): tools/gpu/gpu-check.sh unit and
 * compare pass (the GPU against the CPU backend and the golden fixtures); the
 * host-side index logic is unit-tested everywhere (test/unit/test_cuda_plan.c).
 */
#ifdef R1_WITH_CUDA

#include "backend.h"
#include "cuda_plan.h"
#include "quant.h"
#include "r1_kernels.cuh"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#define STAGE_BYTES ((size_t) 64 << 20) /* each of the two pinned upload
										 * buffers */
#define RESERVE_EXTRA ((size_t) 512 << 20)	/* cuBLAS workspace, context,
											 * slack */
#define R1_CUDA_MAX_TOKENS 4096 /* tokens per device pass: bounds activation
								 * memory */
#define R1_CUDA_GRAPHS 32		/* decode-step graphs kept (one per shape) */
#define R1_CUBLAS_WS ((size_t) 32 << 20)	/* cuBLAS workspace */
#define R1_PA_SCORES ((size_t) 192 << 20)	/* prompt attention: a tile's
											 * scores (f32) and P (bf16) */
#define R1_PA_MIN_T 32			/* prompt attention through cuBLAS from this
								 * many tokens */
#define R1_PA_MIN_TILE 16		/* fewest queries a tile may have */
#define R1_SAMPLE_ROWS 64		/* logits rows sampled per launch (scratch:
								 * rows x n2 x 8 bytes) */
#define R1_CUDA_GRAPH_MAX_T 512 /* decode steps of at most this many sequences
								 * use graphs */

/* a captured decode step and the shape it was captured for */
typedef struct cuda_graph
{
	cudaGraphExec_t exec;
	int			T;
	int			part;
	int			max_splits;
	int			invariant;
} cuda_graph;

/* a matrix of a quantised model as stored: block format (or bf16) rows */
typedef struct qmat
{
	void	   *p;
	int			dt;				/* r1_dtype: Q8_0, Q4_0, Q5_0, Q4_K, Q5_K,
								 * Q6_K or BF16 */
	size_t		row_bytes;
} qmat;

typedef struct cuda_layer
{
	uint16_t   *w_qkv;			/* [qd + 2 kvd, H] bf16: q, k, v rows */
	float	   *b_qkv;			/* [qd + 2 kvd] */
	uint16_t   *w_o;			/* [H, qd] bf16 */
	uint16_t   *w_gu;			/* [2 inter, H] bf16: gate rows, then up rows */
	uint16_t   *w_down;			/* [H, inter] bf16 */
	float	   *attn_norm;		/* [H] */
	float	   *ffn_norm;		/* [H] */
	/* quantised models: each matrix as stored, no fusion (types may differ) */
	qmat		q,
				k,
				v,
				o,
				gate,
				up,
				down;
} cuda_layer;

typedef struct cuda_state
{
	const r1_config *cfg;
	int			device;
	int			n_sms;
	int			batch_invariant;	/* the backend's flag, copied at each
									 * forward */
	int			gemv_off;		/* R1_CUDA_GEMV=0: cuBLAS / r1k_qgemm for
								 * decode too */
	int			max_ctx;
	cudaStream_t stream;
	cublasHandle_t blas;
	void	   *blas_ws;		/* R1_CUBLAS_WS bytes */
	int			broken;			/* a CUDA error left the device state unknown */
	char		broken_msg[256];

	/* weights */
	int			quant;			/* block-quantised model: qmat matrices,
								 * r1k_qgemm */
	qmat		q_embed,
				q_lm_head;		/* quantised models (q_lm_head.p == q_embed.p
								 * when tied) */
	cuda_layer *layers;			/* [n_layers] */
	uint16_t   *embed;			/* [vocab, H] bf16 */
	uint16_t   *lm_head;		/* [vocab, H] bf16, == embed when tied */
	float	   *final_norm;		/* [H] */
	float	   *rope_cos;		/* [max_ctx, head_dim/2] */
	float	   *rope_sin;		/* [max_ctx, head_dim/2] */

	/* paged KV cache */
	uint16_t   *kv_pool;		/* n_blocks blocks, layout of cuda_plan.h */
	int32_t    *tables;			/* [max_slots, mbps] device block tables */
	r1_kv_alloc alloc;

	/* activations, grown to the largest batch seen */
	int			cap_T;
	int			cap_rows;
	size_t		cap_part;		/* elements of part_o */
	size_t		cap_meta;		/* int32s of meta */
	float	   *x;				/* [T, H] residual stream */
	uint16_t   *xb;				/* [T, H] normed input of a sublayer (bf16) */
	float	   *qkv;			/* [T, qd + 2 kvd] fused projection output */
	float	   *q;				/* [T, qd] rotated queries */
	uint16_t   *att;			/* [T, qd] attention output (bf16) */
	float	   *gu;				/* [T, 2 inter] gate | up */
	uint16_t   *hbuf;			/* [T, inter] silu(gate) * up (bf16) */
	float	   *logits;			/* [rows, vocab] */
	float	   *part_o;			/* [T, nh, max_splits, hd] split partial
								 * outputs */
	float	   *part_ml;		/* [T, nh, max_splits, 2] split max and sum */

	/* prompt attention through cuBLAS (allocated at creation; NULL: off) */
	float	   *pa_s;			/* a tile's scores [nh, tq, ld] f32 */
	uint16_t   *pa_p;			/* its P [nh, tq, ld] bf16 */
	uint16_t   *pa_k,
			   *pa_v;			/* one layer's keys, values [n_kv, max_ctx,
								 * hd] bf16 */
	uint16_t   *pa_q;			/* queries [nh, R1_CUDA_MAX_TOKENS, hd] bf16 */
	size_t		pa_score_elems; /* elements of pa_s (and of pa_p) */
	int32_t    *meta;			/* device metadata of a forward */
	int32_t    *meta_host;		/* pinned twin */
	r1_batch_plan plan;
	r1_kv_update *upd;
	size_t		cap_upd;

	/* sampling on the device (allocated at creation, before the KV pool) */
	int			samp_n2;		/* power of two >= vocab: a row's candidate
								 * scratch */
	float	   *cand_p;			/* [R1_SAMPLE_ROWS, samp_n2] */
	int32_t    *cand_id;		/* [R1_SAMPLE_ROWS, samp_n2] */
	int32_t    *samp_params;	/* [R1_SAMPLE_ROWS, 8] */
	int32_t    *samp_out;		/* [R1_SAMPLE_ROWS] */
	int32_t    *samp_host;		/* pinned: params in, ids out */

	/* CUDA graphs of decode steps; buffers they point into must not move */
	cuda_graph	graphs[R1_CUDA_GRAPHS];
	int			next_graph;
	int			graphs_off;		/* a capture failed, or R1_CUDA_GRAPHS=0 */

	size_t		weight_bytes;
	size_t		kv_bytes;
	size_t		other_bytes;	/* rope tables, block tables */
	size_t		scratch_bytes;
} cuda_state;

/* ---------- error handling ---------- */

static int
cuda_fail(cuda_state *st, r1_error *err, const char *what, cudaError_t e, int line)
{
	if (st && (e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure ||
			   e == cudaErrorIllegalInstruction || e == cudaErrorMisalignedAddress ||
			   e == cudaErrorHardwareStackError || e == cudaErrorUnknown || e == cudaErrorECCUncorrectable))
	{
		st->broken = 1;
		snprintf(st->broken_msg, sizeof(st->broken_msg), "%s", cudaGetErrorString(e));
	}
	return r1_fail(err, "CUDA error in %s (backend_cuda.c:%d): %s", what, line, cudaGetErrorString(e));
}

#define CK(call) \
	do { cudaError_t e_ = (call); \
		if (e_ != cudaSuccess) return cuda_fail(st, err, #call, e_, __LINE__); } while (0)

#define CB(call) \
	do { cublasStatus_t s_ = (call); \
		if (s_ != CUBLAS_STATUS_SUCCESS) \
			return r1_fail(err, "cuBLAS error in %s (backend_cuda.c:%d): %s", #call, __LINE__, \
						   cublasGetStatusString(s_)); } while (0)

static void
dfree(void *p)
{
	if (p)
		cudaFree(p);
}

static int
dalloc(cuda_state *st, void **p, size_t bytes, const char *what, size_t *account, r1_error *err)
{
	cudaError_t e;

	*p = NULL;
	if (bytes == 0)
		bytes = 16;
	e = cudaMalloc(p, bytes);
	if (e != cudaSuccess)
	{
		*p = NULL;
		cudaGetLastError();		/* out of memory is not sticky: clear it */
		return r1_fail(err, "out of GPU memory allocating %s (%.1f MiB): %s", what,
					   bytes / 1048576.0, cudaGetErrorString(e));
	}
	if (account)
		*account += bytes;
	return 0;
}

/* ---------- weight upload ---------- */

typedef struct uploader
{
	void	   *stage[2];		/* pinned */
	cudaEvent_t done[2];		/* the copy out of stage[i] finished */
	int			cur;
} uploader;

/* convert elements [i0, i0 + n) of t into dst (bf16 or f32) */
static void
convert(void *dst, int to_bf16, const r1_tensor *t, size_t i0, size_t n)
{
	if (to_bf16 && t->dtype == R1_BF16)
	{
		memcpy(dst, (const uint16_t *) t->data + i0, n * 2);
		return;
	}
	if (!to_bf16 && t->dtype == R1_F32)
	{
		memcpy(dst, (const float *) t->data + i0, n * 4);
		return;
	}
	for (size_t i = 0; i < n; i++)
	{
		float		f = r1_tensor_get_f32(t, i0 + i);

		if (to_bf16)
			((uint16_t *) dst)[i] = r1_f32_to_bf16(f);
		else
			((float *) dst)[i] = f;
	}
}

/* copy tensor t to device memory dst (bf16 or f32), through the staging buffers */
static int
upload(cuda_state *st, uploader *u, void *dst, int to_bf16, const r1_tensor *t, r1_error *err)
{
	size_t		es = to_bf16 ? 2 : 4;
	size_t		n = (size_t) r1_tensor_numel(t);
	size_t		per = STAGE_BYTES / es;

	if (!t->data || r1_dtype_size(t->dtype) == 0)
		return r1_fail(err, "tensor %s has no data or an unsupported dtype", t->name ? t->name : "?");
	for (size_t i0 = 0; i0 < n; i0 += per)
	{
		size_t		c = n - i0 < per ? n - i0 : per;

		CK(cudaEventSynchronize(u->done[u->cur]));
		convert(u->stage[u->cur], to_bf16, t, i0, c);
		CK(cudaMemcpyAsync((char *) dst + i0 * es, u->stage[u->cur], c * es, cudaMemcpyHostToDevice,
						   st->stream));
		CK(cudaEventRecord(u->done[u->cur], st->stream));
		u->cur ^= 1;
	}
	return 0;
}

/* a matrix of a quantised model: blocks copied as they are, others as bf16 */
static int
upload_qmat(cuda_state *st, uploader *u, qmat *dst, const r1_tensor *t, const char *what, r1_error *err)
{
	int64_t		n_in = t->shape[t->ndim - 1];

	if (r1_dtype_is_quant(t->dtype))
	{
		cudaError_t e;

		if (dalloc(st, &dst->p, t->nbytes, what, &st->weight_bytes, err) != 0)
			return -1;
		e = cudaMemcpy(dst->p, t->data, t->nbytes, cudaMemcpyHostToDevice);
		if (e != cudaSuccess)
			return cuda_fail(st, err, "cudaMemcpy of quantised weights", e, __LINE__);
		dst->dt = t->dtype;
		if (r1_dtype_row_bytes(t->dtype, n_in, &dst->row_bytes) != 0)
			return r1_fail(err, "%s: rows of %lld weights are not whole blocks", what, (long long) n_in);
		return 0;
	}
	if (dalloc(st, &dst->p, (size_t) r1_tensor_numel(t) * 2, what, &st->weight_bytes, err) != 0 ||
		upload(st, u, dst->p, 1, t, err) != 0)
		return -1;
	dst->dt = R1_BF16;
	dst->row_bytes = (size_t) n_in * 2;
	return 0;
}

static int
upload_weights(cuda_state *st, const r1_model *m, r1_error *err)
{
	const r1_config *c = &m->cfg;
	size_t		H = c->hidden_size,
				I = c->intermediate_size,
				V = c->vocab_size;
	size_t		qd = (size_t) c->n_heads * c->head_dim,
				kvd = (size_t) c->n_kv_heads * c->head_dim;
	uploader	u;
	int			rc = -1;
	size_t	   *acc = &st->weight_bytes;

#define CKO(call) \
	do { cudaError_t e_ = (call); \
		if (e_ != cudaSuccess) { cuda_fail(st, err, #call, e_, __LINE__); goto out; } } while (0)
	memset(&u, 0, sizeof(u));
	for (int i = 0; i < 2; i++)
	{
		CKO(cudaMallocHost(&u.stage[i], STAGE_BYTES));
		CKO(cudaEventCreateWithFlags(&u.done[i], cudaEventDisableTiming));
	}
	st->layers = r1_calloc((size_t) c->n_layers, sizeof(cuda_layer), err);
	if (!st->layers)
		goto out;
#define ALLOC(p, bytes, what) \
	if (dalloc(st, (void **) &(p), (bytes), (what), acc, err) != 0) goto out
#define UP(dst, bf, t) \
	if (upload(st, &u, (dst), (bf), (t), err) != 0) goto out
	if (m->quantized)
	{
		/* GGUF: the matrices stay in their block formats on the device */
		st->quant = 1;
		if (upload_qmat(st, &u, &st->q_embed, &m->embed, "the embedding", err) != 0)
			goto out;
		if (m->lm_head.data == m->embed.data)
			st->q_lm_head = st->q_embed;
		else if (upload_qmat(st, &u, &st->q_lm_head, &m->lm_head, "lm_head", err) != 0)
			goto out;
		ALLOC(st->final_norm, H * 4, "the final norm");
		UP(st->final_norm, 0, &m->final_norm);
		for (int l = 0; l < c->n_layers; l++)
		{
			const r1_layer_weights *w = &m->layers[l];
			cuda_layer *d = &st->layers[l];

			if (upload_qmat(st, &u, &d->q, &w->wq, "q_proj", err) != 0 ||
				upload_qmat(st, &u, &d->k, &w->wk, "k_proj", err) != 0 ||
				upload_qmat(st, &u, &d->v, &w->wv, "v_proj", err) != 0 ||
				upload_qmat(st, &u, &d->o, &w->wo, "o_proj", err) != 0 ||
				upload_qmat(st, &u, &d->gate, &w->w_gate, "gate_proj", err) != 0 ||
				upload_qmat(st, &u, &d->up, &w->w_up, "up_proj", err) != 0 ||
				upload_qmat(st, &u, &d->down, &w->w_down, "down_proj", err) != 0)
				goto out;
			ALLOC(d->b_qkv, (qd + 2 * kvd) * 4, "q/k/v biases");
			if (c->attn_bias)
			{
				UP(d->b_qkv, 0, &w->bq);
				UP(d->b_qkv + qd, 0, &w->bk);
				UP(d->b_qkv + qd + kvd, 0, &w->bv);
			}
			else
				CKO(cudaMemsetAsync(d->b_qkv, 0, (qd + 2 * kvd) * 4, st->stream));
			ALLOC(d->attn_norm, H * 4, "norm weights");
			UP(d->attn_norm, 0, &w->attn_norm);
			ALLOC(d->ffn_norm, H * 4, "norm weights");
			UP(d->ffn_norm, 0, &w->ffn_norm);
		}
		CKO(cudaStreamSynchronize(st->stream));
		rc = 0;
		goto out;
	}
	ALLOC(st->embed, V * H * 2, "the embedding");
	UP(st->embed, 1, &m->embed);
	if (m->lm_head.data == m->embed.data)
		st->lm_head = st->embed;
	else
	{
		ALLOC(st->lm_head, V * H * 2, "lm_head");
		UP(st->lm_head, 1, &m->lm_head);
	}
	ALLOC(st->final_norm, H * 4, "the final norm");
	UP(st->final_norm, 0, &m->final_norm);
	for (int l = 0; l < c->n_layers; l++)
	{
		const r1_layer_weights *w = &m->layers[l];
		cuda_layer *d = &st->layers[l];

		ALLOC(d->w_qkv, (qd + 2 * kvd) * H * 2, "q/k/v weights");
		UP(d->w_qkv, 1, &w->wq);
		UP(d->w_qkv + qd * H, 1, &w->wk);
		UP(d->w_qkv + (qd + kvd) * H, 1, &w->wv);
		ALLOC(d->b_qkv, (qd + 2 * kvd) * 4, "q/k/v biases");
		if (c->attn_bias)
		{
			UP(d->b_qkv, 0, &w->bq);
			UP(d->b_qkv + qd, 0, &w->bk);
			UP(d->b_qkv + qd + kvd, 0, &w->bv);
		}
		else					/* a Llama: the fused kernel adds zeros */
			CKO(cudaMemsetAsync(d->b_qkv, 0, (qd + 2 * kvd) * 4, st->stream));
		ALLOC(d->w_o, H * qd * 2, "o_proj");
		UP(d->w_o, 1, &w->wo);
		ALLOC(d->w_gu, 2 * I * H * 2, "gate/up weights");
		UP(d->w_gu, 1, &w->w_gate);
		UP(d->w_gu + I * H, 1, &w->w_up);
		ALLOC(d->w_down, H * I * 2, "down_proj");
		UP(d->w_down, 1, &w->w_down);
		ALLOC(d->attn_norm, H * 4, "norm weights");
		UP(d->attn_norm, 0, &w->attn_norm);
		ALLOC(d->ffn_norm, H * 4, "norm weights");
		UP(d->ffn_norm, 0, &w->ffn_norm);
	}
	CKO(cudaStreamSynchronize(st->stream));
#undef ALLOC
#undef UP
#undef CKO
	rc = 0;
out:
	for (int i = 0; i < 2; i++)
	{
		if (u.done[i])
		{
			cudaEventSynchronize(u.done[i]);
			cudaEventDestroy(u.done[i]);
		}
		if (u.stage[i])
			cudaFreeHost(u.stage[i]);
	}
	return rc;
}

static int
upload_rope(cuda_state *st, int max_ctx, r1_error *err)
{
	const r1_config *c = st->cfg;
	int			half = c->head_dim / 2;
	size_t		n = (size_t) max_ctx * half;
	float	   *cs = malloc(n * sizeof(float)),
			   *sn = malloc(n * sizeof(float));
	int			rc = -1;

	if (!cs || !sn)
	{
		free(cs);
		free(sn);
		return r1_fail(err, "out of memory for the RoPE table");
	}
	/* exactly the CPU backend's angles: pos * theta^(-2i/hd) in double */
	for (int i = 0; i < half; i++)
	{
		double		inv = r1_rope_inv_freq(c, i);

		for (int p = 0; p < max_ctx; p++)
		{
			double		ang = (double) p * inv;

			cs[(size_t) p * half + i] = (float) cos(ang);
			sn[(size_t) p * half + i] = (float) sin(ang);
		}
	}
	if (dalloc(st, (void **) &st->rope_cos, n * 4, "the RoPE table", &st->other_bytes, err) == 0 &&
		dalloc(st, (void **) &st->rope_sin, n * 4, "the RoPE table", &st->other_bytes, err) == 0)
	{
		cudaError_t e = cudaMemcpy(st->rope_cos, cs, n * 4, cudaMemcpyHostToDevice);

		if (e == cudaSuccess)
			e = cudaMemcpy(st->rope_sin, sn, n * 4, cudaMemcpyHostToDevice);
		rc = e == cudaSuccess ? 0 : cuda_fail(st, err, "cudaMemcpy(RoPE table)", e, __LINE__);
	}
	free(cs);
	free(sn);
	return rc;
}

/* ---------- activations ---------- */

/* device bytes of activations for T tokens, rows logits rows, part_elems split outputs */
static size_t
scratch_size(const r1_config *c, size_t T, size_t rows, size_t part_elems)
{
	size_t		H = c->hidden_size,
				I = c->intermediate_size;
	size_t		qd = (size_t) c->n_heads * c->head_dim,
				kvd = (size_t) c->n_kv_heads * c->head_dim;

	return T * (H * 4 + H * 2 + (qd + 2 * kvd) * 4 + qd * 4 + qd * 2 + 2 * I * 4 + I * 2) +
		rows * (size_t) c->vocab_size * 4 + part_elems * 4 + part_elems / c->head_dim * 2 * 4;
}

/* forget every captured graph (their buffers are about to move) */
static void
graphs_reset(cuda_state *st)
{
	for (int i = 0; i < R1_CUDA_GRAPHS; i++)
		if (st->graphs[i].exec)
			cudaGraphExecDestroy(st->graphs[i].exec);
	memset(st->graphs, 0, sizeof(st->graphs));
	st->next_graph = 0;
}

static int
grow_scratch(cuda_state *st, int T, int rows, size_t part_elems, size_t meta_ints, r1_error *err)
{
	const r1_config *c = st->cfg;
	size_t		H = c->hidden_size,
				I = c->intermediate_size;
	size_t		qd = (size_t) c->n_heads * c->head_dim,
				kvd = (size_t) c->n_kv_heads * c->head_dim;
	size_t	   *acc = &st->scratch_bytes;

	if (T > st->cap_T || rows > st->cap_rows || part_elems > st->cap_part || meta_ints > st->cap_meta)
		graphs_reset(st);
	if (T > st->cap_T)
	{
		size_t		t = (size_t) (T + 63) / 64 * 64;

		dfree(st->x);
		dfree(st->xb);
		dfree(st->qkv);
		dfree(st->q);
		dfree(st->att);
		dfree(st->gu);
		dfree(st->hbuf);
		st->x = st->qkv = st->q = st->gu = NULL;
		st->xb = st->att = st->hbuf = NULL;
		*acc -= scratch_size(c, st->cap_T, 0, 0);
		st->cap_T = 0;
		if (dalloc(st, (void **) &st->x, t * H * 4, "activations", NULL, err) ||
			dalloc(st, (void **) &st->xb, t * H * 2, "activations", NULL, err) ||
			dalloc(st, (void **) &st->qkv, t * (qd + 2 * kvd) * 4, "activations", NULL, err) ||
			dalloc(st, (void **) &st->q, t * qd * 4, "activations", NULL, err) ||
			dalloc(st, (void **) &st->att, t * qd * 2, "activations", NULL, err) ||
			dalloc(st, (void **) &st->gu, t * 2 * I * 4, "activations", NULL, err) ||
			dalloc(st, (void **) &st->hbuf, t * I * 2, "activations", NULL, err))
			return -1;
		st->cap_T = (int) t;
		*acc += scratch_size(c, t, 0, 0);
	}
	if (rows > st->cap_rows)
	{
		size_t		r = (size_t) (rows + 15) / 16 * 16;

		dfree(st->logits);
		st->logits = NULL;
		*acc -= (size_t) st->cap_rows * c->vocab_size * 4;
		st->cap_rows = 0;
		if (dalloc(st, (void **) &st->logits, r * c->vocab_size * 4, "logits", NULL, err))
			return -1;
		st->cap_rows = (int) r;
		*acc += r * c->vocab_size * 4;
	}
	if (part_elems > st->cap_part)
	{
		dfree(st->part_o);
		dfree(st->part_ml);
		st->part_o = st->part_ml = NULL;
		*acc -= st->cap_part * 4 + st->cap_part / c->head_dim * 8;
		st->cap_part = 0;
		if (dalloc(st, (void **) &st->part_o, part_elems * 4, "attention splits", NULL, err) ||
			dalloc(st, (void **) &st->part_ml, part_elems / c->head_dim * 8, "attention splits", NULL, err))
			return -1;
		st->cap_part = part_elems;
		*acc += part_elems * 4 + part_elems / c->head_dim * 8;
	}
	if (meta_ints > st->cap_meta)
	{
		size_t		n = meta_ints + meta_ints / 2 + 1024;
		cudaError_t e;

		dfree(st->meta);
		st->meta = NULL;
		if (st->meta_host)
			cudaFreeHost(st->meta_host);
		st->meta_host = NULL;
		st->cap_meta = 0;
		if (dalloc(st, (void **) &st->meta, n * 4, "batch metadata", NULL, err))
			return -1;
		e = cudaMallocHost((void **) &st->meta_host, n * 4);
		if (e != cudaSuccess)
		{
			st->meta_host = NULL;
			cudaGetLastError();
			return r1_fail(err, "out of pinned host memory for batch metadata: %s", cudaGetErrorString(e));
		}
		st->cap_meta = n;
	}
	return 0;
}

/* ---------- the forward pass ---------- */

/*
 * Decode-sized batches (1 to 4 tokens) outside batch_invariant mode go to
 * gemv.cu's kernels: one pass over the weights, no tiles to fill.
 */
static int
gemv_allowed(const cuda_state *st)
{
	return !st->batch_invariant && !st->gemv_off;
}

static int
use_gemv(const cuda_state *st, int T, int n_in)
{
	return gemv_allowed(st) && r1k_gemv_ok(T, n_in);
}

/*
 * out[T, n_out] (f32) = x[T, n_in] (bf16) w[n_out, n_in]^T (bf16) + beta * out;
 * batch-invariant: the fixed-order kernel (cuBLAS picks its algorithm by
 * shape, so a token's sums would depend on the batch).
 */
static int
gemm(cuda_state *st, float *out, const uint16_t *x, const uint16_t *w, int T, int n_out, int n_in,
	 float beta, r1_error *err)
{
	const float alpha = 1.0f;

	if (st->batch_invariant)
	{
		CK(r1k_gemm_fixed(st->stream, out, x, w, T, n_out, n_in, beta));
		return 0;
	}
	if (use_gemv(st, T, n_in))
	{
		CK(r1k_gemv(st->stream, out, x, w, T, n_out, n_in, beta));
		return 0;
	}
	CB(cublasGemmEx(st->blas, CUBLAS_OP_T, CUBLAS_OP_N, n_out, T, n_in, &alpha,
					w, CUDA_R_16BF, n_in, x, CUDA_R_16BF, n_in, &beta,
					out, CUDA_R_32F, n_out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	return 0;
}

/* out[t * ldo + n] = x[t, :] . w[n, :] (+ beta out) for a quantised model's matrix */
static int
qlinear(cuda_state *st, float *out, int ldo, const uint16_t *x, const qmat *w, int T, int n_out, int n_in,
		float beta, r1_error *err)
{
	if (gemv_allowed(st) && r1k_qgemv_ok(w->dt, T, n_in))
		CK(r1k_qgemv(st->stream, out, ldo, x, w->p, w->dt, w->row_bytes, T, n_out, n_in, beta));
	else if (w->dt == R1_BF16 && use_gemv(st, T, n_in) && ldo == n_out)
		CK(r1k_gemv(st->stream, out, x, w->p, T, n_out, n_in, beta));
	else
		CK(r1k_qgemm(st->stream, out, ldo, x, w->p, w->dt, w->row_bytes, T, n_out, n_in, beta));
	return 0;
}

/* a contiguous range of the planned batch's tokens, run as one device pass */
typedef struct token_range
{
	int			t0;				/* first token (index into the plan) */
	int			T;				/* tokens */
	int			r0;				/* first logits row of the range (index into
								 * the plan's rows) */
	int			rows;			/* logits rows of the range */
	int			max_ctx_len;	/* max pos + 1 over the range */
	int			part;			/* attention partition size */
	int			max_splits;
	int			one_seq;		/* every token of one slot, consecutive
								 * positions */
	int			slot;			/* that slot */
	int			pos0;			/* position of the range's first token */
} token_range;

/* split the plan into ranges of at most R1_CUDA_MAX_TOKENS tokens */
static int
next_range(const r1_batch_plan *p, int t0, int r0, const cuda_state *st, token_range *r)
{
	int			T = p->n_tokens - t0 < R1_CUDA_MAX_TOKENS ? p->n_tokens - t0 : R1_CUDA_MAX_TOKENS;

	r->t0 = t0;
	r->T = T;
	r->r0 = r0;
	r->rows = 0;
	while (r0 + r->rows < p->n_rows && p->logit_rows[r0 + r->rows] < t0 + T)
		r->rows++;
	r->max_ctx_len = 1;
	for (int t = t0; t < t0 + T; t++)
		if (p->tok_pos[t] + 1 > r->max_ctx_len)
			r->max_ctx_len = p->tok_pos[t] + 1;
	r->slot = p->tok_slot[t0];
	r->pos0 = p->tok_pos[t0];
	r->one_seq = 1;
	for (int t = t0 + 1; t < t0 + T && r->one_seq; t++)
		r->one_seq = p->tok_slot[t] == r->slot && p->tok_pos[t] == r->pos0 + (t - t0);
	if (st->batch_invariant)
	{
		/*
		 * A split size that depends on neither the batch nor its longest
		 * context: each query's splits, and so the order its softmax is
		 * merged in, then depend only on its own position.
		 */
		int			ignored;

		r->part = r1_attn_part_size(1, st->cfg->n_kv_heads, st->max_ctx, 4 * st->n_sms, &ignored);
		r->max_splits = r1_attn_n_splits(r->max_ctx_len, r->part);
	}
	else
		r->part = r1_attn_part_size(T, st->cfg->n_kv_heads, r->max_ctx_len, 4 * st->n_sms, &r->max_splits);
	return T;
}

/*
 * Queries per tile of prompt attention: as many as the score buffers hold
 * for the range's longest context; 0 when the range does not qualify (the
 * split-K kernel then runs: batch-invariant mode, decode, several sequences
 * in one range, a tile that would be too small).
 */
static int
prompt_attn_tile(const cuda_state *st, const token_range *r)
{
	const r1_config *c = st->cfg;
	size_t		ld = ((size_t) r->pos0 + r->T + 7) / 8 * 8;
	size_t		tq;

	if (!st->pa_s || st->batch_invariant || !r->one_seq || r->T < R1_PA_MIN_T)
		return 0;				/* (no buffers: off, or a head_dim not a
								 * multiple of 8) */
	tq = st->pa_score_elems / ((size_t) c->n_heads * ld);
	if (tq > (size_t) r->T)
		tq = r->T;
	return tq >= R1_PA_MIN_TILE ? (int) tq : 0;
}

/*
 * Causal attention of a range of one sequence's consecutive tokens (a
 * prompt, or a chunk of one) on tensor cores: gather the slot's keys and
 * values for the layer, then per tile of tq queries and per KV head, scores
 * S = scale Q K^T (cuBLAS, the G query heads of the group a batch of three
 * strided GEMMs with K shared), the causal softmax P, and att = P V straight
 * into the attention output's columns.  Whole score rows are formed: the
 * masked tail of a tile costs at most tq x tq wasted products.
 */
static int
prompt_attention(cuda_state *st, const token_range *r, const r1k_kv_args *kv, int tq, r1_error *err)
{
	const r1_config *c = st->cfg;
	const int	hd = c->head_dim,
				nh = c->n_heads,
				nkv = c->n_kv_heads,
				G = nh / nkv,
				qd = nh * hd;
	const int	ctx = r->pos0 + r->T;	/* keys of the last query */
	const float scale = 1.0f / sqrtf((float) hd),
				one = 1.0f,
				zero = 0.0f;

	CK(r1k_kv_gather(st->stream, kv, r->slot, ctx, st->pa_k, st->pa_v));
	CK(r1k_q_pack(st->stream, st->q, st->pa_q, r->T, nh, hd));
	for (int t0 = 0; t0 < r->T; t0 += tq)
	{
		int			n = r->T - t0 < tq ? r->T - t0 : tq;
		int			len = r->pos0 + t0 + n; /* keys this tile's queries can
											 * see */
		int			ld = (len + 7) / 8 * 8;

		for (int kh = 0; kh < nkv; kh++)
			CB(cublasGemmStridedBatchedEx(st->blas, CUBLAS_OP_T, CUBLAS_OP_N, len, n, hd, &scale,
										  st->pa_k + (size_t) kh * ctx * hd, CUDA_R_16BF, hd, 0,
										  st->pa_q + ((size_t) kh * G * r->T + t0) * hd, CUDA_R_16BF, hd,
										  (long long) r->T * hd, &zero,
										  st->pa_s + (size_t) kh * G * n * ld, CUDA_R_32F, ld, (long long) n * ld,
										  G, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
		CK(r1k_softmax_rows(st->stream, st->pa_s, st->pa_p, nh * n, n, len, ld, r->pos0 + t0));
		for (int kh = 0; kh < nkv; kh++)
			CB(cublasGemmStridedBatchedEx(st->blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, n, len, &one,
										  st->pa_v + (size_t) kh * ctx * hd, CUDA_R_16BF, hd, 0,
										  st->pa_p + (size_t) kh * G * n * ld, CUDA_R_16BF, ld, (long long) n * ld,
										  &zero,
										  st->att + (size_t) t0 * qd + (size_t) kh * G * hd, CUDA_R_16BF, qd, hd,
										  G, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	}
	return 0;
}

/*
 * A layer's attention: prompt_attention when prompt_attn_tile gave tiles of
 * tq > 0 queries, else the split-K kernel (decode, mixed batches,
 * batch-invariant mode).
 */
static int
attention(cuda_state *st, const token_range *r, const r1k_kv_args *kv, int tq, r1_error *err)
{
	if (tq > 0)
		return prompt_attention(st, r, kv, tq, err);
	CK(r1k_attention(st->stream, kv, st->att, st->q, st->part_o, st->part_ml,
					 1.0f / sqrtf((float) st->cfg->head_dim), r->part, r->max_splits));
	return 0;
}

/*
 * The device work of a forward range, from the embedding to the logits rows
 * (st->logits), all on st->stream and with no host synchronisation, so that
 * a decode step can be captured as a CUDA graph and replayed.
 */
static int
device_pass(cuda_state *st, const token_range *r, const r1k_kv_args *kv_in, const int32_t *md, size_t o_tok,
			size_t o_rows, r1_error *err)
{
	const r1_config *c = st->cfg;
	int			T = r->T,
				rows = r->rows;
	int			H = c->hidden_size,
				I = c->intermediate_size,
				hd = c->head_dim;
	int			qd = c->n_heads * hd,
				kvd = c->n_kv_heads * hd;
	r1k_kv_args kv = *kv_in;
	int			tq = prompt_attn_tile(st, r);

	if (st->quant)
		CK(r1k_embed_q(st->stream, st->x, st->q_embed.p, st->q_embed.dt, st->q_embed.row_bytes,
					   md + o_tok, T, H));
	else
		CK(r1k_embed(st->stream, st->x, st->embed, md + o_tok, T, H));
	for (int l = 0; l < c->n_layers; l++)
	{
		const cuda_layer *w = &st->layers[l];

		kv.layer = l;
		if (st->quant)
		{
			int			W = qd + 2 * kvd;

			/*
			 * the layer of a quantised model: the same steps, unfused
			 * matrices
			 */
			CK(r1k_rmsnorm(st->stream, st->xb, st->x, NULL, w->attn_norm, T, H, c->rms_norm_eps));
			if (qlinear(st, st->qkv, W, st->xb, &w->q, T, qd, H, 0.0f, err) ||
				qlinear(st, st->qkv + qd, W, st->xb, &w->k, T, kvd, H, 0.0f, err) ||
				qlinear(st, st->qkv + qd + kvd, W, st->xb, &w->v, T, kvd, H, 0.0f, err))
				return -1;
			CK(r1k_rope_append(st->stream, &kv, st->q, st->qkv, w->b_qkv, st->rope_cos, st->rope_sin));
			if (attention(st, r, &kv, tq, err) != 0)
				return -1;
			if (qlinear(st, st->x, H, st->att, &w->o, T, H, qd, 1.0f, err))
				return -1;
			CK(r1k_rmsnorm(st->stream, st->xb, st->x, NULL, w->ffn_norm, T, H, c->rms_norm_eps));
			if (qlinear(st, st->gu, 2 * I, st->xb, &w->gate, T, I, H, 0.0f, err) ||
				qlinear(st, st->gu + I, 2 * I, st->xb, &w->up, T, I, H, 0.0f, err))
				return -1;
			CK(r1k_swiglu(st->stream, st->hbuf, st->gu, T, I));
			if (qlinear(st, st->x, H, st->hbuf, &w->down, T, H, I, 1.0f, err))
				return -1;
			continue;
		}
		/* attention block */
		CK(r1k_rmsnorm(st->stream, st->xb, st->x, NULL, w->attn_norm, T, H, c->rms_norm_eps));
		if (gemm(st, st->qkv, st->xb, w->w_qkv, T, qd + 2 * kvd, H, 0.0f, err))
			return -1;
		CK(r1k_rope_append(st->stream, &kv, st->q, st->qkv, w->b_qkv, st->rope_cos, st->rope_sin));
		if (attention(st, r, &kv, tq, err) != 0)
			return -1;
		if (gemm(st, st->x, st->att, w->w_o, T, H, qd, 1.0f, err))	/* x += o Wo^T */
			return -1;
		/* feed-forward block */
		CK(r1k_rmsnorm(st->stream, st->xb, st->x, NULL, w->ffn_norm, T, H, c->rms_norm_eps));
		if (use_gemv(st, T, H))
			CK(r1k_gemv_swiglu(st->stream, st->hbuf, st->xb, w->w_gu, T, I, H));
		else
		{
			if (gemm(st, st->gu, st->xb, w->w_gu, T, 2 * I, H, 0.0f, err))
				return -1;
			CK(r1k_swiglu(st->stream, st->hbuf, st->gu, T, I));
		}
		if (gemm(st, st->x, st->hbuf, w->w_down, T, H, I, 1.0f, err))	/* x += h Wd^T */
			return -1;
	}
	if (rows > 0)
	{
		CK(r1k_rmsnorm(st->stream, st->xb, st->x, md + o_rows, st->final_norm, rows, H, c->rms_norm_eps));
		if (st->quant ? qlinear(st, st->logits, c->vocab_size, st->xb, &st->q_lm_head, rows, c->vocab_size, H,
								0.0f, err)
			: gemm(st, st->logits, st->xb, st->lm_head, rows, c->vocab_size, H, 0.0f, err))
			return -1;
	}
	return 0;
}

/* ---------- CUDA graphs for decode steps ---------- */

/*
 * A decode step (every sequence one token, every token a logits row) has a
 * launch sequence fixed by (T, attention partition, splits): captured once
 * per such shape, then replayed, which removes the per-kernel launch cost
 * (hundreds of launches a step).  Per-step data (tokens, positions, slots)
 * reaches the kernels through st->meta, copied before the replay.  A failed
 * capture turns graphs off for the backend's life and the step runs as
 * launched (no result depends on graphs).  R1_CUDA_GRAPHS=0 turns them off.
 */
static int
graph_key_eq(const cuda_graph *g, const token_range *r, int invariant)
{
	return g->exec && g->T == r->T && g->part == r->part && g->max_splits == r->max_splits &&
		g->invariant == invariant;
}

static cuda_graph *
graph_for(cuda_state *st, const token_range *r, const r1k_kv_args *kv, const int32_t *md, size_t o_tok,
		  size_t o_rows)
{
	cudaGraph_t graph = NULL;
	cuda_graph *g;
	r1_error	cap_err;
	int			rc;
	cudaError_t e;

	for (int i = 0; i < R1_CUDA_GRAPHS; i++)
		if (graph_key_eq(&st->graphs[i], r, st->batch_invariant))
			return &st->graphs[i];
	/* a free entry, else the oldest */
	g = &st->graphs[st->next_graph];
	st->next_graph = (st->next_graph + 1) % R1_CUDA_GRAPHS;
	if (g->exec)
		cudaGraphExecDestroy(g->exec);
	memset(g, 0, sizeof(*g));
	if (cudaStreamBeginCapture(st->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
	{
		cudaGetLastError();
		st->graphs_off = 1;
		return NULL;
	}
	rc = device_pass(st, r, kv, md, o_tok, o_rows, &cap_err);
	e = cudaStreamEndCapture(st->stream, &graph);
	if (rc != 0 || e != cudaSuccess || !graph ||
		cudaGraphInstantiate(&g->exec, graph, 0) != cudaSuccess)
	{
		cudaGetLastError();
		if (graph)
			cudaGraphDestroy(graph);
		g->exec = NULL;
		st->graphs_off = 1;
		fprintf(stderr, "r1: CUDA graph capture failed (%s); decode steps run without graphs\n",
				rc != 0 ? cap_err.msg : cudaGetErrorString(e));
		return NULL;
	}
	cudaGraphDestroy(graph);
	g->T = r->T;
	g->part = r->part;
	g->max_splits = r->max_splits;
	g->invariant = st->batch_invariant;
	return g;
}

/*
 * Choose the next token of logits rows [r0, r0 + rows) of the batch on the
 * device (st->logits holds them) and write the ids to batch->next + r0.
 */
static int
sample_rows(cuda_state *st, const r1_batch *batch, int r0, int rows, r1_error *err)
{
	for (int c0 = 0; c0 < rows; c0 += R1_SAMPLE_ROWS)
	{
		int			n = rows - c0 < R1_SAMPLE_ROWS ? rows - c0 : R1_SAMPLE_ROWS;

		for (int i = 0; i < n; i++)
		{
			const r1_row_sampling *rs = &batch->sample[r0 + c0 + i];
			int32_t    *pr = st->samp_host + 8 * i;
			float		f[3] = {rs->sp.temperature, rs->sp.top_p, rs->sp.min_p};

			memcpy(pr, f, sizeof(f));
			pr[3] = rs->sp.top_k;
			pr[4] = (int32_t) (uint32_t) rs->sp.seed;
			pr[5] = (int32_t) (uint32_t) (rs->sp.seed >> 32);
			pr[6] = (int32_t) (uint32_t) rs->position;
			pr[7] = (int32_t) (uint32_t) (rs->position >> 32);
		}
		CK(cudaMemcpyAsync(st->samp_params, st->samp_host, (size_t) n * 8 * 4, cudaMemcpyHostToDevice, st->stream));
		CK(r1k_sample(st->stream, st->logits + (size_t) c0 * st->cfg->vocab_size, st->cfg->vocab_size, n,
					  batch->sample_vocab, st->samp_params, st->cand_p, st->cand_id, st->samp_n2, st->samp_out));
		CK(cudaMemcpyAsync(st->samp_host + 8 * R1_SAMPLE_ROWS, st->samp_out, (size_t) n * 4, cudaMemcpyDeviceToHost,
						   st->stream));
		/* the pinned buffer is reused by the next chunk: wait for this one */
		CK(cudaStreamSynchronize(st->stream));
		memcpy(batch->next + r0 + c0, st->samp_host + 8 * R1_SAMPLE_ROWS, (size_t) n * 4);
	}
	return 0;
}

static int
forward_device(cuda_state *st, const r1_batch *batch, const token_range *r, float *logits, int n_upd,
			   r1_error *err)
{
	const r1_config *c = st->cfg;
	const r1_batch_plan *p = &st->plan;
	int			T = r->T,
				rows = r->rows;
	int			hd = c->head_dim;
	int32_t    *mh = st->meta_host,
			   *md = st->meta;
	size_t		o_tok = 0,
				o_pos = T,
				o_slot = 2 * (size_t) T,
				o_rows = 3 * (size_t) T,
				o_upd = 3 * (size_t) T + rows;
	size_t		n_meta = o_upd + 2 * (size_t) n_upd;
	r1k_kv_args kv;

	memcpy(mh + o_tok, batch->tokens + r->t0, sizeof(int32_t) * T);
	memcpy(mh + o_pos, p->tok_pos + r->t0, sizeof(int32_t) * T);
	memcpy(mh + o_slot, p->tok_slot + r->t0, sizeof(int32_t) * T);
	for (int i = 0; i < rows; i++)
		mh[o_rows + i] = p->logit_rows[r->r0 + i] - r->t0;
	for (int i = 0; i < n_upd; i++)
	{
		mh[o_upd + 2 * i] = st->upd[i].index;
		mh[o_upd + 2 * i + 1] = st->upd[i].block;
	}
	CK(cudaMemcpyAsync(md, mh, n_meta * 4, cudaMemcpyHostToDevice, st->stream));
	CK(r1k_table_update(st->stream, st->tables, md + o_upd, n_upd));

	kv.pool = st->kv_pool;
	kv.tables = st->tables;
	kv.tok_pos = md + o_pos;
	kv.tok_slot = md + o_slot;
	kv.mbps = st->alloc.max_blocks_per_slot;
	kv.n_blocks = st->alloc.n_blocks;
	kv.T = T;
	kv.n_heads = c->n_heads;
	kv.n_kv_heads = c->n_kv_heads;
	kv.head_dim = hd;

	/*
	 * a decode step (a row per token): a graph, captured the first time its
	 * shape runs
	 */
	if (!st->graphs_off && T == rows && T <= R1_CUDA_GRAPH_MAX_T)
	{
		cuda_graph *g = graph_for(st, r, &kv, md, o_tok, o_rows);

		if (g)
		{
			CK(cudaGraphLaunch(g->exec, st->stream));
			goto copy;
		}
	}
	if (device_pass(st, r, &kv, md, o_tok, o_rows, err) != 0)
		return -1;
copy:
	if (rows > 0 && batch->sample && !batch->all_logits)
	{
		if (sample_rows(st, batch, r->r0, rows, err) != 0)
			return -1;
	}
	else if (rows > 0)
		CK(cudaMemcpyAsync(logits + (size_t) r->r0 * c->vocab_size, st->logits,
						   (size_t) rows * c->vocab_size * 4, cudaMemcpyDeviceToHost, st->stream));
	CK(cudaStreamSynchronize(st->stream));
	CK(cudaGetLastError());
	return 0;
}

static int
cuda_forward(r1_backend *b, const r1_batch *batch, float *logits, r1_error *err)
{
	cuda_state *st = b->impl;
	const r1_config *c = st->cfg;
	r1_batch_plan *p = &st->plan;
	size_t		need_upd = 0,
				part_elems = 0;
	int			n_upd = 0,
				max_T = 0,
				max_rows = 0;
	token_range r;

	if (st->broken)
		return r1_fail(err, "the CUDA backend is unusable after an earlier error: %s", st->broken_msg);
	if (r1_batch_plan_make(p, batch, b->max_slots, b->max_ctx, c->vocab_size, err) != 0)
		return -1;
	st->batch_invariant = b->batch_invariant;
	st->max_ctx = b->max_ctx;
	CK(cudaSetDevice(st->device));
	for (int s = 0; s < batch->n_seqs; s++)
	{
		int			have = st->alloc.n_slot_blocks[batch->slot[s]],
					want = r1_kv_blocks_for(p->seq_end[s]);

		if (want > have)
			need_upd += want - have;
	}
	if (need_upd > st->cap_upd)
	{
		r1_kv_update *u = realloc(st->upd, sizeof(r1_kv_update) * need_upd);

		if (!u)
			return r1_fail(err, "out of memory planning a batch");
		st->upd = u;
		st->cap_upd = need_upd;
	}

	/*
	 * scratch for the largest range: everything that can fail for lack of
	 * memory, before any block is taken
	 */
	for (int t0 = 0, r0 = 0; t0 < p->n_tokens; t0 += r.T, r0 += r.rows)
	{
		size_t		pe;

		next_range(p, t0, r0, st, &r);
		pe = (size_t) r.T * c->n_heads * r.max_splits * c->head_dim;
		if (r.T > max_T)
			max_T = r.T;
		if (r.rows > max_rows)
			max_rows = r.rows;
		if (pe > part_elems)
			part_elems = pe;
	}
	if (grow_scratch(st, max_T, max_rows, part_elems, 3 * (size_t) max_T + max_rows + 2 * need_upd, err) != 0)
		return -1;
	if (r1_kv_alloc_reserve(&st->alloc, batch->n_seqs, batch->slot, p->seq_end, st->upd, &n_upd, err) != 0)
		return -1;

	/*
	 * ranges in token order: a later range's queries read the keys an earlier
	 * one cached
	 */
	for (int t0 = 0, r0 = 0; t0 < p->n_tokens; t0 += r.T, r0 += r.rows)
	{
		next_range(p, t0, r0, st, &r);
		if (forward_device(st, batch, &r, logits, t0 == 0 ? n_upd : 0, err) != 0)
		{
			/*
			 * The new block-table entries may not have reached the device:
			 * host and device tables could disagree, so refuse further work
			 * rather than risk writing into another sequence's blocks.
			 */
			if (!st->broken)
			{
				st->broken = 1;
				snprintf(st->broken_msg, sizeof(st->broken_msg), "%.200s", err ? err->msg : "forward failed");
			}
			return -1;
		}
	}
	return 0;
}

static int
cuda_kv_fits(r1_backend *b, int n, const int *slots, const int *ends)
{
	cuda_state *st = b->impl;
	long		need = r1_kv_alloc_need(&st->alloc, n, slots, ends);

	return need >= 0 && need <= st->alloc.n_free;
}

static void
cuda_release_slot(r1_backend *b, int slot)
{
	cuda_state *st = b->impl;

	r1_kv_alloc_release(&st->alloc, slot);
}

/*
 * Copy positions [0, n) of slot src into the empty slot dst: reserve dst's
 * blocks, send their table entries to the device, then one 2D copy per block
 * (its keys and values of every layer; layers are n_blocks blocks apart).
 * Whole blocks are copied: positions past n in dst's last block are
 * overwritten before anything reads them.
 */
static int
cuda_copy_kv(r1_backend *b, int src, int dst, int n, r1_error *err)
{
	cuda_state *st = b->impl;
	const r1_config *c = st->cfg;
	int			nb = r1_kv_blocks_for(n),
				n_upd = 0;
	r1_kv_update *upd;
	size_t		block_elems,
				layer_elems;

	if (st->broken)
		return r1_fail(err, "the CUDA backend is unusable after an earlier error: %s", st->broken_msg);
	if (src < 0 || src >= b->max_slots || dst < 0 || dst >= b->max_slots || src == dst ||
		n < 0 || n > b->max_ctx || nb > st->alloc.n_slot_blocks[src] || st->alloc.n_slot_blocks[dst] != 0)
		return r1_fail(err, "copy_kv: slots %d -> %d, %d positions out of range", src, dst, n);
	if (n == 0)
		return 0;
	upd = malloc(sizeof(r1_kv_update) * nb);
	if (!upd)
		return r1_fail(err, "out of memory copying a KV cache");
	if (r1_kv_alloc_reserve(&st->alloc, 1, &dst, &n, upd, &n_upd, err) != 0)
	{
		free(upd);
		return -1;
	}
	block_elems = r1_kv_index(0, 1, 0, 0, 0, 0, st->alloc.n_blocks, c->n_kv_heads, c->head_dim);
	layer_elems = r1_kv_index(1, 0, 0, 0, 0, 0, st->alloc.n_blocks, c->n_kv_heads, c->head_dim);
	CK(cudaSetDevice(st->device));
	for (int i = 0; i < n_upd; i++)
		CK(cudaMemcpyAsync(st->tables + upd[i].index, &upd[i].block, sizeof(int32_t),
						   cudaMemcpyHostToDevice, st->stream));
	for (int k = 0; k < nb; k++)
	{
		int32_t		sb = st->alloc.table[(size_t) src * st->alloc.max_blocks_per_slot + k];
		int32_t		db = st->alloc.table[(size_t) dst * st->alloc.max_blocks_per_slot + k];

		CK(cudaMemcpy2DAsync(st->kv_pool + (size_t) db * block_elems, layer_elems * sizeof(uint16_t),
							 st->kv_pool + (size_t) sb * block_elems, layer_elems * sizeof(uint16_t),
							 block_elems * sizeof(uint16_t), c->n_layers,
							 cudaMemcpyDeviceToDevice, st->stream));
	}
	CK(cudaStreamSynchronize(st->stream));
	free(upd);
	return 0;
}

static size_t
cuda_memory_used(r1_backend *b)
{
	cuda_state *st = b->impl;

	return st->weight_bytes + st->kv_bytes + st->other_bytes + st->scratch_bytes;
}

static void
cuda_destroy(r1_backend *b)
{
	cuda_state *st;

	if (!b)
		return;
	st = b->impl;
	if (st)
	{
		if (st->stream)
			cudaStreamSynchronize(st->stream);
		graphs_reset(st);
		if (st->layers)
		{
			for (int l = 0; l < st->cfg->n_layers; l++)
			{
				cuda_layer *d = &st->layers[l];

				dfree(d->w_qkv);
				dfree(d->b_qkv);
				dfree(d->w_o);
				dfree(d->w_gu);
				dfree(d->w_down);
				dfree(d->attn_norm);
				dfree(d->ffn_norm);
				dfree(d->q.p);
				dfree(d->k.p);
				dfree(d->v.p);
				dfree(d->o.p);
				dfree(d->gate.p);
				dfree(d->up.p);
				dfree(d->down.p);
			}
			free(st->layers);
		}
		if (st->lm_head != st->embed)
			dfree(st->lm_head);
		dfree(st->embed);
		if (st->q_lm_head.p != st->q_embed.p)
			dfree(st->q_lm_head.p);
		dfree(st->q_embed.p);
		dfree(st->blas_ws);
		dfree(st->pa_s);
		dfree(st->pa_p);
		dfree(st->pa_k);
		dfree(st->pa_v);
		dfree(st->pa_q);
		dfree(st->cand_p);
		dfree(st->cand_id);
		dfree(st->samp_params);
		dfree(st->samp_out);
		if (st->samp_host)
			cudaFreeHost(st->samp_host);
		dfree(st->final_norm);
		dfree(st->rope_cos);
		dfree(st->rope_sin);
		dfree(st->kv_pool);
		dfree(st->tables);
		dfree(st->x);
		dfree(st->xb);
		dfree(st->qkv);
		dfree(st->q);
		dfree(st->att);
		dfree(st->gu);
		dfree(st->hbuf);
		dfree(st->logits);
		dfree(st->part_o);
		dfree(st->part_ml);
		dfree(st->meta);
		if (st->meta_host)
			cudaFreeHost(st->meta_host);
		if (st->blas)
			cublasDestroy(st->blas);
		if (st->stream)
			cudaStreamDestroy(st->stream);
		r1_kv_alloc_destroy(&st->alloc);
		r1_batch_plan_free(&st->plan);
		free(st->upd);
		free(st);
	}
	free(b);
}

/* ---------- creation ---------- */

static int
create_on_device(r1_backend *b, cuda_state *st, const r1_model *m, int max_slots, int max_ctx,
				 double fraction, r1_error *err)
{
	const r1_config *c = &m->cfg;
	struct cudaDeviceProp prop;
	size_t		free_b,
				total_b,
				block_bytes,
				reserve;
	int			n_blocks,
				prompt_attn_off,
				mbps = r1_kv_blocks_for(max_ctx),
				ms,
				T_res;
	long		max_useful;

	CK(cudaSetDevice(st->device));
	CK(cudaGetDeviceProperties(&prop, st->device));
	if (prop.major < 8)
		return r1_fail(err, "GPU %s (compute capability %d.%d) lacks bf16 support: 8.0 or newer is needed",
					   prop.name, prop.major, prop.minor);
	if (r1k_attention_smem(c->n_heads / c->n_kv_heads, c->head_dim) > prop.sharedMemPerBlock)
		return r1_fail(err, "attention needs %zu bytes of shared memory per block, the GPU allows %zu",
					   r1k_attention_smem(c->n_heads / c->n_kv_heads, c->head_dim), prop.sharedMemPerBlock);
	st->n_sms = prop.multiProcessorCount;
	CK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking));
	{
		const char *g = getenv("R1_CUDA_GRAPHS");

		st->graphs_off = g && strcmp(g, "0") == 0;
		g = getenv("R1_CUDA_GEMV");
		st->gemv_off = g && strcmp(g, "0") == 0;
		g = getenv("R1_CUDA_PROMPT_ATTN");
		prompt_attn_off = g && strcmp(g, "0") == 0;
	}
	CB(cublasCreate(&st->blas));
	CB(cublasSetStream(st->blas, st->stream));

	/*
	 * a workspace of our own: nothing for cuBLAS to allocate while a graph is
	 * captured
	 */
	if (dalloc(st, &st->blas_ws, R1_CUBLAS_WS, "the cuBLAS workspace", &st->other_bytes, err) != 0)
		return -1;
	CB(cublasSetWorkspace(st->blas, st->blas_ws, R1_CUBLAS_WS));

	if (upload_weights(st, m, err) != 0 || upload_rope(st, max_ctx, err) != 0)
		return -1;
	if (dalloc(st, (void **) &st->tables, (size_t) max_slots * mbps * 4, "block tables", &st->other_bytes, err))
		return -1;
	CK(cudaMemset(st->tables, 0, (size_t) max_slots * mbps * 4));	/* stale entries point
																	 * at a real block */

	/* the sampler's buffers, before the KV pool takes what is left */
	for (st->samp_n2 = 1; st->samp_n2 < c->vocab_size; st->samp_n2 <<= 1)
		;
	if (dalloc(st, (void **) &st->cand_p, (size_t) R1_SAMPLE_ROWS * st->samp_n2 * 4, "the sampler", &st->other_bytes, err) ||
		dalloc(st, (void **) &st->cand_id, (size_t) R1_SAMPLE_ROWS * st->samp_n2 * 4, "the sampler", &st->other_bytes, err) ||
		dalloc(st, (void **) &st->samp_params, R1_SAMPLE_ROWS * 8 * 4, "the sampler", &st->other_bytes, err) ||
		dalloc(st, (void **) &st->samp_out, R1_SAMPLE_ROWS * 4, "the sampler", &st->other_bytes, err))
		return -1;
	CK(cudaMallocHost((void **) &st->samp_host, R1_SAMPLE_ROWS * 9 * 4));

	/*
	 * Prompt attention's buffers; without them (or with
	 * R1_CUDA_PROMPT_ATTN=0) prompts take the split-K kernel.
	 */
	if (c->head_dim % 8 == 0 && !prompt_attn_off)
	{
		size_t		ld = ((size_t) max_ctx + 7) / 8 * 8;
		size_t		elems = (size_t) c->n_heads * R1_CUDA_MAX_TOKENS * ld;
		size_t		kv_elems = (size_t) c->n_kv_heads * max_ctx * c->head_dim;
		r1_error	ignored;

		if (elems > R1_PA_SCORES / 6)
			elems = R1_PA_SCORES / 6;
		if (dalloc(st, (void **) &st->pa_s, elems * 4, "prompt attention", &st->other_bytes, &ignored) ||
			dalloc(st, (void **) &st->pa_p, elems * 2, "prompt attention", &st->other_bytes, &ignored) ||
			dalloc(st, (void **) &st->pa_k, kv_elems * 2, "prompt attention", &st->other_bytes, &ignored) ||
			dalloc(st, (void **) &st->pa_v, kv_elems * 2, "prompt attention", &st->other_bytes, &ignored) ||
			dalloc(st, (void **) &st->pa_q, (size_t) R1_CUDA_MAX_TOKENS * c->n_heads * c->head_dim * 2,
				   "prompt attention", &st->other_bytes, &ignored))
		{
			dfree(st->pa_s);
			dfree(st->pa_p);
			dfree(st->pa_k);
			dfree(st->pa_v);
			dfree(st->pa_q);
			st->pa_s = NULL;
			st->pa_p = st->pa_k = st->pa_v = st->pa_q = NULL;
		}
		st->pa_score_elems = elems;
	}

	/* KV pool: a share of what is left after an activation reserve */
	T_res = R1_CUDA_MAX_TOKENS;
	r1_attn_part_size(T_res, c->n_kv_heads, max_ctx, 4 * st->n_sms, &ms);
	reserve = scratch_size(c, T_res, max_slots < T_res ? max_slots : T_res,
						   (size_t) T_res * c->n_heads * ms * c->head_dim) +
		RESERVE_EXTRA;
	block_bytes = (size_t) c->n_layers * 2 * c->n_kv_heads * R1_KV_BLOCK * c->head_dim * 2;
	max_useful = (long) max_slots * mbps;
	CK(cudaMemGetInfo(&free_b, &total_b));
	if (r1_kv_pool_blocks(free_b, fraction, reserve, block_bytes, max_useful, &n_blocks, err) != 0)
		return -1;
	if (dalloc(st, (void **) &st->kv_pool, (size_t) n_blocks * block_bytes, "the KV cache", &st->kv_bytes, err))
		return -1;
	if (r1_kv_alloc_init(&st->alloc, n_blocks, max_slots, max_ctx, err) != 0)
		return -1;
	(void) b;
	return 0;
}

int
r1_backend_cuda_create(r1_backend **out, const r1_model *m, int max_slots, int max_ctx,
					   double gpu_memory_fraction, r1_error *err)
{
	const r1_config *c = &m->cfg;
	r1_backend *b;
	cuda_state *st;
	int			n_dev = 0;
	cudaError_t e;

	*out = NULL;
	if (m->lazy)
		return r1_fail(err, "a model of on-demand random weights is for r1 convert only");
	if (max_slots < 1 || max_ctx < 1)
		return r1_fail(err, "max_slots and max_ctx must be positive");
	if (!(gpu_memory_fraction > 0.0 && gpu_memory_fraction <= 1.0))
		return r1_fail(err, "gpu_memory_fraction %g must be in (0, 1]", gpu_memory_fraction);
	if (!R1K_HEAD_DIM_OK(c->head_dim))
		return r1_fail(err, "the CUDA backend supports head_dim 16, 32, 64, 128 or 256, not %d", c->head_dim);
	if (c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads != 0 ||
		c->n_heads / c->n_kv_heads > R1_ATTN_MAX_GROUP)
		return r1_fail(err, "the CUDA backend supports up to %d query heads per KV head (%d / %d)",
					   R1_ATTN_MAX_GROUP, c->n_heads, c->n_kv_heads);
	if (c->n_kv_heads > 65535 || c->n_heads > 65535)
		return r1_fail(err, "too many heads for the CUDA backend");

	/* the first CUDA call of the process happens here, never at load time */
	e = cudaGetDeviceCount(&n_dev);
	if (e != cudaSuccess)
	{
		cudaGetLastError();
		return r1_fail(err, "no usable CUDA device: %s%s", cudaGetErrorString(e),
					   e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice ?
					   " (no NVIDIA driver or GPU on this machine?)" : "");
	}
	if (n_dev < 1)
		return r1_fail(err, "no usable CUDA device: none found");

	b = r1_calloc(1, sizeof(*b), err);
	if (!b)
		return -1;
	st = r1_calloc(1, sizeof(*st), err);
	if (!st)
	{
		free(b);
		return -1;
	}
	b->impl = st;
	b->name = "cuda";
	b->model = m;
	b->max_slots = max_slots;
	b->max_ctx = max_ctx;
	b->forward = cuda_forward;
	b->release_slot = cuda_release_slot;
	b->copy_kv = cuda_copy_kv;
	b->kv_fits = cuda_kv_fits;
	{
		/* logits never leave the GPU unless R1_GPU_SAMPLING=0 */
		const char *gs = getenv("R1_GPU_SAMPLING");

		b->can_sample = !(gs && strcmp(gs, "0") == 0);
	}
	b->memory_used = cuda_memory_used;
	b->destroy = cuda_destroy;
	st->cfg = c;
	st->device = 0;				/* CUDA_VISIBLE_DEVICES picks the GPU */
	if (create_on_device(b, st, m, max_slots, max_ctx, gpu_memory_fraction, err) != 0)
	{
		cuda_destroy(b);
		return -1;
	}
	*out = b;
	return 0;
}

#else							/* !R1_WITH_CUDA */

/* backend.c provides r1_backend_cuda_create's "built without CUDA" stub */
typedef int r1_backend_cuda_unused;

#endif							/* R1_WITH_CUDA */
