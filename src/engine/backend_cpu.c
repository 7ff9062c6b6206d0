/*
 * backend_cpu.c - the Qwen2 / Llama forward pass on the CPU, in float32
 * arithmetic.
 *
 * This is the reference the CUDA backend is checked against, and the fallback
 * where there is no GPU.  Weights stay in their file dtype (F32/F16/BF16, or
 * GGUF's Q8_0/Q4_0/Q5_0/Q4_K/Q5_K/Q6_K blocks).  Two arithmetics:
 *  - fast (the default): quantised weights meet 8-bit activations in integer
 *    dot products (qdot.h, on the processor's path: cpu_features.h), for
 *    decode and, for prompts, as a GEMM over the stored blocks (qgemm.h on
 *    AVX-512 VNNI, else the decode kernels four tokens a call); bf16 weights
 *    meet bf16 activations (bf16dot.h);
 *  - exact (cpu_exact): float32 activations; blocks are decoded inside float
 *    dot products (quant.c), and prompts widen blocks of rows to float32 for
 *    BLAS (sgemm).  This is what the golden fixtures check to 1e-4.
 * The KV cache is one contiguous, growing buffer per slot and layer.
 *
 * Per layer (llama2.c's forward(), with Qwen2's q/k/v biases when the model
 * has them, Llama 3's scaled rope frequencies when it has those, and the
 * half-split "NeoX" rotary layout):
 *   xb = rmsnorm(x) * w;  q,k,v = xb W^T + b;  rope(q, k);  cache k, v;
 *   o = attention(q, cache);  x += o Wo^T;
 *   xb = rmsnorm(x) * w;  x += (silu(xb Wg^T) * (xb Wu^T)) Wd^T
 * then logits = rmsnorm(x) * w  lm_head^T.
 */
#include "backend.h"
#include "bf16dot.h"
#include "cpu_features.h"
#include "qdot.h"
#include "qgemm.h"
#include "repack.h"
#include "quant.h"
#include "vmath.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

/* rows of a half-precision weight widened per sgemm call during prefill */
#define WIDEN_BLOCK_ROWS 64
/* from this many tokens on, a linear layer goes through BLAS */
#define GEMM_MIN_TOKENS 8
/* element-wise work (norms, activations, residuals) runs on every thread from this many elements on */
#define PAR_MIN_ELEMS 4096
/* weight rows per block of the integer prompt GEMM: 16 rows stay in L1/L2 while every token passes */
#define QROW_BLOCK 16
_Static_assert(QROW_BLOCK == 16, "R1_QGEMM_SCRATCH_BYTES and the AMX GEMM hold 16 rows");

/*
 * up to this many tokens, x8 weights (repack.h) go through the x8 kernels,
 * four tokens a call while a group of eight rows is in L1; more take the
 * prompt GEMM, which unpacks rows from the copy.  Measured on the 2-core VM: batch 16 and
 * 32 decode 1.7x faster for Q4_K_M, Q8_0 even at 32; a 128-token prompt
 * ~15% slower than the GEMM.
 */
#define X8_MAX_TOKENS 32

/*
 * where the AMX GEMM may run (batch_invariant off), it takes over sooner:
 * measured on an AMX Xeon VM (2 cores), batch-16 decode went 61 -> 92 tok/s
 * for Q8_0 on the tiles but 84 -> 74 for Q4_K_M, and a 32-token Q4_K_M
 * prompt 111 -> 150 tok/s
 */
#define X8_MAX_TOKENS_AMX_Q8 8
#define X8_MAX_TOKENS_AMX_K 16

typedef struct cpu_slot
{
	void	  **k;				/* [n_layers] -> [cap, kv_dim] keys (after
								 * RoPE), in kv_dt */
	void	  **v;				/* [n_layers] -> [cap, kv_dim] values, in
								 * kv_dt */
	int			cap;			/* positions allocated */
} cpu_slot;

typedef struct cpu_state
{
	const r1_config *cfg;
	int			threads;
	cpu_slot   *slots;			/* [max_slots] */
	double	   *inv_freq;		/* [head_dim/2] RoPE frequencies, in double */
	/* activations, grown to the largest batch seen */
	int			cap_tokens;
	float	   *x;				/* [T, hidden] residual stream */
	float	   *xb;				/* [T, hidden] normed input of a sublayer */
	float	   *q;				/* [T, n_heads*head_dim] */
	float	   *k;				/* [T, kv_dim] */
	float	   *v;				/* [T, kv_dim] */
	float	   *att;			/* [T, n_heads*head_dim] attention output */
	float	   *ob;				/* [T, hidden] sublayer output */
	float	   *hg;				/* [T, intermediate] gate, then silu(gate)*up */
	float	   *hu;				/* [T, intermediate] up */
	float	   *scores;			/* [threads, max_ctx + 1] attention scores */
	float	   *widen;			/* [threads, WIDEN_BLOCK_ROWS, widest] widened
								 * weight rows */
	int			widest;			/* max(hidden, intermediate, q dim): longest
								 * weight row */
	r1_cpu_path path;			/* the kernel path (cpu_features.h) */
	int			fast;			/* !cpu_exact of the forward running */
	int8_t	   *aq;				/* [T, widest] a linear layer's input as 8-bit
								 * codes (qdot.h) */
	float	   *ad;				/* [T, widest / 32] their block scales */
	int16_t    *absum;			/* [T, widest / 16] their sums of 16 */
	uint16_t   *abf;			/* [T, widest] a linear layer's input rounded
								 * to bf16 (bf16dot.h) */
	void	   *qpack;			/* the prompt GEMM's packed activations
								 * (qgemm.h), for cap_tokens */
	void	   *qunpack;		/* [threads, QROW_BLOCK] unpacked weight rows
								 * of the prompt GEMM */
	r1_repack_set x8;			/* x8 copies of Q8_0/K-quant weights
								 * (repack.h) */
	size_t		kv_bytes;		/* bytes held by the KV cache */
	r1_dtype	kv_dt;			/* the cache's element type: b->kv_dtype when
								 * the first slot grew */
	size_t		scratch_bytes;
} cpu_state;

/* ---------- dot products and linear layers ---------- */

static inline float
hsum256(
#ifdef __AVX2__
		__m256 v
#else
		float v
#endif
)
{
#ifdef __AVX2__
	__m128		lo = _mm256_castps256_ps128(v);
	__m128		hi = _mm256_extractf128_ps(v, 1);

	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
	return _mm_cvtss_f32(lo);
#else
	return v;
#endif
}

/*
 * Batch invariance.  Every path through a linear layer computes each output
 * with the same arithmetic, in the same order, whatever the batch holds:
 * two 8-lane accumulators over blocks of 16 inputs (even and odd halves),
 * summed and reduced by hsum256, then the last n % 16 inputs one by one with
 * fmaf.  dot_row (one token), dot_row4 (four tokens sharing each widened
 * weight) and the batch-invariant prompt path below follow it exactly, so a
 * token's logits do not depend on its neighbours.  Only the BLAS path for
 * batches of GEMM_MIN_TOKENS and more (sgemm blocks and orders the sums its
 * own way) leaves it, and only when batch_invariant is off.
 */

/* weight i of row w, widened */
static inline float
weight_at(const void *w, r1_dtype dt, int i)
{
	if (dt == R1_BF16)
		return r1_bf16_to_f32(((const uint16_t *) w)[i]);
	if (dt == R1_F16)
		return r1_f16_to_f32(((const uint16_t *) w)[i]);
	return ((const float *) w)[i];
}

/* the scalar tail [i, n) of the canonical order, added to s */
static inline float
dot_tail(const void *w, r1_dtype dt, const float *x, int i, int n, float s)
{
	for (; i < n; i++)
		s = fmaf(weight_at(w, dt, i), x[i], s);
	return s;
}

#ifdef __AVX2__
/* 8 weights of row w from index i, widened to float32 */
static inline __m256
load8(const void *w, r1_dtype dt, int i)
{
	if (dt == R1_BF16)
		return _mm256_castsi256_ps(_mm256_slli_epi32(
													 _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *) ((const uint16_t *) w + i))), 16));
	if (dt == R1_F16)
		return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) ((const uint16_t *) w + i)));
	return _mm256_loadu_ps((const float *) w + i);
}
#endif

/* dot of weight row w (n elements of dtype dt) with float vector x */
static float
dot_row(const void *w, r1_dtype dt, const float *x, int n)
{
	int			i = 0;
	float		s = 0.0f;

	if (r1_dtype_is_quant(dt))
		return r1_quant_dot(dt, w, x, n);
#ifdef __AVX2__
	__m256		acc0 = _mm256_setzero_ps(),
				acc1 = _mm256_setzero_ps();

	for (; i + 16 <= n; i += 16)
	{
		acc0 = _mm256_fmadd_ps(load8(w, dt, i), _mm256_loadu_ps(x + i), acc0);
		acc1 = _mm256_fmadd_ps(load8(w, dt, i + 8), _mm256_loadu_ps(x + i + 8), acc1);
	}
	s = hsum256(_mm256_add_ps(acc0, acc1));
#endif
	return dot_tail(w, dt, x, i, n, s);
}

/*
 * out[t * stride] = dot(w, x_t) for 4 tokens at once: each weight is widened
 * once and used four times, which is what makes small decode batches cheap.
 * Bitwise the same as four dot_row calls.
 */
static void
dot_row4(const void *w, r1_dtype dt, const float *x, int n, float *out, size_t stride)
{
	if (r1_dtype_is_quant(dt))
	{
		r1_quant_dot4(dt, w, x, n, out, stride);
		return;
	}
#ifdef __AVX2__
	__m256		a0 = _mm256_setzero_ps(),
				b0 = _mm256_setzero_ps(),
				a1 = _mm256_setzero_ps(),
				b1 = _mm256_setzero_ps(),
				a2 = _mm256_setzero_ps(),
				b2 = _mm256_setzero_ps(),
				a3 = _mm256_setzero_ps(),
				b3 = _mm256_setzero_ps();
	int			i = 0;

	for (; i + 16 <= n; i += 16)
	{
		__m256		lo = load8(w, dt, i),
					hi = load8(w, dt, i + 8);

		a0 = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x + i), a0);
		b0 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + i + 8), b0);
		a1 = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x + n + i), a1);
		b1 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + n + i + 8), b1);
		a2 = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x + 2 * n + i), a2);
		b2 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + 2 * n + i + 8), b2);
		a3 = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x + 3 * n + i), a3);
		b3 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + 3 * n + i + 8), b3);
	}
	out[0] = dot_tail(w, dt, x, i, n, hsum256(_mm256_add_ps(a0, b0)));
	out[stride] = dot_tail(w, dt, x + n, i, n, hsum256(_mm256_add_ps(a1, b1)));
	out[2 * stride] = dot_tail(w, dt, x + 2 * n, i, n, hsum256(_mm256_add_ps(a2, b2)));
	out[3 * stride] = dot_tail(w, dt, x + 3 * n, i, n, hsum256(_mm256_add_ps(a3, b3)));
#else
	for (int t = 0; t < 4; t++)
		out[t * stride] = dot_row(w, dt, x + (size_t) t * n, n);
#endif
}

/* out[t * n_out + r] for tokens [0, T) of one weight row: the decode kernel */
static void
dot_tokens(const void *row, r1_dtype dt, const float *x, int T, int n_in, float *out, int n_out)
{
	int			t = 0;

	for (; t + 4 <= T; t += 4)
		dot_row4(row, dt, x + (size_t) t * n_in, n_in, out + (size_t) t * n_out, n_out);
	for (; t < T; t++)
		out[(size_t) t * n_out] = dot_row(row, dt, x + (size_t) t * n_in, n_in);
}

/* widen rows [row0, row0 + nrows) of w to float32 */
static void
widen_rows(float *dst, const r1_tensor *w, int row0, int nrows, int n_in, size_t row_bytes)
{
	for (int r = 0; r < nrows; r++)
	{
		const void *src = (const char *) w->data + (size_t) (row0 + r) * row_bytes;
		float	   *d = dst + (size_t) r * n_in;

		if (w->dtype == R1_BF16)
			for (int i = 0; i < n_in; i++)
				d[i] = r1_bf16_to_f32(((const uint16_t *) src)[i]);
		else if (w->dtype == R1_F16)
			for (int i = 0; i < n_in; i++)
				d[i] = r1_f16_to_f32(((const uint16_t *) src)[i]);
		else
			r1_dequantize_row(w->dtype, src, d, n_in);
	}
}

/*
 * The fast arithmetic's linear layers: quantised W against 8-bit
 * activations (qdot.h), bf16 W against bf16 activations (bf16dot.h).  A
 * token's activations are quantised (rounded) on their own, and each output
 * is one kernel call over them, so the result does not depend on the batch
 * in any mode.
 */
typedef struct lowp
{
	r1_qdot_fn	qf;				/* quantised W: the kernel, else bf16 W */
	r1_qx		qx;				/* quantised: token 0's codes */
	int			block;
	const uint16_t *xb;			/* bf16: [T, n_in] rounded activations */
} lowp;

/* outputs of one weight row for tokens [t0, t0 + nt), nt <= 4 */
static inline void
lowp_row(const lowp *L, const uint8_t *row, int t0, int nt, int n_in, float *out, int n_out)
{
	if (L->qf)
	{
		r1_qx		sub = {L->qx.q + (size_t) t0 * n_in, L->qx.d + (size_t) t0 * (n_in / L->block),
		L->qx.bsum + (size_t) t0 * (n_in / 16), n_in};

		L->qf(row, &sub, nt, out, n_out);
	}
	else
		r1_bf16dot_avx512((const uint16_t *) row, L->xb + (size_t) t0 * n_in, n_in, nt, out, n_out);
}

/* can the fast arithmetic take this weight? */
static int
lowp_takes(const cpu_state *st, const r1_tensor *w, int n_in)
{
	int			block = r1_qdot_block(w->dtype);

	if (!st->fast)
		return 0;
	if (block)
		return n_in % block == 0;
	return w->dtype == R1_BF16 && r1_cpu()->avx512_bf16;
}

/*
 * The fast arithmetic for weights of dt with n_in inputs: the kernel and
 * where the activations go (st->aq/ad/absum, or st->abf for bf16), and the
 * activations x[T, n_in] put there, each token on its own.
 */
static void
lowp_prepare(cpu_state *st, lowp *L, r1_dtype dt, const float *x, int T, int n_in)
{
	memset(L, 0, sizeof(*L));
	L->block = r1_qdot_block(dt);
	if (L->block)
	{
		L->qf = r1_qdot_kernel(st->path, dt);
		L->qx.q = st->aq;
		L->qx.d = st->ad;
		L->qx.bsum = st->absum;
		L->qx.n = n_in;
	}
	else
		L->xb = st->abf;
	if (!x)
		return;
#pragma omp parallel for schedule(static) if (T > 4)
	for (int t = 0; t < T; t++)
	{
		if (L->block)
			r1_qdot_quantize(x + (size_t) t * n_in, n_in, L->block, st->aq + (size_t) t * n_in,
							 st->ad + (size_t) t * (n_in / L->block), st->absum + (size_t) t * (n_in / 16));
		else
			for (int i = 0; i < n_in; i++)
				st->abf[(size_t) t * n_in + i] = r1_f32_to_bf16(x[(size_t) t * n_in + i]);
	}
}

/* out[T, n_out] += bias */
static void
add_bias(float *out, int T, const r1_tensor *bias, int n_out)
{
#pragma omp parallel for schedule(static) if ((size_t) T * n_out >= PAR_MIN_ELEMS)
	for (int t = 0; t < T; t++)
	{
		float	   *o = out + (size_t) t * n_out;

		if (bias->dtype == R1_F32)
			for (int r = 0; r < n_out; r++)
				o[r] += ((const float *) bias->data)[r];
		else
			for (int r = 0; r < n_out; r++)
				o[r] += r1_tensor_get_f32(bias, (size_t) r);
	}
}

/* w's x8 copy (repack.h) when the fast arithmetic runs on it, else NULL */
static const uint8_t *
weight_x8(const cpu_state *st, const r1_tensor *w)
{
	return st->fast && st->x8.n ? r1_repack_find(&st->x8, w) : NULL;
}

/* may the AMX prompt GEMM (qgemm.h) take quantised weights of dt with n_in inputs? */
static int
amx_takes(const cpu_state *st, r1_dtype dt, int n_in, int invariant)
{
	return !invariant && st->path == R1_CPU_AVX512_VNNI && r1_qdot_block(dt) && r1_qgemm_amx_takes(dt, n_in);
}

/*
 * out[T, n_out] = x[T, n_in] W^T in the fast arithmetic.  Weights with an
 * x8 copy and up to X8_MAX_TOKENS tokens: eight rows at a time, every token
 * in fours against them.  A few tokens (decode): every weight row is read
 * once for all of them.  More (prompts): a blocked GEMM over the stored
 * weights, QROW_BLOCK rows a thread at a time, four tokens a kernel call, so
 * a block of rows (unpacked in registers) serves every token while it is in
 * cache.
 */
static void
linear_lowp(cpu_state *st, float *out, const float *x, int T, const r1_tensor *w, int n_out, int n_in,
			size_t row_bytes, int invariant)
{
	lowp		L;
	const uint8_t *wd = w->data;
	const uint8_t *x8 = weight_x8(st, w);
	int			nblocks = (n_out + QROW_BLOCK - 1) / QROW_BLOCK;
	int			amx = amx_takes(st, w->dtype, n_in, invariant);
	int			bf_amx = !invariant && w->dtype == R1_BF16 && r1_bf16_amx_takes(n_in);
	int			x8_max = !amx ? X8_MAX_TOKENS : w->dtype == R1_Q8_0 ? X8_MAX_TOKENS_AMX_Q8 : X8_MAX_TOKENS_AMX_K;

	lowp_prepare(st, &L, w->dtype, x, T, n_in);
	if (x8 && T <= x8_max)
	{
		r1_qdot8_fn f8 = r1_qdot8_kernel(st->path, w->dtype);

#pragma omp parallel for schedule(static)
		for (int g = 0; g < n_out / R1_REPACK_ROWS; g++)
			for (int t0 = 0; t0 < T; t0 += 4)
			{
				r1_qx		sub = {L.qx.q + (size_t) t0 * n_in, L.qx.d + (size_t) t0 * (n_in / L.block),
				L.qx.bsum + (size_t) t0 * (n_in / 16), n_in};

				f8(x8 + (size_t) g * R1_REPACK_ROWS * row_bytes, &sub, T - t0 < 4 ? T - t0 : 4,
				   out + (size_t) t0 * n_out + (size_t) g * R1_REPACK_ROWS, n_out);
			}
		return;
	}
	if (T <= 4 && !(bf_amx && T > 1))
	{
#pragma omp parallel for schedule(static)
		for (int r = 0; r < n_out; r++)
			lowp_row(&L, wd + (size_t) r * row_bytes, 0, T, n_in, out + r, n_out);
		return;
	}
	if (L.qf && (amx || r1_qgemm_takes(st->path, w->dtype, n_in)))
	{
		/*
		 * AMX tiles (ggml's arithmetic, so not when the batch must not
		 * matter) or the VNNI GEMM (qdot.h's bits)
		 */
		r1_qxa		A;
		r1_qxp		P;
		int			groups = amx ? (T + 15) / 16 : (T + R1_QGEMM_TILE - 1) / R1_QGEMM_TILE;

		if (amx)
			r1_qgemm_amx_layout(w->dtype, n_in, T, st->qpack, &A);
		else
			r1_qgemm_layout(w->dtype, n_in, T, st->qpack, &P);
#pragma omp parallel for schedule(static)
		for (int g = 0; g < groups; g++)
		{
			if (amx)
				r1_qgemm_amx_pack(&L.qx, &A, g, g + 1);
			else
				r1_qgemm_pack(&L.qx, &P, g, g + 1);
		}
#pragma omp parallel for schedule(dynamic)
		for (int blk = 0; blk < nblocks; blk++)
		{
			int			r0 = blk * QROW_BLOCK;
			int			nr = n_out - r0 < QROW_BLOCK ? n_out - r0 : QROW_BLOCK;
			uint8_t    *unpack = (uint8_t *) st->qunpack
			+ (size_t) omp_get_thread_num() * R1_QGEMM_SCRATCH_BYTES(n_in);

			if (amx)
				r1_qgemm_amx_rows(w->dtype, x8 ? x8 : wd, x8 != NULL, row_bytes, r0, nr, &A, out, n_out, unpack);
			else if (x8)
				r1_qgemm_rows_x8(w->dtype, x8, row_bytes, r0, nr, &P, out, n_out, unpack);
			else
				r1_qgemm_rows(w->dtype, wd, row_bytes, r0, nr, &P, out, n_out, unpack);
		}
		return;
	}
	if (bf_amx)
	{
		/*
		 * AMX-BF16 tiles: float sums in their own order, so not when the
		 * batch must not matter
		 */
		int			groups = (T + 15) / 16;

#pragma omp parallel for schedule(static)
		for (int g = 0; g < groups; g++)
			r1_bf16_amx_pack(L.xb, T, n_in, st->qpack, g, g + 1);
#pragma omp parallel for schedule(dynamic)
		for (int blk = 0; blk < nblocks; blk++)
		{
			int			r0 = blk * QROW_BLOCK;
			int			nr = n_out - r0 < QROW_BLOCK ? n_out - r0 : QROW_BLOCK;

			r1_bf16_amx_rows((const uint16_t *) (wd + (size_t) r0 * row_bytes), nr, st->qpack, T, n_in, out + r0,
							 n_out);
		}
		return;
	}
	if (!L.qf)
	{
#pragma omp parallel for schedule(dynamic)
		for (int blk = 0; blk < nblocks; blk++)
		{
			int			r0 = blk * QROW_BLOCK;
			int			nr = n_out - r0 < QROW_BLOCK ? n_out - r0 : QROW_BLOCK;

			r1_bf16_gemm_rows((const uint16_t *) (wd + (size_t) r0 * row_bytes), nr, L.xb, T, n_in, out + r0, n_out);
		}
		return;
	}
#pragma omp parallel for schedule(dynamic)
	for (int blk = 0; blk < nblocks; blk++)
	{
		int			r0 = blk * QROW_BLOCK;
		int			nr = n_out - r0 < QROW_BLOCK ? n_out - r0 : QROW_BLOCK;

		for (int t0 = 0; t0 < T; t0 += 4)
		{
			int			nt = T - t0 < 4 ? T - t0 : 4;

			for (int r = 0; r < nr; r++)
				lowp_row(&L, wd + (size_t) (r0 + r) * row_bytes, t0, nt, n_in,
						 out + (size_t) t0 * n_out + r0 + r, n_out);
		}
	}
}

/*
 * out[T, n_out] = x[T, n_in] W[n_out, n_in]^T (+ bias).  out and x must not
 * overlap.  One thread pool (OpenMP) does all the work: for prompts each
 * thread takes blocks of weight rows, widens them into its own buffer while
 * they are hot, and multiplies them with a single-threaded sgemm, or, when
 * batch-invariant, with the decode kernel (the canonical order above) over
 * the widened rows, four tokens at a time.
 */
static void
linear(cpu_state *st, float *out, const float *x, int T, const r1_tensor *w,
	   const r1_tensor *bias, int n_out, int n_in, int invariant)
{
	size_t		row_bytes = 0;

	/* the loader checked that rows are whole blocks */
	(void) r1_dtype_row_bytes(w->dtype, n_in, &row_bytes);
	if (lowp_takes(st, w, n_in))
		linear_lowp(st, out, x, T, w, n_out, n_in, row_bytes, invariant);
	else if (T >= GEMM_MIN_TOKENS)
	{
		int			nblocks = (n_out + WIDEN_BLOCK_ROWS - 1) / WIDEN_BLOCK_ROWS;

#pragma omp parallel for schedule(dynamic)
		for (int blk = 0; blk < nblocks; blk++)
		{
			int			r0 = blk * WIDEN_BLOCK_ROWS;
			int			nr = n_out - r0 < WIDEN_BLOCK_ROWS ? n_out - r0 : WIDEN_BLOCK_ROWS;
			const float *wf = NULL;

			if (invariant && r1_dtype_is_quant(w->dtype))
			{
				/*
				 * quantised rows: the decode kernel over the blocks as they
				 * are (widened floats would sum in another order)
				 */
				for (int r = 0; r < nr; r++)
					dot_tokens((const char *) w->data + (size_t) (r0 + r) * row_bytes, w->dtype, x, T,
							   n_in, out + r0 + r, n_out);
				continue;
			}
			if (w->dtype == R1_F32)
				wf = (const float *) w->data + (size_t) r0 * n_in;
			else
			{
				float	   *buf = st->widen + (size_t) omp_get_thread_num() * WIDEN_BLOCK_ROWS * st->widest;

				widen_rows(buf, w, r0, nr, n_in, row_bytes);
				wf = buf;
			}
			if (!invariant)
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, nr, n_in, 1.0f,
							x, n_in, wf, n_in, 0.0f, out + r0, n_out);
			else
			{
				/*
				 * token groups outside, so four tokens' inputs stay in L1
				 * over the block
				 */
				int			t = 0;

				for (; t + 4 <= T; t += 4)
					for (int r = 0; r < nr; r++)
						dot_row4(wf + (size_t) r * n_in, R1_F32, x + (size_t) t * n_in, n_in,
								 out + (size_t) t * n_out + r0 + r, n_out);
				for (; t < T; t++)
					for (int r = 0; r < nr; r++)
						out[(size_t) t * n_out + r0 + r] =
							dot_row(wf + (size_t) r * n_in, R1_F32, x + (size_t) t * n_in, n_in);
			}
		}
	}
	else
	{
		/*
		 * each weight row is read once for all T tokens: decode is
		 * memory-bound
		 */
#pragma omp parallel for schedule(static)
		for (int r = 0; r < n_out; r++)
			dot_tokens((const char *) w->data + (size_t) r * row_bytes, w->dtype, x, T, n_in,
					   out + r, n_out);
	}
	if (bias)
		add_bias(out, T, bias, n_out);
}

/*
 * Linear layers that read the same input (q, k, v; gate, up): for a few
 * tokens (decode) in the fast arithmetic, the input is quantised once and
 * every row of every layer is shared out among the threads in one parallel
 * loop, instead of one loop (and one wait for the slowest thread) a layer.
 * Each output is the one linear() computes.
 */
static void
linear_group(cpu_state *st, int nw, float *const *outs, const r1_tensor *const *ws,
			 const r1_tensor *const *biases, const int *n_outs, const float *x, int T, int n_in, int invariant)
{
	lowp		L[3];
	size_t		rbytes[3] = {0};
	int			start[4] = {0};
	int			block = r1_qdot_block(ws[0]->dtype);
	const uint8_t *x8[3] = {NULL};
	r1_qdot8_fn f8[3] = {NULL};
	int			eights = 1;

	for (int j = 0; j < nw; j++)
		if (T > 4 || nw > 3 || !lowp_takes(st, ws[j], n_in) || r1_qdot_block(ws[j]->dtype) != block)
		{
			for (int k = 0; k < nw; k++)
				linear(st, outs[k], x, T, ws[k], biases[k], n_outs[k], n_in, invariant);
			return;
		}
	/* one block size, so the activations are put in place once, for all */
	for (int j = 0; j < nw; j++)
	{
		lowp_prepare(st, &L[j], ws[j]->dtype, j == 0 ? x : NULL, T, n_in);
		(void) r1_dtype_row_bytes(ws[j]->dtype, n_in, &rbytes[j]);
		start[j + 1] = start[j] + n_outs[j];
	}
	for (int j = 0; j < nw; j++)
	{
		x8[j] = weight_x8(st, ws[j]);
		f8[j] = x8[j] ? r1_qdot8_kernel(st->path, ws[j]->dtype) : NULL;
		eights &= n_outs[j] % R1_REPACK_ROWS == 0;
	}
	if (eights)
	{
		/* units of eight rows, through the x8 kernel where a layer has one */
#pragma omp parallel for schedule(static)
		for (int u = 0; u < start[nw] / R1_REPACK_ROWS; u++)
		{
			int			r = u * R1_REPACK_ROWS;
			int			j = r >= start[1] ? (r >= start[2] && nw > 2 ? 2 : 1) : 0;
			int			row = r - start[j];

			if (x8[j])
				f8[j] (x8[j] + (size_t) row * rbytes[j], &L[j].qx, T, outs[j] + row, n_outs[j]);
			else
				for (int k = 0; k < R1_REPACK_ROWS; k++)
					lowp_row(&L[j], (const uint8_t *) ws[j]->data + (size_t) (row + k) * rbytes[j], 0, T, n_in,
							 outs[j] + row + k, n_outs[j]);
		}
	}
	else
#pragma omp parallel for schedule(static)
		for (int r = 0; r < start[nw]; r++)
		{
			int			j = r >= start[1] ? (r >= start[2] && nw > 2 ? 2 : 1) : 0;
			int			row = r - start[j];

			lowp_row(&L[j], (const uint8_t *) ws[j]->data + (size_t) row * rbytes[j], 0, T, n_in, outs[j] + row,
					 n_outs[j]);
		}
	for (int j = 0; j < nw; j++)
		if (biases[j])
			add_bias(outs[j], T, biases[j], n_outs[j]);
}

/* ---------- the KV cache in f32, f16 or bf16 ---------- */

/*
 * Keys and values are stored in the cache's type and widened where
 * attention reads them: the 16-bit types halve the bytes attention streams
 * per position.  f16 (F16C's vcvtps2ph/vcvtph2ps, round to nearest even)
 * keeps 11 significant bits, bf16 8; both convert the same way in every
 * batch, so batch invariance is unaffected.
 */
static void
kv_store(r1_dtype dt, void *cache, size_t off, const float *x, int n)
{
	int			i = 0;

	if (dt == R1_F32)
	{
		memcpy((float *) cache + off, x, sizeof(float) * n);
		return;
	}
	{
		uint16_t   *d = (uint16_t *) cache + off;

		if (dt == R1_F16)
			for (; i + 8 <= n; i += 8)
				_mm_storeu_si128((__m128i *) (d + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
		for (; i < n; i++)
			d[i] = dt == R1_F16 ? r1_f32_to_f16(x[i]) : r1_f32_to_bf16(x[i]);
	}
}

/* 8 cached elements from index i, widened */
static inline __m256
kv_load8(r1_dtype dt, const void *cache, size_t i)
{
	if (dt == R1_F16)
		return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) ((const uint16_t *) cache + i)));
	if (dt == R1_BF16)
		return _mm256_castsi256_ps(_mm256_slli_epi32(
													 _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *) ((const uint16_t *) cache + i))), 16));
	return _mm256_loadu_ps((const float *) cache + i);
}

static inline float
kv_at(r1_dtype dt, const void *cache, size_t i)
{
	if (dt == R1_F16)
		return r1_f16_to_f32(((const uint16_t *) cache)[i]);
	if (dt == R1_BF16)
		return r1_bf16_to_f32(((const uint16_t *) cache)[i]);
	return ((const float *) cache)[i];
}

/* dot(q, cache[off .. off + n)) */
static inline float
kv_dot(r1_dtype dt, const void *cache, size_t off, const float *q, int n)
{
	__m256		acc = _mm256_setzero_ps();
	int			i = 0;
	float		s;

	for (; i + 8 <= n; i += 8)
		acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv_load8(dt, cache, off + i), acc);
	s = hsum256(acc);
	for (; i < n; i++)
		s = fmaf(q[i], kv_at(dt, cache, off + i), s);
	return s;
}

/* o += a * cache[off .. off + n) */
static inline void
kv_axpy(r1_dtype dt, const void *cache, size_t off, float a, float *o, int n)
{
	__m256		av = _mm256_set1_ps(a);
	int			i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(o + i, _mm256_fmadd_ps(av, kv_load8(dt, cache, off + i), _mm256_loadu_ps(o + i)));
	for (; i < n; i++)
		o[i] = fmaf(a, kv_at(dt, cache, off + i), o[i]);
}

/* ---------- elementwise pieces ---------- */

static void
rmsnorm(float *out, const float *x, const r1_tensor *w, int n, float eps)
{
	double		ss = 0.0;
	float		scale;

	for (int i = 0; i < n; i++)
		ss += (double) x[i] * x[i];
	scale = (float) (1.0 / sqrt(ss / n + eps));
	for (int i = 0; i < n; i++)
		out[i] = x[i] * scale * r1_tensor_get_f32(w, (size_t) i);
}

/* rotate one head in place: pairs (i, i + d/2), NeoX layout */
/* cos and sin of a position's angles, cs[2i], cs[2i + 1], in double then rounded, once per token */
static void
rope_angles(float *cs, int head_dim, int pos, const double *inv_freq)
{
	for (int i = 0; i < head_dim / 2; i++)
	{
		double		ang = (double) pos * inv_freq[i];

		cs[2 * i] = (float) cos(ang);
		cs[2 * i + 1] = (float) sin(ang);
	}
}

static void
rope_head(float *h, int head_dim, const float *cs)
{
	int			half = head_dim / 2;

	for (int i = 0; i < half; i++)
	{
		float		c = cs[2 * i],
					s = cs[2 * i + 1];
		float		a = h[i],
					b = h[i + half];

		h[i] = a * c - b * s;
		h[i + half] = b * c + a * s;
	}
}

/* ---------- state ---------- */

static int
grow_scratch(cpu_state *st, int T, r1_error *err)
{
	const r1_config *c = st->cfg;
	size_t		qd = (size_t) c->n_heads * c->head_dim;
	size_t		kvd = (size_t) c->n_kv_heads * c->head_dim;
	float	  **bufs[] = {&st->x, &st->xb, &st->q, &st->k, &st->v, &st->att, &st->ob, &st->hg, &st->hu};
	size_t		widths[] = {c->hidden_size, c->hidden_size, qd, kvd, kvd, qd, c->hidden_size,
	c->intermediate_size, c->intermediate_size};

	if (T <= st->cap_tokens)
		return 0;
	st->scratch_bytes = 0;
	for (int i = 0; i < 9; i++)
	{
		float	   *p = realloc(*bufs[i], (size_t) T * widths[i] * sizeof(float));

		if (!p)
			return r1_fail(err, "out of memory for activations of %d tokens", T);
		*bufs[i] = p;
		st->scratch_bytes += (size_t) T * widths[i] * sizeof(float);
	}
	{
		int8_t	   *aq = realloc(st->aq, (size_t) T * st->widest);
		float	   *ad;
		int16_t    *bs;
		uint16_t   *bf;

		if (aq)
			st->aq = aq;
		ad = realloc(st->ad, sizeof(float) * (size_t) T * (st->widest / 32));
		if (ad)
			st->ad = ad;
		bs = realloc(st->absum, sizeof(int16_t) * (size_t) T * (st->widest / 16));
		if (bs)
			st->absum = bs;
		bf = realloc(st->abf, sizeof(uint16_t) * (size_t) T * st->widest);
		if (bf)
			st->abf = bf;
		if (!aq || !ad || !bs || !bf)
			return r1_fail(err, "out of memory for activations of %d tokens", T);
		st->scratch_bytes += (size_t) T * st->widest * (3 + 4.0 / 32 + 2.0 / 16);
	}
	if (st->path == R1_CPU_AVX512_VNNI)
	{
		size_t		pb = r1_qgemm_pack_bytes(T, st->widest),
					ub = (size_t) st->threads * R1_QGEMM_SCRATCH_BYTES(st->widest);

		void	   *qp = aligned_alloc(64, pb);

		/* the old buffer serves cap_tokens until the new one is there */
		if (!qp)
			return r1_fail(err, "out of memory for activations of %d tokens", T);
		free(st->qpack);
		st->qpack = qp;
		if (!st->qunpack)
			st->qunpack = aligned_alloc(64, ub);
		if (!st->qunpack)
			return r1_fail(err, "out of memory for activations of %d tokens", T);
		st->scratch_bytes += pb + ub;
	}
	st->cap_tokens = T;
	return 0;
}

/*
 * the capacity a slot of capacity cap grows to for positions [0, need): the
 * next doubling from 256, at most lim (slot_lim) but never less than need
 */
static int
grown_cap(int cap, int need, int lim)
{
	int			c = cap ? cap : 256;

	if (need <= cap)
		return cap;
	while (c < need)
		c *= 2;
	if (c > lim)
		c = lim;
	return c < need ? need : c;
}

/* bytes of one cached key or value element */
static size_t
kv_elem(const cpu_state *st)
{
	return st->kv_dt == R1_F32 ? 4 : 2;
}

static size_t
cap_bytes(const cpu_state *st, int cap)
{
	const r1_config *c = st->cfg;

	return (size_t) cap * c->n_kv_heads * c->head_dim * 2 * c->n_layers * kv_elem(st);
}

/*
 * The most positions a slot grows to at once: max_ctx, and no more than the
 * KV memory limit holds (a doubling past it would refuse a sequence that
 * fits).
 */
static int
slot_lim(const r1_backend *b, const cpu_state *st)
{
	size_t		fit;

	if (b->max_kv_bytes == 0)
		return b->max_ctx;
	fit = b->max_kv_bytes / cap_bytes(st, 1);
	return fit < (size_t) b->max_ctx ? (int) fit : b->max_ctx;
}

static int
cpu_kv_fits(r1_backend *b, int n, const int *slots, const int *ends)
{
	cpu_state  *st = b->impl;
	size_t		more = 0;
	int			lim;

	if (b->max_kv_bytes == 0)
		return 1;
	if (st->kv_bytes == 0)
		st->kv_dt = b->kv_dtype == R1_F16 || b->kv_dtype == R1_BF16 ? b->kv_dtype : R1_F32;
	lim = slot_lim(b, st);
	for (int i = 0; i < n; i++)
	{
		const cpu_slot *s = &st->slots[slots[i]];

		more += cap_bytes(st, grown_cap(s->cap, ends[i], lim)) - cap_bytes(st, s->cap);
	}
	return st->kv_bytes + more <= b->max_kv_bytes;
}

/* make room for positions [0, need) in a slot's cache */
static int
grow_slot(cpu_state *st, cpu_slot *s, int need, int lim, r1_error *err)
{
	const r1_config *c = st->cfg;
	size_t		kvd = (size_t) c->n_kv_heads * c->head_dim;
	int			cap = grown_cap(s->cap, need, lim);

	if (need <= s->cap)
		return 0;
	if (!s->k)
	{
		s->k = calloc(c->n_layers, sizeof(void *));
		s->v = calloc(c->n_layers, sizeof(void *));
		if (!s->k || !s->v)
			return r1_fail(err, "out of memory for the KV cache");
	}
	for (int l = 0; l < c->n_layers; l++)
	{
		void	   *k = realloc(s->k[l], (size_t) cap * kvd * kv_elem(st));
		void	   *v;

		if (!k)
			return r1_fail(err, "out of memory growing the KV cache to %d positions", cap);
		s->k[l] = k;
		v = realloc(s->v[l], (size_t) cap * kvd * kv_elem(st));
		if (!v)
			return r1_fail(err, "out of memory growing the KV cache to %d positions", cap);
		s->v[l] = v;
	}
	st->kv_bytes += (size_t) (cap - s->cap) * kvd * 2 * c->n_layers * kv_elem(st);
	s->cap = cap;
	return 0;
}

static int
cpu_copy_kv(r1_backend *b, int src, int dst, int n, r1_error *err)
{
	cpu_state  *st = b->impl;
	size_t		kvd = (size_t) st->cfg->n_kv_heads * st->cfg->head_dim;
	cpu_slot   *s,
			   *d;

	if (src < 0 || src >= b->max_slots || dst < 0 || dst >= b->max_slots || src == dst ||
		n < 0 || n > b->max_ctx)
		return r1_fail(err, "copy_kv: slots %d -> %d, %d positions out of range", src, dst, n);
	s = &st->slots[src];
	d = &st->slots[dst];
	if (n > s->cap)
		return r1_fail(err, "copy_kv: slot %d holds %d positions, not %d", src, s->cap, n);
	if (n == 0)
		return 0;
	if (grow_slot(st, d, n, slot_lim(b, st), err) != 0)
		return -1;
	for (int l = 0; l < st->cfg->n_layers; l++)
	{
		memcpy(d->k[l], s->k[l], (size_t) n * kvd * kv_elem(st));
		memcpy(d->v[l], s->v[l], (size_t) n * kvd * kv_elem(st));
	}
	return 0;
}

static void
cpu_release_slot(r1_backend *b, int slot)
{
	cpu_state  *st = b->impl;
	cpu_slot   *s;

	if (slot < 0 || slot >= b->max_slots)
		return;
	s = &st->slots[slot];
	if (s->k)
	{
		size_t		kvd = (size_t) st->cfg->n_kv_heads * st->cfg->head_dim;

		for (int l = 0; l < st->cfg->n_layers; l++)
		{
			free(s->k[l]);
			free(s->v[l]);
		}
		free(s->k);
		free(s->v);
		st->kv_bytes -= (size_t) s->cap * kvd * 2 * st->cfg->n_layers * kv_elem(st);
	}
	memset(s, 0, sizeof(*s));
}

static size_t
cpu_memory_used(r1_backend *b)
{
	cpu_state  *st = b->impl;

	return st->kv_bytes + st->scratch_bytes + st->x8.bytes +
		(size_t) st->threads * (WIDEN_BLOCK_ROWS * st->widest + b->max_ctx + 1) * sizeof(float);
}

static void
cpu_destroy(r1_backend *b)
{
	cpu_state  *st;

	if (!b)
		return;
	st = b->impl;
	if (st)
	{
		if (st->slots)
			for (int i = 0; i < b->max_slots; i++)
				cpu_release_slot(b, i);
		free(st->slots);
		free(st->inv_freq);
		free(st->x);
		free(st->xb);
		free(st->q);
		free(st->k);
		free(st->v);
		free(st->att);
		free(st->ob);
		free(st->hg);
		free(st->hu);
		free(st->widen);
		free(st->scores);
		free(st->aq);
		free(st->ad);
		free(st->absum);
		free(st->abf);
		free(st->qpack);
		free(st->qunpack);
		r1_repack_free(&st->x8);
		free(st);
	}
	free(b);
}

/* ---------- the forward pass ---------- */

static int
check_batch(r1_backend *b, const r1_batch *batch, int *total, r1_error *err)
{
	int			T = 0;

	if (batch->n_seqs < 1)
		return r1_fail(err, "empty batch");
	for (int s = 0; s < batch->n_seqs; s++)
	{
		int			slot = batch->slot[s],
					pos = batch->pos[s],
					n = batch->n_tokens[s];

		if (slot < 0 || slot >= b->max_slots)
			return r1_fail(err, "batch sequence %d: slot %d out of range [0, %d)", s, slot, b->max_slots);
		if (n < 1 || pos < 0 || pos > b->max_ctx - n)
			return r1_fail(err, "batch sequence %d: positions %d..%d exceed the context of %d",
						   s, pos, pos + n - 1, b->max_ctx);
		for (int t = 0; t < n; t++)
		{
			int32_t		id = batch->tokens[T + t];

			if (id < 0 || id >= b->model->cfg.vocab_size)
				return r1_fail(err, "token id %d out of range [0, %d)", id, b->model->cfg.vocab_size);
		}
		T += n;
	}
	*total = T;
	return 0;
}

static int
cpu_forward(r1_backend *b, const r1_batch *batch, float *logits, r1_error *err)
{
	cpu_state  *st = b->impl;
	const r1_model *m = b->model;
	const r1_config *c = &m->cfg;
	int			H = c->hidden_size,
				hd = c->head_dim,
				nh = c->n_heads,
				nkv = c->n_kv_heads,
				inter = c->intermediate_size;
	int			qd = nh * hd,
				kvd = nkv * hd,
				group = nh / nkv;
	float		att_scale = 1.0f / sqrtf((float) hd);
	int			T;
	int		   *tok_seq,
			   *tok_pos;
	float	   *rope_cs;		/* [T, hd] each token's cos and sin pairs */
	int			rows;

	if (check_batch(b, batch, &T, err) != 0 || grow_scratch(st, T, err) != 0)
		return -1;
	st->fast = !b->cpu_exact;

	/*
	 * The per-thread buffers (widen, qunpack) hold st->threads slices, and
	 * the OpenMP thread count is the calling thread's setting, which another
	 * backend created since may have changed.
	 */
	omp_set_num_threads(st->threads);
	if (st->kv_bytes == 0)
	{
		if (b->kv_dtype != R1_F32 && b->kv_dtype != R1_F16 && b->kv_dtype != R1_BF16)
			return r1_fail(err, "the CPU KV cache holds f32, f16 or bf16, not %s", r1_dtype_name(b->kv_dtype));
		st->kv_dt = b->kv_dtype;	/* fixed while any slot holds positions */
	}
	tok_seq = malloc(sizeof(int) * (T * 2 + batch->n_seqs) + sizeof(float) * (size_t) T * hd);
	if (!tok_seq)
		return r1_fail(err, "out of memory");
	tok_pos = tok_seq + T;
	rope_cs = (float *) (tok_pos + T + batch->n_seqs);
	if (b->max_kv_bytes)
	{
		int		   *ends = tok_pos + T;

		for (int s = 0; s < batch->n_seqs; s++)
			ends[s] = batch->pos[s] + batch->n_tokens[s];
		if (!cpu_kv_fits(b, batch->n_seqs, batch->slot, ends))
		{
			free(tok_seq);
			return r1_fail(err, "KV cache full: the batch would take the cache past its limit of %zu MB (%zu MB in use)",
						   b->max_kv_bytes >> 20, st->kv_bytes >> 20);
		}
	}
	for (int s = 0, t = 0; s < batch->n_seqs; s++)
	{
		if (grow_slot(st, &st->slots[batch->slot[s]], batch->pos[s] + batch->n_tokens[s],
					  slot_lim(b, st), err) != 0)
		{
			free(tok_seq);
			return -1;
		}
		for (int i = 0; i < batch->n_tokens[s]; i++, t++)
		{
			tok_seq[t] = s;
			tok_pos[t] = batch->pos[s] + i;
		}
	}

	/* embedding rows, and each token's rotation angles */
	{
		size_t		row_bytes = 0;

		(void) r1_dtype_row_bytes(m->embed.dtype, H, &row_bytes);
#pragma omp parallel for schedule(static) if (T >= 4)
		for (int t = 0; t < T; t++)
		{
			rope_angles(rope_cs + (size_t) t * hd, hd, tok_pos[t], st->inv_freq);
			r1_dequantize_row(m->embed.dtype, (const char *) m->embed.data + (size_t) batch->tokens[t] * row_bytes,
							  st->x + (size_t) t * H, H);
		}
	}

	for (int l = 0; l < c->n_layers; l++)
	{
		const r1_layer_weights *w = &m->layers[l];

		/* attention block */
#pragma omp parallel for schedule(static) if (T >= 4)
		for (int t = 0; t < T; t++)
			rmsnorm(st->xb + (size_t) t * H, st->x + (size_t) t * H, &w->attn_norm, H, c->rms_norm_eps);
		{
			float	   *outs[3] = {st->q, st->k, st->v};
			const r1_tensor *ws[3] = {&w->wq, &w->wk, &w->wv};
			const r1_tensor *bs[3] = {w->bq.data ? &w->bq : NULL, w->bk.data ? &w->bk : NULL,
			w->bv.data ? &w->bv : NULL};
			int			ns[3] = {qd, kvd, kvd};

			linear_group(st, 3, outs, ws, bs, ns, st->xb, T, H, b->batch_invariant);
		}
		/* tokens write their own rows and cache positions: no two the same */
#pragma omp parallel for schedule(static) if (T >= 4)
		for (int t = 0; t < T; t++)
		{
			cpu_slot   *s = &st->slots[batch->slot[tok_seq[t]]];

			for (int h = 0; h < nh; h++)
				rope_head(st->q + (size_t) t * qd + h * hd, hd, rope_cs + (size_t) t * hd);
			for (int h = 0; h < nkv; h++)
				rope_head(st->k + (size_t) t * kvd + h * hd, hd, rope_cs + (size_t) t * hd);
			kv_store(st->kv_dt, s->k[l], (size_t) tok_pos[t] * kvd, st->k + (size_t) t * kvd, kvd);
			kv_store(st->kv_dt, s->v[l], (size_t) tok_pos[t] * kvd, st->v + (size_t) t * kvd, kvd);
		}

		/* causal grouped-query attention, one (token, head) per iteration */
#pragma omp parallel
		{
			float	   *sc = st->scores + (size_t) omp_get_thread_num() * ((size_t) b->max_ctx + 1);

#pragma omp for collapse(2) schedule(dynamic, 4)
			for (int t = 0; t < T; t++)
				for (int h = 0; h < nh; h++)
				{
					cpu_slot   *s = &st->slots[batch->slot[tok_seq[t]]];
					const float *qh = st->q + (size_t) t * qd + h * hd;
					float	   *oh = st->att + (size_t) t * qd + h * hd;
					int			kvh = h / group;
					int			n = tok_pos[t] + 1;
					float		mx = -INFINITY;
					double		sum = 0.0;

					for (int p = 0; p < n; p++)
					{
						sc[p] = kv_dot(st->kv_dt, s->k[l], (size_t) p * kvd + kvh * hd, qh, hd) * att_scale;
						if (sc[p] > mx)
							mx = sc[p];
					}
					for (int p = 0; p < n; p++)
					{
						sc[p] = expf(sc[p] - mx);
						sum += sc[p];
					}
					memset(oh, 0, hd * sizeof(float));
					for (int p = 0; p < n; p++)
						kv_axpy(st->kv_dt, s->v[l], (size_t) p * kvd + kvh * hd, (float) (sc[p] / sum), oh, hd);
				}
		}
		linear(st, st->ob, st->att, T, &w->wo, NULL, H, qd, b->batch_invariant);
#pragma omp parallel for schedule(static) if ((size_t) T * H >= PAR_MIN_ELEMS)
		for (size_t i = 0; i < (size_t) T * H; i++)
			st->x[i] += st->ob[i];

		/* feed-forward block (SwiGLU) */
#pragma omp parallel for schedule(static) if (T >= 4)
		for (int t = 0; t < T; t++)
			rmsnorm(st->xb + (size_t) t * H, st->x + (size_t) t * H, &w->ffn_norm, H, c->rms_norm_eps);
		{
			float	   *outs[2] = {st->hg, st->hu};
			const r1_tensor *ws[2] = {&w->w_gate, &w->w_up};
			const r1_tensor *bs[2] = {NULL, NULL};
			int			ns[2] = {inter, inter};

			linear_group(st, 2, outs, ws, bs, ns, st->xb, T, H, b->batch_invariant);
		}
#pragma omp parallel for schedule(static) if ((size_t) T * inter >= PAR_MIN_ELEMS)
		for (size_t i = 0; i < (size_t) T * inter; i += PAR_MIN_ELEMS)
			r1_silu_mul(st->hg + i, st->hu + i, (size_t) T * inter - i < PAR_MIN_ELEMS ? (size_t) T * inter - i : PAR_MIN_ELEMS);
		linear(st, st->ob, st->hg, T, &w->w_down, NULL, H, inter, b->batch_invariant);
#pragma omp parallel for schedule(static) if ((size_t) T * H >= PAR_MIN_ELEMS)
		for (size_t i = 0; i < (size_t) T * H; i++)
			st->x[i] += st->ob[i];
	}

	/* final norm on the rows that produce logits, then lm_head */
	rows = 0;
	for (int s = 0, t = 0; s < batch->n_seqs; s++)
	{
		int			n = batch->n_tokens[s];

		for (int i = 0; i < n; i++, t++)
			if (batch->all_logits || i == n - 1)
			{
				rmsnorm(st->xb + (size_t) rows * H, st->x + (size_t) t * H, &m->final_norm, H, c->rms_norm_eps);
				rows++;
			}
	}
	linear(st, logits, st->xb, rows, &m->lm_head, NULL, c->vocab_size, H, b->batch_invariant);
	free(tok_seq);
	return 0;
}

int
r1_backend_cpu_create(r1_backend **out, const r1_model *m, int max_slots, int max_ctx,
					  int threads, r1_error *err)
{
	r1_backend *b;
	cpu_state  *st;
	const r1_config *c = &m->cfg;
	int			widest = c->intermediate_size > c->hidden_size ? c->intermediate_size : c->hidden_size;

	if (c->n_heads * c->head_dim > widest)
		widest = c->n_heads * c->head_dim;

	*out = NULL;
	if (m->lazy)
		return r1_fail(err, "a model of on-demand random weights is for r1 convert only");
	if (max_slots < 1 || max_ctx < 1)
		return r1_fail(err, "max_slots and max_ctx must be positive");
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
	b->name = "cpu";
	b->model = m;
	b->max_slots = max_slots;
	b->max_ctx = max_ctx;
	b->forward = cpu_forward;
	b->release_slot = cpu_release_slot;
	b->copy_kv = cpu_copy_kv;
	b->kv_fits = cpu_kv_fits;
	b->memory_used = cpu_memory_used;
	b->destroy = cpu_destroy;
	st->cfg = c;
	st->threads = threads > 0 ? threads : omp_get_num_procs();
	st->slots = calloc(max_slots, sizeof(cpu_slot));
	st->inv_freq = malloc(sizeof(double) * (c->head_dim / 2));
	st->widest = widest;
	st->path = r1_cpu()->path;
	st->widen = malloc(sizeof(float) * WIDEN_BLOCK_ROWS * (size_t) widest * st->threads);
	st->scores = malloc(sizeof(float) * ((size_t) max_ctx + 1) * st->threads);
	if (!st->slots || !st->inv_freq || !st->widen || !st->scores)
	{
		cpu_destroy(b);
		return r1_fail(err, "out of memory creating the CPU backend");
	}
	for (int i = 0; i < c->head_dim / 2; i++)
		st->inv_freq[i] = r1_rope_inv_freq(c, i);
	omp_set_num_threads(st->threads);
	openblas_set_num_threads(1);	/* BLAS runs inside our threads, never
									 * beside them */

	/*
	 * R1_CPU_REPACK=0: read the file's blocks in place (no copy: hosts short
	 * of memory, A/B runs)
	 */
	if (!(getenv("R1_CPU_REPACK") && strcmp(getenv("R1_CPU_REPACK"), "0") == 0) &&
		r1_repack_model(&st->x8, st->path, m, err) != 0)
	{
		cpu_destroy(b);
		return -1;
	}
	*out = b;
	return 0;
}
