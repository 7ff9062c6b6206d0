/*
 * gemv.cu - linear layers for decode-sized batches (1 to 4 tokens), where a
 * step is bound by reading the weights once: one warp per weight row, every
 * lane streaming 16-byte pieces of the row with several loads in flight,
 * the tokens' activations read through the read-only cache.
 *
 *   gemv_kernel          out = x W^T (+ beta out), bf16 weights
 *   gemv_swiglu_kernel   h = silu(x Wg^T) * (x Wu^T): the gate and up rows of
 *                        one output in one warp, so the f32 gate/up buffer
 *                        and the SwiGLU launch disappear
 *   qgemv_kernel<DT>     out = x W^T (+ beta out) with W in GGUF blocks
 *                        (Q4_K, Q6_K, Q8_0), a lane per block piece: the
 *                        scales applied once per piece, not once per weight
 *
 * Not batch-invariant (the sums are ordered differently from the batched
 * kernels): backend_cuda.c uses them only outside batch_invariant mode.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "quant_blocks.h"
#include "r1_kernels.cuh"
#include "device_util.cuh"

#define GV_WARPS 8
#define GV_MAX_TOK 4

/* sum of the 8 products of a weight piece and an activation piece */
__device__ __forceinline__ float
dot8(uint4 w, uint4 x)
{
	const __nv_bfloat162 *a = reinterpret_cast<const __nv_bfloat162 *>(&w);
	const __nv_bfloat162 *b = reinterpret_cast<const __nv_bfloat162 *>(&x);
	float		s = 0.0f;

#pragma unroll
	for (int i = 0; i < 4; i++)
	{
		float2		fa = __bfloat1622float2(a[i]),
					fb = __bfloat1622float2(b[i]);

		s = fmaf(fa.x, fb.x, s);
		s = fmaf(fa.y, fb.y, s);
	}
	return s;
}

/* weights are read once: keep them out of L1 */
__device__ __forceinline__ uint4
ld_stream(const uint4 *p)
{
	return __ldcs(p);
}

/* acc[t] += row . x[t] over nvec 16-byte pieces, four loads in flight */
template <int NT>
__device__ __forceinline__ void
row_dot(const uint4 *wr, const uint4 *x, int nvec, int lane, float acc[NT])
{
	int			v = lane;

	for (; v + 96 < nvec; v += 128)
	{
		uint4		w0 = ld_stream(wr + v),
					w1 = ld_stream(wr + v + 32),
					w2 = ld_stream(wr + v + 64),
					w3 = ld_stream(wr + v + 96);

#pragma unroll
		for (int t = 0; t < NT; t++)
		{
			const uint4 *xt = x + (size_t) t * nvec;

			acc[t] += dot8(w0, __ldg(xt + v)) + dot8(w1, __ldg(xt + v + 32)) +
				dot8(w2, __ldg(xt + v + 64)) + dot8(w3, __ldg(xt + v + 96));
		}
	}
	for (; v < nvec; v += 32)
	{
		uint4		w0 = ld_stream(wr + v);

#pragma unroll
		for (int t = 0; t < NT; t++)
			acc[t] += dot8(w0, __ldg(x + (size_t) t * nvec + v));
	}
}

template <int NT>
__global__ void __launch_bounds__(GV_WARPS * 32)
gemv_kernel(float *out, const bf16 *x, const bf16 *w, int n_out, int n_in, float beta)
{
	int			lane = threadIdx.x & 31;
	int			n = blockIdx.x * GV_WARPS + (threadIdx.x >> 5);
	int			nvec = n_in / 8;
	float		acc[NT];

	if (n >= n_out)
		return;
#pragma unroll
	for (int t = 0; t < NT; t++)
		acc[t] = 0.0f;
	row_dot<NT>(reinterpret_cast<const uint4 *>(w + (size_t) n * n_in), reinterpret_cast<const uint4 *>(x),
				nvec, lane, acc);
#pragma unroll
	for (int t = 0; t < NT; t++)
	{
		float		v = warp_sum(acc[t]);

		if (lane == 0)
		{
			size_t		i = (size_t) t * n_out + n;

			out[i] = beta != 0.0f ? v + beta * out[i] : v;
		}
	}
}

template <int NT>
__global__ void __launch_bounds__(GV_WARPS * 32)
gemv_swiglu_kernel(bf16 *h, const bf16 *x, const bf16 *w_gu, int inter, int n_in)
{
	int			lane = threadIdx.x & 31;
	int			j = blockIdx.x * GV_WARPS + (threadIdx.x >> 5);
	int			nvec = n_in / 8;
	float		g[NT],
				u[NT];

	if (j >= inter)
		return;
#pragma unroll
	for (int t = 0; t < NT; t++)
		g[t] = u[t] = 0.0f;
	row_dot<NT>(reinterpret_cast<const uint4 *>(w_gu + (size_t) j * n_in), reinterpret_cast<const uint4 *>(x),
				nvec, lane, g);
	row_dot<NT>(reinterpret_cast<const uint4 *>(w_gu + (size_t) (inter + j) * n_in),
				reinterpret_cast<const uint4 *>(x), nvec, lane, u);
#pragma unroll
	for (int t = 0; t < NT; t++)
	{
		float		gv = warp_sum(g[t]),
					uv = warp_sum(u[t]);

		if (lane == 0)
			h[(size_t) t * inter + j] = __float2bfloat16_rn(gv / (1.0f + expf(-gv)) * uv);
	}
}

/* ---------- GGUF blocks ---------- */

__device__ __forceinline__ float
f16_at(const uint8_t *p)
{
	return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short *>(p)));
}

/* 16 bytes from a 2-byte aligned address (Q6_K and Q8_0 blocks are 210 and 34 bytes) */
__device__ __forceinline__ void
load16_a2(const uint8_t *p, uint8_t b[16])
{
	const unsigned short *s = reinterpret_cast<const unsigned short *>(p);

#pragma unroll
	for (int i = 0; i < 8; i++)
	{
		unsigned short v = s[i];

		b[2 * i] = (uint8_t) (v & 0xFF);
		b[2 * i + 1] = (uint8_t) (v >> 8);
	}
}

/* 16 activations x[k0 .. k0 + 16) of token row xt as floats (k0 a multiple of 8) */
__device__ __forceinline__ void
load_x16(const bf16 *xt, int k0, float f[16])
{
	uint4		a = __ldg(reinterpret_cast<const uint4 *>(xt + k0)),
				b = __ldg(reinterpret_cast<const uint4 *>(xt + k0 + 8));
	const __nv_bfloat162 *ha = reinterpret_cast<const __nv_bfloat162 *>(&a);
	const __nv_bfloat162 *hb = reinterpret_cast<const __nv_bfloat162 *>(&b);

#pragma unroll
	for (int i = 0; i < 4; i++)
	{
		float2		va = __bfloat1622float2(ha[i]),
					vb = __bfloat1622float2(hb[i]);

		f[2 * i] = va.x;
		f[2 * i + 1] = va.y;
		f[8 + 2 * i] = vb.x;
		f[8 + 2 * i + 1] = vb.y;
	}
}

/*
 * Pieces a lane takes: Q4_K: 32 weights (a 256-weight block has 8: pair j of
 * 64, half h of 16: bytes qs[32j + 16h, +16), low nibbles the weights
 * 64j + 16h + i of sub-block 2j, high nibbles 64j + 32 + 16h + i of 2j + 1);
 * Q6_K: 64 weights (4 a block: half h of 128, l in [16s, 16s + 16): the
 * weights 128h + l + 32r, r = 0..3); Q8_0: one 32-weight block.
 */
template <int DT>
struct qpiece;

template <>
struct qpiece<R1_Q4_K>
{
	static constexpr int weights = 32;

	template <int NT>
	__device__ __forceinline__ static void
	dot(const uint8_t *row, int piece, const bf16 *x, int n_in, float acc[NT])
	{
		const uint8_t *b = row + (size_t) (piece / 8) * 144;
		int			j = (piece % 8) / 2,
					hh = piece % 2;
		int			sc0, m0, sc1, m1;
		float		d = f16_at(b),
					dmin = f16_at(b + 2);
		uint4		raw = *reinterpret_cast<const uint4 *>(b + 16 + 32 * j + 16 * hh);
		const uint8_t *q = reinterpret_cast<const uint8_t *>(&raw);
		int			k0 = (piece / 8) * 256 + 64 * j + 16 * hh;

		r1qb_scale_min_k4(2 * j, b + 4, &sc0, &m0);
		r1qb_scale_min_k4(2 * j + 1, b + 4, &sc1, &m1);
#pragma unroll
		for (int t = 0; t < NT; t++)
		{
			const bf16 *xt = x + (size_t) t * n_in;
			float		xl[16],
						xh[16];
			float		sq0 = 0.0f, sx0 = 0.0f, sq1 = 0.0f, sx1 = 0.0f;

			load_x16(xt, k0, xl);
			load_x16(xt, k0 + 32, xh);
#pragma unroll
			for (int i = 0; i < 16; i++)
			{
				sq0 = fmaf(xl[i], (float) (q[i] & 0xF), sq0);
				sx0 += xl[i];
				sq1 = fmaf(xh[i], (float) (q[i] >> 4), sq1);
				sx1 += xh[i];
			}
			acc[t] += d * (float) sc0 * sq0 - dmin * (float) m0 * sx0 +
				d * (float) sc1 * sq1 - dmin * (float) m1 * sx1;
		}
	}
};

template <>
struct qpiece<R1_Q6_K>
{
	static constexpr int weights = 64;

	template <int NT>
	__device__ __forceinline__ static void
	dot(const uint8_t *row, int piece, const bf16 *x, int n_in, float acc[NT])
	{
		const uint8_t *b = row + (size_t) (piece / 4) * 210;
		int			hh = (piece % 4) / 2,
					s = piece % 2;
		uint8_t		ql0[16],
					ql1[16],
					qh[16];
		const int8_t *sc = reinterpret_cast<const int8_t *>(b + 192) + 8 * hh + s;
		float		d = f16_at(b + 208);
		int			k0 = (piece / 4) * 256 + 128 * hh + 16 * s;

		load16_a2(b + 64 * hh + 16 * s, ql0);
		load16_a2(b + 64 * hh + 32 + 16 * s, ql1);
		load16_a2(b + 128 + 32 * hh + 16 * s, qh);
#pragma unroll
		for (int t = 0; t < NT; t++)
		{
			const bf16 *xt = x + (size_t) t * n_in;
			float		sum = 0.0f;

#pragma unroll
			for (int r = 0; r < 4; r++)
			{
				float		xv[16],
							sq = 0.0f;

				load_x16(xt, k0 + 32 * r, xv);
#pragma unroll
				for (int i = 0; i < 16; i++)
				{
					int			lo4 = r == 0 ? ql0[i] & 0xF : r == 1 ? ql1[i] & 0xF : r == 2 ? ql0[i] >> 4 : ql1[i] >> 4;
					int			qv = (lo4 | (((qh[i] >> (2 * r)) & 3) << 4)) - 32;

					sq = fmaf(xv[i], (float) qv, sq);
				}
				sum += (float) sc[2 * r] * sq;
			}
			acc[t] += d * sum;
		}
	}
};

template <>
struct qpiece<R1_Q8_0>
{
	static constexpr int weights = 32;

	template <int NT>
	__device__ __forceinline__ static void
	dot(const uint8_t *row, int piece, const bf16 *x, int n_in, float acc[NT])
	{
		const uint8_t *b = row + (size_t) piece * 34;
		uint8_t		q0[16],
					q1[16];
		float		d = f16_at(b);
		int			k0 = piece * 32;

		load16_a2(b + 2, q0);
		load16_a2(b + 18, q1);
#pragma unroll
		for (int t = 0; t < NT; t++)
		{
			const bf16 *xt = x + (size_t) t * n_in;
			float		x0[16],
						x1[16],
						sq = 0.0f;

			load_x16(xt, k0, x0);
			load_x16(xt, k0 + 16, x1);
#pragma unroll
			for (int i = 0; i < 16; i++)
			{
				sq = fmaf(x0[i], (float) (int8_t) q0[i], sq);
				sq = fmaf(x1[i], (float) (int8_t) q1[i], sq);
			}
			acc[t] += d * sq;
		}
	}
};

template <int DT, int NT>
__global__ void __launch_bounds__(GV_WARPS * 32)
qgemv_kernel(float *out, int ldo, const bf16 *x, const uint8_t *w, size_t row_bytes, int n_out, int n_in,
			 float beta)
{
	int			lane = threadIdx.x & 31;
	int			n = blockIdx.x * GV_WARPS + (threadIdx.x >> 5);
	int			pieces = n_in / qpiece<DT>::weights;
	const uint8_t *wr;
	float		acc[NT];

	if (n >= n_out)
		return;
	wr = w + (size_t) n * row_bytes;
#pragma unroll
	for (int t = 0; t < NT; t++)
		acc[t] = 0.0f;
#pragma unroll 2
	for (int p = lane; p < pieces; p += 32)
		qpiece<DT>::template dot<NT>(wr, p, x, n_in, acc);
#pragma unroll
	for (int t = 0; t < NT; t++)
	{
		float		v = warp_sum(acc[t]);

		if (lane == 0)
		{
			size_t		i = (size_t) t * ldo + n;

			out[i] = beta != 0.0f ? v + beta * out[i] : v;
		}
	}
}

/* ---------- launchers ---------- */

#define GV_GRID(n) dim3((unsigned) (((n) + GV_WARPS - 1) / GV_WARPS))

extern "C" int
r1k_gemv_ok(int T, int n_in)
{
	return T >= 1 && T <= GV_MAX_TOK && n_in % 8 == 0;
}

extern "C" cudaError_t
r1k_gemv(cudaStream_t s, float *out, const uint16_t *x, const uint16_t *w, int T, int n_out, int n_in,
		 float beta)
{
	const bf16 *xb = reinterpret_cast<const bf16 *>(x),
			   *wb = reinterpret_cast<const bf16 *>(w);

	if (!r1k_gemv_ok(T, n_in))
		return cudaErrorInvalidValue;
	switch (T)
	{
		case 1:
			gemv_kernel<1><<<GV_GRID(n_out), GV_WARPS * 32, 0, s>>>(out, xb, wb, n_out, n_in, beta);
			break;
		case 2:
			gemv_kernel<2><<<GV_GRID(n_out), GV_WARPS * 32, 0, s>>>(out, xb, wb, n_out, n_in, beta);
			break;
		case 3:
			gemv_kernel<3><<<GV_GRID(n_out), GV_WARPS * 32, 0, s>>>(out, xb, wb, n_out, n_in, beta);
			break;
		default:
			gemv_kernel<4><<<GV_GRID(n_out), GV_WARPS * 32, 0, s>>>(out, xb, wb, n_out, n_in, beta);
			break;
	}
	return cudaGetLastError();
}

extern "C" cudaError_t
r1k_gemv_swiglu(cudaStream_t s, uint16_t *h, const uint16_t *x, const uint16_t *w_gu, int T, int inter,
				int n_in)
{
	bf16	   *hb = reinterpret_cast<bf16 *>(h);
	const bf16 *xb = reinterpret_cast<const bf16 *>(x),
			   *wb = reinterpret_cast<const bf16 *>(w_gu);

	if (!r1k_gemv_ok(T, n_in))
		return cudaErrorInvalidValue;
	switch (T)
	{
		case 1:
			gemv_swiglu_kernel<1><<<GV_GRID(inter), GV_WARPS * 32, 0, s>>>(hb, xb, wb, inter, n_in);
			break;
		case 2:
			gemv_swiglu_kernel<2><<<GV_GRID(inter), GV_WARPS * 32, 0, s>>>(hb, xb, wb, inter, n_in);
			break;
		case 3:
			gemv_swiglu_kernel<3><<<GV_GRID(inter), GV_WARPS * 32, 0, s>>>(hb, xb, wb, inter, n_in);
			break;
		default:
			gemv_swiglu_kernel<4><<<GV_GRID(inter), GV_WARPS * 32, 0, s>>>(hb, xb, wb, inter, n_in);
			break;
	}
	return cudaGetLastError();
}

extern "C" int
r1k_qgemv_ok(int dtype, int T, int n_in)
{
	if (T < 1 || T > GV_MAX_TOK)
		return 0;
	switch (dtype)
	{
		case R1_Q4_K:
		case R1_Q6_K:
			return n_in % 256 == 0;
		case R1_Q8_0:
			return n_in % 32 == 0;
		default:
			return 0;
	}
}

template <int DT>
static void
launch_qgemv(cudaStream_t s, float *out, int ldo, const bf16 *x, const uint8_t *w, size_t row_bytes, int T,
			 int n_out, int n_in, float beta)
{
	switch (T)
	{
		case 1:
			qgemv_kernel<DT, 1><<<GV_GRID(n_out), GV_WARPS * 32, 0, s>>>(out, ldo, x, w, row_bytes, n_out, n_in, beta);
			break;
		case 2:
			qgemv_kernel<DT, 2><<<GV_GRID(n_out), GV_WARPS * 32, 0, s>>>(out, ldo, x, w, row_bytes, n_out, n_in, beta);
			break;
		case 3:
			qgemv_kernel<DT, 3><<<GV_GRID(n_out), GV_WARPS * 32, 0, s>>>(out, ldo, x, w, row_bytes, n_out, n_in, beta);
			break;
		default:
			qgemv_kernel<DT, 4><<<GV_GRID(n_out), GV_WARPS * 32, 0, s>>>(out, ldo, x, w, row_bytes, n_out, n_in, beta);
			break;
	}
}

extern "C" cudaError_t
r1k_qgemv(cudaStream_t s, float *out, int ldo, const uint16_t *x, const void *w, int dtype, size_t row_bytes,
		  int T, int n_out, int n_in, float beta)
{
	const bf16 *xb = reinterpret_cast<const bf16 *>(x);
	const uint8_t *wb = static_cast<const uint8_t *>(w);

	if (!r1k_qgemv_ok(dtype, T, n_in))
		return cudaErrorInvalidValue;
	if (dtype == R1_Q4_K)
		launch_qgemv<R1_Q4_K>(s, out, ldo, xb, wb, row_bytes, T, n_out, n_in, beta);
	else if (dtype == R1_Q6_K)
		launch_qgemv<R1_Q6_K>(s, out, ldo, xb, wb, row_bytes, T, n_out, n_in, beta);
	else
		launch_qgemv<R1_Q8_0>(s, out, ldo, xb, wb, row_bytes, T, n_out, n_in, beta);
	return cudaGetLastError();
}
