/*
 * r1_kernels.cu - the CUDA backend's own kernels: embedding lookup, RMSNorm,
 * bias + RoPE + paged KV append, split-K paged attention with its merge,
 * SwiGLU, block-table updates, sampling, the quantised and batch-invariant
 * linear layers.  Other linear layers: cuBLAS (prompts) and gemv.cu (decode).
 *
 * Index logic (pool layout, block tables, partitions) is cuda_plan.h's, shared
 * with the C unit tests; r1_attn_partial_ref / r1_attn_merge_ref in
 * cuda_plan.c are the C twins of attn_kernel and merge_kernel.
 *
 * Layout of a file (llm.c's): kernels first, then extern "C" launchers that
 * check the launch.  Checked on a GPU by tools/gpu/gpu-check.sh unit compare.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>

#include "cuda_plan.h"
#include "quant_blocks.h"
#include "philox.h"
#include "r1_kernels.cuh"
#include "device_util.cuh"

/* ---------- kernels ---------- */

/*
 * The linear layer of a quantised (GGUF) model: out[t, n] (row stride ldo)
 * = sum_k x[t, k] w[n, k] (+ beta out), w's row n in its block format
 * (quant_blocks.h decodes eight weights at a time in registers; nothing is
 * widened in memory).  The shape of gemm_fixed_kernel: one warp per row and
 * group of GF_TOK tokens, lane l takes the 8-weight groups l, l + 32, ...,
 * a fixed shuffle tree; so it is batch-invariant too.  Used for every batch
 * size: prompt processing runs on CUDA cores (no tensor-core path for
 * quantised weights yet).
 */
#define GF_TOK 4
#define GF_WARPS 8

__global__ void __launch_bounds__(GF_WARPS * 32)
qgemm_kernel(float *out, int ldo, const bf16 *x, const uint8_t *w, int dt, size_t row_bytes, int T,
			 int n_out, int n_in, float beta)
{
	int			warp = threadIdx.x / 32,
				lane = threadIdx.x % 32;
	int			n = blockIdx.x * GF_WARPS + warp;
	int			t0 = blockIdx.y * GF_TOK;
	int			nt = T - t0 < GF_TOK ? T - t0 : GF_TOK;
	const uint8_t *wr;
	float		acc[GF_TOK];

	if (n >= n_out)
		return;
	wr = w + (size_t) n * row_bytes;
#pragma unroll
	for (int tt = 0; tt < GF_TOK; tt++)
		acc[tt] = 0.0f;
	for (int g = lane; g < n_in / 8; g += 32)
	{
		float		wf[8];

		r1qb_weights8(dt, wr, 8 * g, wf);
#pragma unroll
		for (int tt = 0; tt < GF_TOK; tt++)
			if (tt < nt)
			{
				float		xf[8];

				load8(x + (size_t) (t0 + tt) * n_in + (size_t) g * 8, xf);
#pragma unroll
				for (int j = 0; j < 8; j++)
					acc[tt] = fmaf(wf[j], xf[j], acc[tt]);
			}
	}
#pragma unroll
	for (int tt = 0; tt < GF_TOK; tt++)
	{
		float		v = warp_sum(acc[tt]);

		if (lane == 0 && tt < nt)
		{
			size_t		i = (size_t) (t0 + tt) * ldo + n;

			out[i] = beta != 0.0f ? v + beta * out[i] : v;
		}
	}
}

/*
 * Sampling on the device, one block per logits row, the CPU sampler's
 * algorithm (sampler.c) step for step: argmax (lowest index on ties);
 * greedy at temperature 0 or top_k 1; else the candidates at or above the
 * min-p floor (and within 40 temperatures of the best) get p = exp((l -
 * max) / T), are sorted by p descending then id ascending (a bitonic sort
 * in the row's scratch), and one thread makes the same double-precision
 * sums, top-k / top-p cuts and Philox draw as r1_sample.  expf here and in
 * glibc may differ in the last bit, so a draw that lands on a boundary can
 * differ from the CPU's; nothing else does.
 * params: 8 ints a row: temperature, top_p, min_p (float bits), top_k,
 * seed (lo, hi), position (lo, hi).
 */
#define SAMPLE_THREADS 1024

__device__ __forceinline__ bool
cand_before(float pa, int ia, float pb, int ib)
{
	return pa > pb || (pa == pb && ia < ib);
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
sample_kernel(const float *logits, int ld, int nv, const int32_t *params, float *cand_p, int32_t *cand_id,
			  int n2, int32_t *out)
{
	const int	row = blockIdx.x,
				tid = threadIdx.x;
	const float *l = logits + (size_t) row * ld;
	const int32_t *pr = params + 8 * row;
	const float temp = __int_as_float(pr[0]),
				top_p = __int_as_float(pr[1]),
				min_p = __int_as_float(pr[2]);
	const int	top_k = pr[3];
	const uint64_t seed = (uint64_t) (uint32_t) pr[4] | ((uint64_t) (uint32_t) pr[5] << 32),
				pos = (uint64_t) (uint32_t) pr[6] | ((uint64_t) (uint32_t) pr[7] << 32);
	float	   *cp = cand_p + (size_t) row * n2;
	int32_t    *ci = cand_id + (size_t) row * n2;
	__shared__ float s_v[SAMPLE_THREADS / 32];
	__shared__ int s_i[SAMPLE_THREADS / 32];
	__shared__ int s_m;
	float		bv = -INFINITY,
				maxl,
				floor_l,
				inv_t;
	int			bi = INT_MAX,
				m,
				n2m;

	/* argmax: the lowest index of the largest logit (NaN never wins) */
	for (int i = tid; i < nv; i += SAMPLE_THREADS)
		if (l[i] > bv)
		{
			bv = l[i];
			bi = i;
		}
	for (int o = 16; o > 0; o >>= 1)
	{
		float		ov = __shfl_xor_sync(0xffffffffu, bv, o);
		int			oi = __shfl_xor_sync(0xffffffffu, bi, o);

		if (ov > bv || (ov == bv && oi < bi))
		{
			bv = ov;
			bi = oi;
		}
	}
	if (tid % 32 == 0)
	{
		s_v[tid / 32] = bv;
		s_i[tid / 32] = bi;
	}
	if (tid == 0)
		s_m = 0;
	__syncthreads();
	bv = s_v[0];
	bi = s_i[0];
	for (int w = 1; w < SAMPLE_THREADS / 32; w++)
		if (s_v[w] > bv || (s_v[w] == bv && s_i[w] < bi))
		{
			bv = s_v[w];
			bi = s_i[w];
		}
	if (bi == INT_MAX)
		bi = 0;
	if (temp <= 0.0f || top_k == 1)
	{
		if (tid == 0)
			out[row] = bi;
		return;
	}
	maxl = bv;
	inv_t = 1.0f / temp;
	floor_l = min_p > 0.0f ? maxl + temp * logf(min_p) : -INFINITY;
	if (floor_l < maxl - 40.0f * temp)
		floor_l = maxl - 40.0f * temp;

	/* the candidates, in any order (the sort fixes it) */
	for (int i = tid; i < nv; i += SAMPLE_THREADS)
		if (l[i] >= floor_l)
		{
			int			k = atomicAdd(&s_m, 1);

			cp[k] = expf((l[i] - maxl) * inv_t);
			ci[k] = i;
		}
	__syncthreads();
	m = s_m;
	for (n2m = 1; n2m < m; n2m <<= 1)
		;
	for (int k = m + tid; k < n2m; k += SAMPLE_THREADS)
	{
		cp[k] = -1.0f;			/* after every candidate */
		ci[k] = INT_MAX;
	}
	__syncthreads();
	/* bitonic sort, descending by (p, then ascending id) */
	for (int size = 2; size <= n2m; size <<= 1)
		for (int stride = size / 2; stride > 0; stride >>= 1)
		{
			for (int k = tid; k < n2m / 2; k += SAMPLE_THREADS)
			{
				int			i = 2 * stride * (k / stride) + k % stride,
							j = i + stride;
				bool		up = (i & size) == 0;
				float		pi = cp[i],
							pj = cp[j];
				int			ii = ci[i],
							ij = ci[j];

				if (cand_before(pi, ii, pj, ij) != up)
				{
					cp[i] = pj;
					cp[j] = pi;
					ci[i] = ij;
					ci[j] = ii;
				}
			}
			__syncthreads();
		}
	/* the cuts and the draw, in r1_sample's order */
	if (tid == 0)
	{
		int			keep = (top_k > 0 && top_k < m) ? top_k : m;
		double		sum = 0.0,
					acc = 0.0,
					cut;
		int32_t		pick;

		for (int i = 0; i < keep; i++)
			sum += cp[i];
		if (top_p < 1.0f)
		{
			double		acc_p = 0.0;
			int			k;

			for (k = 0; k < keep; k++)
			{
				acc_p += cp[k];
				if (acc_p >= top_p * sum)
				{
					k++;
					break;
				}
			}
			keep = k < 1 ? 1 : k;
			sum = 0.0;
			for (int i = 0; i < keep; i++)
				sum += cp[i];
		}
		cut = r1ph_uniform(seed, pos) * sum;
		pick = ci[keep - 1];
		for (int i = 0; i < keep; i++)
		{
			acc += cp[i];
			if (cut < acc)
			{
				pick = ci[i];
				break;
			}
		}
		out[row] = pick;
	}
}

/* x[t, :] = the decoded row tokens[t] of a quantised (or bf16) table */
__global__ void
embed_q_kernel(float *x, const uint8_t *table, int dt, size_t row_bytes, const int32_t *tokens, int H)
{
	int			t = blockIdx.x;
	const uint8_t *row = table + (size_t) tokens[t] * row_bytes;

	for (int g = threadIdx.x; g < H / 8; g += blockDim.x)
	{
		float		wf[8];

		r1qb_weights8(dt, row, 8 * g, wf);
#pragma unroll
		for (int j = 0; j < 8; j++)
			x[(size_t) t * H + 8 * g + j] = wf[j];
	}
}

/*
 * The batch-invariant linear layer: out[t, n] = sum_k x[t, k] w[n, k]
 * (+ beta out[t, n]).  One warp per weight row n and group of GF_TOK tokens;
 * lane l sums the 8-wide vectors l, l + 32, ... in order, then a fixed
 * shuffle tree adds the lanes.  The operations that produce out[t, n] depend
 * only on row t of x and row n of w, never on T or on which other tokens
 * share the launch: that is the invariance cuBLAS (which picks tiles and
 * split-K by shape) does not give.  CUDA cores only: for decode, where the
 * step is bound by reading w, it costs little; prompt processing is slower
 * than tensor-core GEMMs.
 */
__global__ void __launch_bounds__(GF_WARPS * 32)
gemm_fixed_kernel(float *out, const bf16 *x, const bf16 *w, int T, int n_out, int n_in, float beta)
{
	int			warp = threadIdx.x / 32,
				lane = threadIdx.x % 32;
	int			n = blockIdx.x * GF_WARPS + warp;
	int			t0 = blockIdx.y * GF_TOK;
	int			nt = T - t0 < GF_TOK ? T - t0 : GF_TOK;
	int			nvec = n_in % 8 == 0 ? n_in / 8 : 0;	/* 16-byte rows, else all scalar */
	const bf16 *wr;
	float		acc[GF_TOK];

	if (n >= n_out)
		return;
	wr = w + (size_t) n * n_in;
#pragma unroll
	for (int tt = 0; tt < GF_TOK; tt++)
		acc[tt] = 0.0f;
	for (int v = lane; v < nvec; v += 32)
	{
		float		wf[8];

		load8(wr + (size_t) v * 8, wf);
#pragma unroll
		for (int tt = 0; tt < GF_TOK; tt++)
			if (tt < nt)
			{
				float		xf[8];

				load8(x + (size_t) (t0 + tt) * n_in + (size_t) v * 8, xf);
#pragma unroll
				for (int j = 0; j < 8; j++)
					acc[tt] = fmaf(wf[j], xf[j], acc[tt]);
			}
	}
	for (int k = nvec * 8 + lane; k < n_in; k += 32)
	{
		float		wk = __bfloat162float(wr[k]);

#pragma unroll
		for (int tt = 0; tt < GF_TOK; tt++)
			if (tt < nt)
				acc[tt] = fmaf(wk, __bfloat162float(x[(size_t) (t0 + tt) * n_in + k]), acc[tt]);
	}
#pragma unroll
	for (int tt = 0; tt < GF_TOK; tt++)
	{
		float		v = warp_sum(acc[tt]);

		if (lane == 0 && tt < nt)
		{
			size_t		i = (size_t) (t0 + tt) * n_out + n;

			out[i] = beta != 0.0f ? v + beta * out[i] : v;
		}
	}
}

__global__ void
embed_kernel(float *x, const bf16 *table, const int32_t *tokens, int H)
{
	const bf16 *row = table + (size_t) tokens[blockIdx.x] * H;
	float	   *out = x + (size_t) blockIdx.x * H;

	for (int i = threadIdx.x; i < H; i += blockDim.x)
		out[i] = __bfloat162float(row[i]);
}

/* one block of 256 threads per row */
__global__ void __launch_bounds__(256)
rmsnorm_kernel(bf16 *out, const float *x, const int32_t *rows, const float *w, int H, float eps)
{
	__shared__ float part[8];
	__shared__ float scale_s;
	int			src = rows ? rows[blockIdx.x] : (int) blockIdx.x;
	const float *xr = x + (size_t) src * H;
	bf16	   *o = out + (size_t) blockIdx.x * H;
	float		ss = 0.0f;

	for (int i = threadIdx.x; i < H; i += blockDim.x)
		ss += xr[i] * xr[i];
	ss = warp_sum(ss);
	if ((threadIdx.x & 31) == 0)
		part[threadIdx.x >> 5] = ss;
	__syncthreads();
	if (threadIdx.x < 32)
	{
		float		v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0f;

		v = warp_sum(v);
		if (threadIdx.x == 0)
			scale_s = rsqrtf(v / H + eps);
	}
	__syncthreads();
	for (int i = threadIdx.x; i < H; i += blockDim.x)
		o[i] = __float2bfloat16_rn(xr[i] * scale_s * w[i]);
}

__global__ void
swiglu_kernel(bf16 *out, const float *gu, int T, int inter)
{
	size_t		n = (size_t) T * inter;

	for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
	{
		size_t		t = i / inter,
					j = i % inter;
		float		g = gu[t * 2 * inter + j],
					u = gu[t * 2 * inter + inter + j];

		out[i] = __float2bfloat16_rn(g / (1.0f + expf(-g)) * u);
	}
}

__global__ void
table_update_kernel(int32_t *tables, const int32_t *upd, int n)
{
	int			i = blockIdx.x * blockDim.x + threadIdx.x;

	if (i < n)
		tables[upd[2 * i]] = upd[2 * i + 1];
}

/* one block per token: bias, RoPE on q and k, k and v into the pool */
__global__ void
rope_append_kernel(r1k_kv_args a, float *q_out, const float *qkv, const float *bias,
				   const float *rope_cos, const float *rope_sin)
{
	int			t = blockIdx.x;
	int			hd = a.head_dim,
				half = hd / 2;
	int			qd = a.n_heads * hd,
				kvd = a.n_kv_heads * hd;
	int			pos = a.tok_pos[t];
	const int32_t *trow = a.tables + (size_t) a.tok_slot[t] * a.mbps;
	const float *row = qkv + (size_t) t * (qd + 2 * kvd);
	const float *cs = rope_cos + (size_t) pos * half,
			   *sn = rope_sin + (size_t) pos * half;
	bf16	   *pool = reinterpret_cast<bf16 *>(a.pool);

	for (int i = threadIdx.x; i < (a.n_heads + a.n_kv_heads) * half; i += blockDim.x)
	{
		int			h = i / half,
					j = i % half;
		int			base = h < a.n_heads ? h * hd : qd + (h - a.n_heads) * hd;
		float		x0 = row[base + j] + bias[base + j],
					x1 = row[base + j + half] + bias[base + j + half];
		float		c = cs[j],
					s = sn[j];
		float		r0 = x0 * c - x1 * s,
					r1 = x1 * c + x0 * s;

		if (h < a.n_heads)
		{
			q_out[(size_t) t * qd + base + j] = r0;
			q_out[(size_t) t * qd + base + j + half] = r1;
		}
		else
		{
			size_t		k = r1_kv_row(trow, a.layer, 0, h - a.n_heads, pos, a.n_blocks, a.n_kv_heads, hd);

			pool[k + j] = __float2bfloat16_rn(r0);
			pool[k + j + half] = __float2bfloat16_rn(r1);
		}
	}
	for (int i = threadIdx.x; i < kvd; i += blockDim.x)
	{
		int			h = i / hd,
					d = i % hd;
		size_t		v = r1_kv_row(trow, a.layer, 1, h, pos, a.n_blocks, a.n_kv_heads, hd);

		pool[v + d] = __float2bfloat16_rn(row[qd + kvd + i] + bias[qd + kvd + i]);
	}
}

#define ATTN_THREADS 128
#define ATTN_WARPS (ATTN_THREADS / 32)
#define ATTN_UNROLL 2			/* key/value rows a thread loads before using them */

/*
 * Split-K attention: block (kv head, token, split) scores positions
 * [p0, p1) of the token's context for the `group` query heads that share the
 * KV head, in chunks of R1_ATTN_CHUNK with an online softmax.
 *   scores: LP = HD/8 lanes per key row, each a 16-byte load, reduced with
 *           xor shuffles inside the LP-lane group; a warp scores 32/LP rows.
 *   values: LP threads per value row (16-byte loads), 128/LP rows in flight,
 *           per-thread accumulators [group][8], summed over the row groups in
 *           shared memory at the end.
 * One split: writes the normalised output; several: (m, l, o) for the merge.
 */
template <int HD>
__global__ void __launch_bounds__(ATTN_THREADS, 4)
attn_kernel(r1k_kv_args a, bf16 *out, const float *q, float *part_o, float *part_ml,
			float scale, int part, int max_splits)
{
	constexpr int LP = HD / 8;	/* lanes per row */
	constexpr int PPW = 32 / LP;	/* rows per warp step */
	constexpr int NPG = ATTN_THREADS / LP;	/* value rows in flight */
	extern __shared__ float smem[];
	const int	kvh = blockIdx.x,
				tok = blockIdx.y,
				split = blockIdx.z;
	const int	G = a.n_heads / a.n_kv_heads;
	const int	ctx = a.tok_pos[tok] + 1;
	const int	p0 = split * part;

	if (p0 >= ctx)
		return;					/* this token's context has fewer splits */

	const int	p1 = min(ctx, p0 + part);
	const int	nsplit = r1_attn_n_splits(ctx, part);
	const int32_t *trow = a.tables + (size_t) a.tok_slot[tok] * a.mbps;
	const bf16 *pool = reinterpret_cast<const bf16 *>(a.pool);
	const int	qd = a.n_heads * HD;
	const int	tid = threadIdx.x,
				warp = tid >> 5,
				lane = tid & 31;
	const int	sub = lane % LP;	/* which 8 dimensions */
	const int	pw = lane / LP;		/* row within a warp step */
	const int	pg = tid / LP;		/* value row group */
	float	   *q_s = smem;		/* [G][HD] scaled queries */
	float	   *sc = q_s + G * HD;	/* [G][CHUNK] scores, then weights */
	float	   *m_run = sc + G * R1_ATTN_CHUNK;	/* [G] */
	float	   *l_run = m_run + G;	/* [G] */
	float	   *alpha = l_run + G;	/* [G] rescale of the accumulators */
	float	   *red = alpha + G;	/* [NPG][G][HD] */
	float		acc[R1_ATTN_MAX_GROUP][8];

	for (int i = tid; i < G * HD; i += ATTN_THREADS)
		q_s[i] = q[(size_t) tok * qd + (size_t) kvh * G * HD + i] * scale;
	if (tid < G)
	{
		m_run[tid] = -INFINITY;
		l_run[tid] = 0.0f;
	}
#pragma unroll
	for (int g = 0; g < R1_ATTN_MAX_GROUP; g++)
#pragma unroll
		for (int j = 0; j < 8; j++)
			acc[g][j] = 0.0f;
	__syncthreads();

	for (int c0 = p0; c0 < p1; c0 += R1_ATTN_CHUNK)
	{
		const int	c1 = min(p1, c0 + R1_ATTN_CHUNK);

		/* scores: ATTN_UNROLL rows per lane group, their loads issued together */
		for (int base = c0 + warp * PPW; base < c1; base += ATTN_WARPS * PPW * ATTN_UNROLL)
		{
			float		kf[ATTN_UNROLL][8];

#pragma unroll
			for (int u = 0; u < ATTN_UNROLL; u++)
			{
				int			p = base + u * ATTN_WARPS * PPW + pw;

				if (p < c1)
					load8(pool + r1_kv_row(trow, a.layer, 0, kvh, p, a.n_blocks, a.n_kv_heads, HD) + sub * 8,
						  kf[u]);
				else
				{
#pragma unroll
					for (int j = 0; j < 8; j++)
						kf[u][j] = 0.0f;
				}
			}
#pragma unroll
			for (int u = 0; u < ATTN_UNROLL; u++)
			{
				int			p = base + u * ATTN_WARPS * PPW + pw;

#pragma unroll
				for (int g = 0; g < R1_ATTN_MAX_GROUP; g++)
				{
					if (g < G)
					{
						const float *qg = q_s + g * HD + sub * 8;
						float		sc_v = 0.0f;

#pragma unroll
						for (int j = 0; j < 8; j++)
							sc_v += kf[u][j] * qg[j];
#pragma unroll
						for (int o = LP / 2; o > 0; o >>= 1)
							sc_v += __shfl_xor_sync(0xffffffffu, sc_v, o);
						if (p < c1 && sub == 0)
							sc[g * R1_ATTN_CHUNK + (p - c0)] = sc_v;
					}
				}
			}
		}
		__syncthreads();

		/* online softmax, a warp per query head */
		for (int g = warp; g < G; g += ATTN_WARPS)
		{
			float	   *sg = sc + g * R1_ATTN_CHUNK;
			float		cm = -INFINITY,
						sum = 0.0f,
						m_new;

			for (int i = lane; i < c1 - c0; i += 32)
				cm = fmaxf(cm, sg[i]);
			cm = warp_max(cm);
			m_new = fmaxf(m_run[g], cm);
			for (int i = lane; i < c1 - c0; i += 32)
			{
				float		e = expf(sg[i] - m_new);

				sg[i] = e;
				sum += e;
			}
			sum = warp_sum(sum);
			if (lane == 0)
			{
				float		al = expf(m_run[g] - m_new);	/* 0 on the first chunk */

				alpha[g] = al;
				l_run[g] = l_run[g] * al + sum;
				m_run[g] = m_new;
			}
		}
		__syncthreads();

		/* weighted values */
#pragma unroll
		for (int g = 0; g < R1_ATTN_MAX_GROUP; g++)
			if (g < G)
			{
				float		al = alpha[g];

#pragma unroll
				for (int j = 0; j < 8; j++)
					acc[g][j] *= al;
			}
		for (int p0u = c0 + pg; p0u < c1; p0u += NPG * ATTN_UNROLL)
		{
			float		vf[ATTN_UNROLL][8];

#pragma unroll
			for (int u = 0; u < ATTN_UNROLL; u++)
			{
				int			p = p0u + u * NPG;

				if (p < c1)
					load8(pool + r1_kv_row(trow, a.layer, 1, kvh, p, a.n_blocks, a.n_kv_heads, HD) + sub * 8,
						  vf[u]);
			}
#pragma unroll
			for (int u = 0; u < ATTN_UNROLL; u++)
			{
				int			p = p0u + u * NPG;

				if (p >= c1)
					break;
#pragma unroll
				for (int g = 0; g < R1_ATTN_MAX_GROUP; g++)
					if (g < G)
					{
						float		wgt = sc[g * R1_ATTN_CHUNK + (p - c0)];

#pragma unroll
						for (int j = 0; j < 8; j++)
							acc[g][j] += wgt * vf[u][j];
					}
			}
		}
		__syncthreads();		/* before the next chunk overwrites sc */
	}

	/* sum the row groups */
#pragma unroll
	for (int g = 0; g < R1_ATTN_MAX_GROUP; g++)
		if (g < G)
#pragma unroll
			for (int j = 0; j < 8; j++)
				red[((size_t) pg * G + g) * HD + sub * 8 + j] = acc[g][j];
	__syncthreads();
	for (int i = tid; i < G * HD; i += ATTN_THREADS)
	{
		int			g = i / HD,
					d = i % HD;
		int			head = kvh * G + g;
		float		o = 0.0f;

		for (int r = 0; r < NPG; r++)
			o += red[((size_t) r * G + g) * HD + d];
		if (nsplit == 1)
			out[(size_t) tok * qd + (size_t) head * HD + d] = __float2bfloat16_rn(o / l_run[g]);
		else
		{
			size_t		idx = ((size_t) tok * a.n_heads + head) * max_splits + split;

			part_o[idx * HD + d] = o;
			if (d == 0)
			{
				part_ml[idx * 2] = m_run[g];
				part_ml[idx * 2 + 1] = l_run[g];
			}
		}
	}
}

/* block (token, head), a thread per dimension: r1_attn_merge_ref */
__global__ void
merge_kernel(r1k_kv_args a, bf16 *out, const float *part_o, const float *part_ml, int part,
			 int max_splits)
{
	const int	tok = blockIdx.x,
				head = blockIdx.y,
				d = threadIdx.x;
	const int	hd = a.head_dim;
	const int	ns = r1_attn_n_splits(a.tok_pos[tok] + 1, part);
	const size_t base = ((size_t) tok * a.n_heads + head) * max_splits;
	float		M = -INFINITY,
				L = 0.0f,
				acc = 0.0f;

	if (ns == 1 || d >= hd)
		return;					/* written by attn_kernel directly */
	for (int i = 0; i < ns; i++)
		M = fmaxf(M, part_ml[(base + i) * 2]);
	for (int i = 0; i < ns; i++)
		L += part_ml[(base + i) * 2 + 1] * expf(part_ml[(base + i) * 2] - M);
	for (int i = 0; i < ns; i++)
		acc += part_o[(base + i) * hd + d] * expf(part_ml[(base + i) * 2] - M);
	out[((size_t) tok * a.n_heads + head) * hd + d] = __float2bfloat16_rn(acc / L);
}

/* ---------- launchers ---------- */

extern "C" cudaError_t
r1k_embed(cudaStream_t s, float *x, const uint16_t *table, const int32_t *tokens, int T, int H)
{
	embed_kernel<<<T, 256, 0, s>>>(x, reinterpret_cast<const bf16 *>(table), tokens, H);
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_rmsnorm(cudaStream_t s, uint16_t *out, const float *x, const int32_t *rows, const float *w,
			int n_rows, int H, float eps)
{
	rmsnorm_kernel<<<n_rows, 256, 0, s>>>(reinterpret_cast<bf16 *>(out), x, rows, w, H, eps);
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_swiglu(cudaStream_t s, uint16_t *out, const float *gu, int T, int inter)
{
	size_t		n = (size_t) T * inter;
	size_t		blocks = (n + 255) / 256;

	if (blocks > 65536)
		blocks = 65536;			/* grid-stride loop covers the rest */
	swiglu_kernel<<<(unsigned) blocks, 256, 0, s>>>(reinterpret_cast<bf16 *>(out), gu, T, inter);
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_gemm_fixed(cudaStream_t s, float *out, const uint16_t *x, const uint16_t *w, int T, int n_out,
			   int n_in, float beta)
{
	dim3		grid((unsigned) ((n_out + GF_WARPS - 1) / GF_WARPS), (unsigned) ((T + GF_TOK - 1) / GF_TOK));

	if (T <= 0 || n_out <= 0)
		return cudaSuccess;
	gemm_fixed_kernel<<<grid, GF_WARPS * 32, 0, s>>>(out, reinterpret_cast<const bf16 *>(x),
													 reinterpret_cast<const bf16 *>(w), T, n_out, n_in, beta);
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_qgemm(cudaStream_t s, float *out, int ldo, const uint16_t *x, const void *w, int dtype,
		  size_t row_bytes, int T, int n_out, int n_in, float beta)
{
	dim3		grid((unsigned) ((n_out + GF_WARPS - 1) / GF_WARPS), (unsigned) ((T + GF_TOK - 1) / GF_TOK));

	if (T <= 0 || n_out <= 0)
		return cudaSuccess;
	if (n_in % 8 != 0)
		return cudaErrorInvalidValue;
	qgemm_kernel<<<grid, GF_WARPS * 32, 0, s>>>(out, ldo, reinterpret_cast<const bf16 *>(x),
												 static_cast<const uint8_t *>(w), dtype, row_bytes, T, n_out,
												 n_in, beta);
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_embed_q(cudaStream_t s, float *x, const void *table, int dtype, size_t row_bytes,
			const int32_t *tokens, int T, int H)
{
	if (T <= 0)
		return cudaSuccess;
	if (H % 8 != 0)
		return cudaErrorInvalidValue;
	embed_q_kernel<<<T, 256, 0, s>>>(x, static_cast<const uint8_t *>(table), dtype, row_bytes, tokens, H);
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_sample(cudaStream_t s, const float *logits, int ld, int n_rows, int sample_vocab, const int32_t *params,
		   float *cand_p, int32_t *cand_id, int n2, int32_t *out)
{
	if (n_rows <= 0)
		return cudaSuccess;
	sample_kernel<<<n_rows, SAMPLE_THREADS, 0, s>>>(logits, ld, sample_vocab, params, cand_p, cand_id, n2, out);
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_table_update(cudaStream_t s, int32_t *tables, const int32_t *upd, int n)
{
	if (n <= 0)
		return cudaSuccess;
	table_update_kernel<<<(n + 255) / 256, 256, 0, s>>>(tables, upd, n);
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_rope_append(cudaStream_t s, const r1k_kv_args *kv, float *q_out, const float *qkv,
				const float *bias, const float *rope_cos, const float *rope_sin)
{
	rope_append_kernel<<<kv->T, 128, 0, s>>>(*kv, q_out, qkv, bias, rope_cos, rope_sin);
	return cudaGetLastError();
}

extern "C" size_t
r1k_attention_smem(int group, int head_dim)
{
	/* q_s + scores + m, l, alpha + row-group partial sums (NPG * HD = 1024) */
	return sizeof(float) * ((size_t) group * head_dim + (size_t) group * R1_ATTN_CHUNK + 3 * (size_t) group +
							(size_t) (ATTN_THREADS * 8) * group);
}

template <int HD>
static cudaError_t
launch_attn(cudaStream_t s, const r1k_kv_args *kv, bf16 *out, const float *q, float *part_o,
			float *part_ml, float scale, int part, int max_splits)
{
	dim3		grid(kv->n_kv_heads, kv->T, max_splits);
	size_t		smem = r1k_attention_smem(kv->n_heads / kv->n_kv_heads, HD);

	attn_kernel<HD><<<grid, ATTN_THREADS, smem, s>>>(*kv, out, q, part_o, part_ml, scale, part, max_splits);
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_attention(cudaStream_t s, const r1k_kv_args *kv, uint16_t *out, const float *q, float *part_o,
			  float *part_ml, float scale, int part, int max_splits)
{
	bf16	   *o = reinterpret_cast<bf16 *>(out);
	cudaError_t e;

	switch (kv->head_dim)
	{
		case 16:
			e = launch_attn<16>(s, kv, o, q, part_o, part_ml, scale, part, max_splits);
			break;
		case 32:
			e = launch_attn<32>(s, kv, o, q, part_o, part_ml, scale, part, max_splits);
			break;
		case 64:
			e = launch_attn<64>(s, kv, o, q, part_o, part_ml, scale, part, max_splits);
			break;
		case 128:
			e = launch_attn<128>(s, kv, o, q, part_o, part_ml, scale, part, max_splits);
			break;
		case 256:
			e = launch_attn<256>(s, kv, o, q, part_o, part_ml, scale, part, max_splits);
			break;
		default:
			return cudaErrorInvalidValue;
	}
	if (e != cudaSuccess || max_splits == 1)
		return e;
	merge_kernel<<<dim3(kv->T, kv->n_heads), kv->head_dim, 0, s>>>(*kv, o, part_o, part_ml, part, max_splits);
	return cudaGetLastError();
}
