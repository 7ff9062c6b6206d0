/*
 * qgemm_amx.c - the prompt GEMM of quantised weights on AMX tiles
 * (qgemm.h's r1_qgemm_amx_*), for batches that need not be batch-invariant.
 *
 * Sixteen weight rows, unpacked by r1_qgemm_unpack, are the tile multiply's
 * A operand as they lie (row r's codes of sub-block s at unpack + r * stride
 * + s * S); sixteen tokens' activations, packed by r1_qgemm_amx_pack, are
 * its B operand.  One TDPBUSD (unsigned K-quant codes) or TDPBSSD (signed
 * codes of 32-weight blocks) gives the 16 x 16 integer dots of a sub-block;
 * they are stored, widened and scaled row by row in zmm (a row's lanes are
 * the 16 tokens):
 *   inner[r] += a[r][s] * C[r] - b[r][s] * bsum_s      per sub-block s
 *   acc[r]   += inner[r] * d_x                         per super-block
 * with a = d x the sub-block scale, b = the mins term's weight (dmin x min;
 * Q6_K d x 32 x scale, for its codes' offset of 32; none for 32-weight
 * blocks, where each block is its own super-block).  That is ggml's
 * arithmetic, one float step per sub-block where qdot.h keeps eight lanes,
 * which is what lets the integer work run on the tiles.
 */
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,amx-tile,amx-int8")
#include <immintrin.h>
#include <string.h>

#include "qgemm.h"

#define AMX_ROWS 16

/* palette 1's tile configuration (64 bytes, _tile_loadconfig) */
typedef struct tilecfg
{
	uint8_t		palette;
	uint8_t		start_row;
	uint8_t		reserved[14];
	uint16_t	colsb[16];
	uint8_t		rows[16];
} tilecfg;

/* tile 0: C (16 rows x 16 tokens, int32); 1: A (16 rows x S codes); 2: B (S/4 x 16 tokens x 4 bytes) */
static void
tiles_for(int S)
{
	tilecfg		c __attribute__((aligned(64)));

	memset(&c, 0, sizeof(c));
	c.palette = 1;
	c.rows[0] = AMX_ROWS;
	c.colsb[0] = 64;
	c.rows[1] = AMX_ROWS;
	c.colsb[1] = (uint16_t) S;
	c.rows[2] = (uint8_t) (S / 4);
	c.colsb[2] = 64;
	_tile_loadconfig(&c);
}

/*
 * Row r's a and b of every sub-block (ns of them), from its unpacked parts,
 * into sa[ns], sb[ns] (the room past the parts in the row's buffer).
 */
static void
row_scales(r1_dtype dt, const uint8_t *ub, int n, float *sa, float *sb)
{
	if (r1_qdot_block(dt) == 32)
	{
		const float *dw = (const float *) (ub + 2 * (size_t) n);

		for (int i = 0; i < n / 32; i++)
		{
			sa[i] = dw[i];
			sb[i] = 0.0f;
		}
		return;
	}
	{
		const int16_t *sv = (const int16_t *) (ub + n);
		const int32_t *mp = (const int32_t *) (ub + 2 * (size_t) n);
		const float *dd = (const float *) (ub + 2 * (size_t) n + n / 8);

		for (int i = 0; i < n / 256; i++)
		{
			float		d = dd[2 * i],
						dmin = dd[2 * i + 1];

			if (dt == R1_Q6_K)
				for (int s = 0; s < 16; s++)
				{
					uint32_t	pair = (uint32_t) mp[8 * i + s / 2];

					sa[16 * i + s] = d * sv[16 * (8 * i + s / 2) + 8 * (s % 2)];
					sb[16 * i + s] = d * (int16_t) (uint16_t) (pair >> (16 * (s % 2)));
				}
			else
				for (int g = 0; g < 8; g++)
				{
					sa[8 * i + g] = d * sv[16 * (8 * i + g)];
					sb[8 * i + g] = dmin * (int16_t) (uint16_t) (uint32_t) mp[8 * i + g];
				}
		}
	}
}

/* where a row's scales go: past its unpacked parts (2n + n/4 <= R1_QGEMM_UNPACK_BYTES(n) - n/2) */
static inline float *
scales_at(uint8_t *ub, int n)
{
	return (float *) (ub + 2 * (size_t) n + (size_t) n / 4);
}

void
r1_qgemm_amx_rows(r1_dtype dt, const uint8_t *w, int x8, size_t row_bytes, int r0, int nr,
				  const r1_qxa *x, float *out, size_t ldo, void *unpack)
{
	const int	n = x->n,
				S = x->sub,
				ns = n / S,
				nblk = n / x->block,
				spb = x->block / S,
				k = x->block == 256;
	const size_t us = R1_QGEMM_USTRIDE(n);
	uint8_t    *ub = unpack;
	const float *sa[AMX_ROWS],
			   *sb[AMX_ROWS];
	int32_t		cbuf[AMX_ROWS][16] __attribute__((aligned(64)));
	float		res[AMX_ROWS][16] __attribute__((aligned(64)));

	r1_qgemm_unpack(dt, w, x8, row_bytes, r0, nr, n, unpack);
	for (int r = 0; r < AMX_ROWS; r++)
	{
		float	   *a = scales_at(ub + (size_t) r * us, n);

		/* rows past nr: scales of 0, so their (unread) codes add nothing */
		if (r < nr)
			row_scales(dt, ub + (size_t) r * us, n, a, a + ns);
		else
			memset(a, 0, 2 * sizeof(float) * ns);
		sa[r] = a;
		sb[r] = a + ns;
	}
	tiles_for(S);
	for (int g = 0; g < x->groups; g++)
	{
		const uint8_t *qa = x->q + (size_t) g * 16 * n;
		__m512		acc[AMX_ROWS];

#pragma GCC unroll 16
		for (int r = 0; r < AMX_ROWS; r++)
			acc[r] = _mm512_setzero_ps();
		for (int i = 0; i < nblk; i++)
		{
			__m512		inner[AMX_ROWS],
						dx = _mm512_loadu_ps(x->dxv + ((size_t) g * nblk + i) * 16);

#pragma GCC unroll 16
			for (int r = 0; r < AMX_ROWS; r++)
				inner[r] = _mm512_setzero_ps();
			for (int j = 0; j < spb; j++)
			{
				int			s = i * spb + j;

				_tile_zero(0);
				_tile_loadd(1, ub + (size_t) s * S, us);
				_tile_loadd(2, qa + (size_t) s * S * 16, 64);
				if (k)
					_tile_dpbusd(0, 1, 2);
				else
					_tile_dpbssd(0, 1, 2);
				_tile_stored(0, cbuf, 64);
				if (k)
				{
					__m512		bs = _mm512_loadu_ps(x->bsv + ((size_t) g * ns + s) * 16);

#pragma GCC unroll 16
					for (int r = 0; r < AMX_ROWS; r++)
						inner[r] = _mm512_fnmadd_ps(_mm512_set1_ps(sb[r][s]), bs,
													_mm512_fmadd_ps(_mm512_set1_ps(sa[r][s]),
																	_mm512_cvtepi32_ps(_mm512_load_si512(cbuf[r])),
																	inner[r]));
				}
				else
#pragma GCC unroll 16
					for (int r = 0; r < AMX_ROWS; r++)
						inner[r] = _mm512_mul_ps(_mm512_set1_ps(sa[r][s]),
												 _mm512_cvtepi32_ps(_mm512_load_si512(cbuf[r])));
			}
#pragma GCC unroll 16
			for (int r = 0; r < AMX_ROWS; r++)
				acc[r] = _mm512_fmadd_ps(inner[r], dx, acc[r]);
		}
#pragma GCC unroll 16
		for (int r = 0; r < AMX_ROWS; r++)
			_mm512_store_ps(res[r], acc[r]);
		for (int tok = 0; tok < 16 && 16 * g + tok < x->T; tok++)
			for (int r = 0; r < nr; r++)
				out[(size_t) (16 * g + tok) * ldo + r0 + r] = res[r][tok];
	}
	_tile_release();
}
