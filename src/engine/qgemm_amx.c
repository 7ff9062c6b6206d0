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
#include "repack.h"

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

/*
 * tiles 0, 1: C (16 rows x 16 tokens, int32); 2, 3: A (16 rows x S codes);
 * 4, 5: B (S/4 x 16 tokens x 4 bytes): two sub-blocks in flight
 */
static void
tiles_for(int S)
{
	tilecfg		c __attribute__((aligned(64)));

	memset(&c, 0, sizeof(c));
	c.palette = 1;
	for (int h = 0; h < 2; h++)
	{
		c.rows[h] = AMX_ROWS;
		c.colsb[h] = 64;
		c.rows[2 + h] = AMX_ROWS;
		c.colsb[2 + h] = (uint16_t) S;
		c.rows[4 + h] = (uint8_t) (S / 4);
		c.colsb[4 + h] = 64;
	}
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

/*
 * The eight rows of a Q8_0 x8 group (repack.h) straight into what the tiles
 * read: each block's four 64-byte chunks (8 bytes of every row) transposed
 * to 32 codes a row, the + 128 taken off, and the rows' d as their scales
 * (r1_qgemm_unpack's general path puts whole blocks back first, and works
 * out the VNNI GEMM's sums, which the tiles do not need).
 */
static void
unpack_q8_x8(const uint8_t *grp, int n, uint8_t *ub, size_t us)
{
	const int	nb = n / 32;
	const uint8_t *codes = grp + (size_t) nb * 16;
	const __m512i flip = _mm512_set1_epi8((char) 0x80),
				lo = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0),	/* rows 0-3 of (a, b) */
				hi = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4),	/* rows 4-7 */
				r01 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0),
				r23 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);

	for (int i = 0; i < nb; i++)
	{
		const uint8_t *b = codes + (size_t) i * 256;
		__m512i		z0 = _mm512_xor_si512(_mm512_loadu_si512(b), flip),
					z1 = _mm512_xor_si512(_mm512_loadu_si512(b + 64), flip),
					z2 = _mm512_xor_si512(_mm512_loadu_si512(b + 128), flip),
					z3 = _mm512_xor_si512(_mm512_loadu_si512(b + 192), flip);
		__m256		d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (grp + 16 * (size_t) i)));
		float		dv[8];

		for (int h = 0; h < 2; h++)
		{
			/*
			 * chunk pairs (0, 1) and (2, 3), row by row, for rows 4h .. 4h +
			 * 3
			 */
			__m512i		t01 = _mm512_permutex2var_epi64(z0, h ? hi : lo, z1),
						t23 = _mm512_permutex2var_epi64(z2, h ? hi : lo, z3);

			for (int q = 0; q < 2; q++)
			{
				/* rows 4h + 2q and 4h + 2q + 1: their 32 codes each */
				__m512i		rr = _mm512_permutex2var_epi64(t01, q ? r23 : r01, t23);
				int			r = 4 * h + 2 * q;

				_mm256_storeu_si256((__m256i *) (ub + (size_t) r * us + 32 * (size_t) i),
									_mm512_castsi512_si256(rr));
				_mm256_storeu_si256((__m256i *) (ub + (size_t) (r + 1) * us + 32 * (size_t) i),
									_mm512_extracti64x4_epi64(rr, 1));
			}
		}
		_mm256_storeu_ps(dv, d);
		for (int r = 0; r < 8; r++)
			scales_at(ub + (size_t) r * us, n)[i] = dv[r];
	}
	for (int r = 0; r < 8; r++)
		memset(scales_at(ub + (size_t) r * us, n) + nb, 0, sizeof(float) * nb);
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
	int32_t		cbuf[2][AMX_ROWS][16] __attribute__((aligned(64)));
	float		res[AMX_ROWS][16] __attribute__((aligned(64)));

	/* x8 groups start at rows that are multiples of 8, and nr is one too */
	int			fast = x8 && dt == R1_Q8_0 && r0 % R1_REPACK_ROWS == 0 && nr % R1_REPACK_ROWS == 0;

	if (fast)
		for (int r = 0; r < nr; r += R1_REPACK_ROWS)
			unpack_q8_x8(w + (size_t) (r0 + r) * row_bytes, n, ub + (size_t) r * us, us);
	else
		r1_qgemm_unpack(dt, w, x8, row_bytes, r0, nr, n, unpack);
	for (int r = 0; r < AMX_ROWS; r++)
	{
		float	   *a = scales_at(ub + (size_t) r * us, n);

		/* rows past nr: scales of 0, so their (unread) codes add nothing */
		if (r >= nr)
			memset(a, 0, 2 * sizeof(float) * ns);
		else if (!fast)
			row_scales(dt, ub + (size_t) r * us, n, a, a + ns);
		sa[r] = a;
		sb[r] = a + ns;
	}
	tiles_for(S);
	for (int g = 0; g < x->groups; g++)
	{
		const uint8_t *qa = x->q + (size_t) g * 16 * n;
		__m512		acc[AMX_ROWS],
					inner[AMX_ROWS];

#pragma GCC unroll 16
		for (int r = 0; r < AMX_ROWS; r++)
			acc[r] = inner[r] = _mm512_setzero_ps();

		/*
		 * sub-block s's tile multiply into C (s % 2) is issued before s - 1's
		 * dots are stored and scaled, so the tiles and the vector units
		 * overlap (tiles are not renamed: one C each way)
		 */
#define AMX_ISSUE(C, A, B, s) \
	do { \
		_tile_zero(C); \
		_tile_loadd(A, ub + (size_t) (s) * S, us); \
		_tile_loadd(B, qa + (size_t) (s) * S * 16, 64); \
		if (k) \
			_tile_dpbusd(C, A, B); \
		else \
			_tile_dpbssd(C, A, B); \
	} while (0)
		AMX_ISSUE(0, 2, 4, 0);
		for (int s = 0; s <= ns; s++)
		{
			/*
			 * s + 1's multiply goes out, s's dots are stored, and s - 1's
			 * (stored a step ago: a tile store does not forward to loads) are
			 * scaled
			 */
			if (s < ns)
			{
				if (s % 2 == 0)
				{
					if (s + 1 < ns)
						AMX_ISSUE(1, 3, 5, s + 1);
					_tile_stored(0, cbuf[0], 64);
				}
				else
				{
					if (s + 1 < ns)
						AMX_ISSUE(0, 2, 4, s + 1);
					_tile_stored(1, cbuf[1], 64);
				}
			}
			if (s == 0)
				continue;
			{
				const int	p = s - 1;
				int32_t		(*cb)[16] = cbuf[p % 2];

				if (k)
				{
					__m512		bs = _mm512_loadu_ps(x->bsv + ((size_t) g * ns + p) * 16);

#pragma GCC unroll 16
					for (int r = 0; r < AMX_ROWS; r++)
						inner[r] = _mm512_fnmadd_ps(_mm512_set1_ps(sb[r][p]), bs,
													_mm512_fmadd_ps(_mm512_set1_ps(sa[r][p]),
																	_mm512_cvtepi32_ps(_mm512_load_si512(cb[r])),
																	inner[r]));
				}
				else
#pragma GCC unroll 16
					for (int r = 0; r < AMX_ROWS; r++)
						inner[r] = _mm512_mul_ps(_mm512_set1_ps(sa[r][p]),
												 _mm512_cvtepi32_ps(_mm512_load_si512(cb[r])));
				if (p % spb == spb - 1)
				{
					__m512		dx = _mm512_loadu_ps(x->dxv + ((size_t) g * nblk + p / spb) * 16);

#pragma GCC unroll 16
					for (int r = 0; r < AMX_ROWS; r++)
					{
						acc[r] = _mm512_fmadd_ps(inner[r], dx, acc[r]);
						inner[r] = _mm512_setzero_ps();
					}
				}
			}
		}
#undef AMX_ISSUE
#pragma GCC unroll 16
		for (int r = 0; r < AMX_ROWS; r++)
			_mm512_store_ps(res[r], acc[r]);
		for (int tok = 0; tok < 16 && 16 * g + tok < x->T; tok++)
			for (int r = 0; r < nr; r++)
				out[(size_t) (16 * g + tok) * ldo + r0 + r] = res[r][tok];
	}
	_tile_release();
}
