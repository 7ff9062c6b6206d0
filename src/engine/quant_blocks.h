/*
 * quant_blocks.h - eight weights of a row at a time, straight from ggml's
 * block layouts (quant.h): what the CUDA backend's quantised linear layers
 * and embedding lookup decode inside their loops.  Header-only, compiled by
 * nvcc (kernels/r1_kernels.cu) and by the C compiler, so the index logic is
 * unit-tested on the CPU (test/unit/test_quant.c: bitwise equal to
 * r1_dequantize_row for every position).
 *
 * r1qb_weights8(dt, row, k0, out): weights [k0, k0 + 8) of a row of dt, k0 a
 * multiple of 8; dt Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K or BF16 (a plain row).  Each
 * weight is computed with the same float operations, in the same order, as
 * quant.c's decoders.
 */
#ifndef R1_QUANT_BLOCKS_H
#define R1_QUANT_BLOCKS_H

#include <math.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define R1QB_FN __host__ __device__ __forceinline__ static
#else
#define R1QB_FN static inline
#endif

/* IEEE half to float, by bits (no intrinsics: the same on host and device) */
R1QB_FN float
r1qb_f16(const uint8_t *p)
{
	uint32_t	h = (uint32_t) p[0] | ((uint32_t) p[1] << 8);
#ifdef __CUDA_ARCH__
	/* the hardware conversion: exact, as the bit arithmetic below */
	return __half2float(__ushort_as_half((unsigned short) h));
#else
	uint32_t	sign = h >> 15,
				e = (h >> 10) & 0x1F,
				m = h & 0x3FF;
	float		v;

	if (e == 0)
		v = ldexpf((float) m, -24);
	else if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = ldexpf((float) (m | 0x400), (int) e - 25);
	return sign ? -v : v;
#endif
}

/* 6-bit scale and min of sub-block j of a Q4_K/Q5_K block's 12 packed bytes */
R1QB_FN void
r1qb_scale_min_k4(int j, const uint8_t *q, int *sc, int *m)
{
	if (j < 4)
	{
		*sc = q[j] & 63;
		*m = q[j + 4] & 63;
	}
	else
	{
		*sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
		*m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
	}
}

R1QB_FN void
r1qb_weights8(int dt, const uint8_t *row, int k0, float *out)
{
	if (dt == R1_Q8_0)
	{
		const uint8_t *b = row + (k0 / 32) * 34;
		float		d = r1qb_f16(b);
		const int8_t *q = (const int8_t *) (b + 2) + k0 % 32;

		for (int i = 0; i < 8; i++)
			out[i] = d * q[i];
	}
	else if (dt == R1_Q4_0 || dt == R1_Q5_0)
	{
		int			q5 = dt == R1_Q5_0;
		const uint8_t *b = row + (k0 / 32) * (q5 ? 22 : 18);
		float		d = r1qb_f16(b);
		int			o = k0 % 32,
					hi = o >= 16;
		const uint8_t *q = b + (q5 ? 6 : 2) + (o % 16);
		uint32_t	qh = q5 ? ((uint32_t) b[2] | (uint32_t) b[3] << 8 | (uint32_t) b[4] << 16 |
							   (uint32_t) b[5] << 24) : 0;

		for (int i = 0; i < 8; i++)
		{
			int			v = hi ? q[i] >> 4 : q[i] & 0xF;

			if (q5)
				v |= (int) ((qh >> (o + i)) & 1) << 4;
			out[i] = d * (v - (q5 ? 16 : 8));
		}
	}
	else if (dt == R1_Q4_K || dt == R1_Q5_K)
	{
		int			q5 = dt == R1_Q5_K;
		const uint8_t *b = row + (k0 / 256) * (q5 ? 176 : 144);
		int			o = k0 % 256,
					pair = o / 64,
					r = o % 64,
					hi = r >= 32,
					l = r % 32,
					sub = 2 * pair + hi,
					sc,
					mn;
		float		d = r1qb_f16(b),
					dmin = r1qb_f16(b + 2),
					d1,
					m1;
		const uint8_t *q = b + (q5 ? 48 : 16) + 32 * pair + l;

		r1qb_scale_min_k4(sub, b + 4, &sc, &mn);
		d1 = d * sc;
		m1 = dmin * mn;
		for (int i = 0; i < 8; i++)
		{
			int			v = hi ? q[i] >> 4 : q[i] & 0xF;

			if (q5 && (b[16 + l + i] & (1u << sub)))
				v += 16;
			out[i] = d1 * v - m1;
		}
	}
	else if (dt == R1_Q6_K)
	{
		const uint8_t *b = row + (k0 / 256) * 210;
		int			o = k0 % 256,
					h = o / 128,
					k = (o % 128) / 32,
					l = o % 32;
		const uint8_t *ql = b + 64 * h + (k & 1) * 32 + l;
		const uint8_t *qh = b + 128 + 32 * h + l;
		const int8_t *sc = (const int8_t *) (b + 192) + 8 * h + 2 * k + l / 16;
		float		d = r1qb_f16(b + 208);

		/* 8 weights never straddle a scale: l is a multiple of 8 */
		for (int i = 0; i < 8; i++)
		{
			int			lo4 = k < 2 ? ql[i] & 0xF : ql[i] >> 4;
			int			q = (lo4 | (((qh[i] >> (2 * k)) & 3) << 4)) - 32;

			out[i] = d * sc[0] * q;
		}
	}
	else						/* BF16 */
	{
		const uint8_t *p = row + 2 * (size_t) k0;

		for (int i = 0; i < 8; i++)
		{
			union
			{
				uint32_t	u;
				float		f;
			}			c;

			c.u = ((uint32_t) p[2 * i] | ((uint32_t) p[2 * i + 1] << 8)) << 16;
			out[i] = c.f;
		}
	}
}

#endif							/* R1_QUANT_BLOCKS_H */
