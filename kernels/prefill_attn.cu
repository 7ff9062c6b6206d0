/*
 * prefill_attn.cu - the pieces of prompt attention on tensor cores: a
 * prompt's queries attend in tiles through two cuBLAS GEMMs (scores = Q K^T,
 * out = P V, backend_cuda.c's prefill_attention) with these kernels around
 * them:
 *
 *   kv_gather_kernel    the slot's keys and values [0, ctx) out of the paged
 *                       pool into contiguous [kv head][pos][dim] bf16
 *   q_pack_kernel       q [T, heads * dim] f32 -> [head][T][dim] bf16
 *   softmax_rows_kernel causal softmax of each score row, P in bf16, the
 *                       masked tail zeroed
 *
 * The split-K kernel in r1_kernels.cu reads every key once per query; a
 * 16k-token prompt then moves terabytes.  Here each key is read once per
 * tile of queries, and the products run on tensor cores.
 */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "cuda_plan.h"
#include "r1_kernels.cuh"
#include "device_util.cuh"

__global__ void
kv_gather_kernel(r1k_kv_args a, int slot, int ctx, bf16 *kc, bf16 *vc)
{
	const int	hd = a.head_dim,
				v8 = hd / 8;
	const size_t n = (size_t) 2 * a.n_kv_heads * ctx * v8;
	const int32_t *trow = a.tables + (size_t) slot * a.mbps;
	const uint4 *pool = reinterpret_cast<const uint4 *>(a.pool);

	for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
	{
		int			d8 = (int) (i % v8);
		size_t		r = i / v8;
		int			p = (int) (r % ctx);
		int			h = (int) ((r / ctx) % a.n_kv_heads);
		int			kv = (int) (r / ((size_t) ctx * a.n_kv_heads));
		size_t		src = r1_kv_row(trow, a.layer, kv, h, p, a.n_blocks, a.n_kv_heads, hd) / 8 + d8;
		bf16	   *dst = (kv ? vc : kc) + ((size_t) h * ctx + p) * hd + (size_t) d8 * 8;

		*reinterpret_cast<uint4 *>(dst) = pool[src];
	}
}

__global__ void
q_pack_kernel(const float *q, bf16 *qb, int T, int n_heads, int hd)
{
	const size_t n = (size_t) T * n_heads * hd;

	for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x)
	{
		int			d = (int) (i % hd);
		int			t = (int) ((i / hd) % T);
		int			h = (int) (i / ((size_t) hd * T));

		qb[i] = __float2bfloat16_rn(q[((size_t) t * n_heads + h) * hd + d]);
	}
}

/*
 * Row r = h * tq + i of S (ld floats a row) holds query i's scores over
 * positions [0, len); the query sits at position first_pos + i, so keys
 * [0, first_pos + i] count.  P row r = exp(s - max) / sum there, 0 after.
 */
#define SM_THREADS 256

__global__ void __launch_bounds__(SM_THREADS)
softmax_rows_kernel(const float *S, bf16 *P, int tq, int len, int ld, int first_pos)
{
	__shared__ float red[SM_THREADS / 32];
	__shared__ float bcast;
	const int	r = blockIdx.x,
				i = r % tq;
	const int	valid = min(len, first_pos + i + 1);
	const float *s = S + (size_t) r * ld;
	bf16	   *p = P + (size_t) r * ld;
	const int	tid = threadIdx.x;
	float		m = -INFINITY,
				sum = 0.0f,
				inv;

	for (int j = tid; j < valid; j += SM_THREADS)
		m = fmaxf(m, s[j]);
	m = warp_max(m);
	if ((tid & 31) == 0)
		red[tid >> 5] = m;
	__syncthreads();
	if (tid < 32)
	{
		float		v = tid < SM_THREADS / 32 ? red[tid] : -INFINITY;

		v = warp_max(v);
		if (tid == 0)
			bcast = v;
	}
	__syncthreads();
	m = bcast;
	__syncthreads();
	for (int j = tid; j < valid; j += SM_THREADS)
		sum += expf(s[j] - m);
	sum = warp_sum(sum);
	if ((tid & 31) == 0)
		red[tid >> 5] = sum;
	__syncthreads();
	if (tid < 32)
	{
		float		v = tid < SM_THREADS / 32 ? red[tid] : 0.0f;

		v = warp_sum(v);
		if (tid == 0)
			bcast = v;
	}
	__syncthreads();
	inv = 1.0f / bcast;
	for (int j = tid; j < len; j += SM_THREADS)
		p[j] = __float2bfloat16_rn(j < valid ? expf(s[j] - m) * inv : 0.0f);
}

static unsigned
grid_for(size_t n, int threads)
{
	size_t		b = (n + threads - 1) / threads;

	return (unsigned) (b > 65536 ? 65536 : (b ? b : 1));
}

extern "C" cudaError_t
r1k_kv_gather(cudaStream_t s, const r1k_kv_args *kv, int slot, int ctx, uint16_t *kc, uint16_t *vc)
{
	size_t		n = (size_t) 2 * kv->n_kv_heads * ctx * (kv->head_dim / 8);

	if (kv->head_dim % 8 != 0)
		return cudaErrorInvalidValue;
	kv_gather_kernel<<<grid_for(n, 256), 256, 0, s>>>(*kv, slot, ctx, reinterpret_cast<bf16 *>(kc),
													   reinterpret_cast<bf16 *>(vc));
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_q_pack(cudaStream_t s, const float *q, uint16_t *qb, int T, int n_heads, int hd)
{
	q_pack_kernel<<<grid_for((size_t) T * n_heads * hd, 256), 256, 0, s>>>(q, reinterpret_cast<bf16 *>(qb), T,
																		   n_heads, hd);
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_softmax_rows(cudaStream_t s, const float *S, uint16_t *P, int n_rows, int tq, int len, int ld,
				 int first_pos)
{
	softmax_rows_kernel<<<n_rows, SM_THREADS, 0, s>>>(S, reinterpret_cast<bf16 *>(P), tq, len, ld, first_pos);
	return cudaGetLastError();
}
