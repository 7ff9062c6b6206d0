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

#include "amx.h"
#include "qgemm.h"
#include "repack.h"

#define AMX_ROWS 16


/*
 * tiles 0-3: C (16 rows x 16 tokens, int32), four sub-blocks in flight;
 * 4, 5: A (16 rows x S codes); 6, 7: B (S/4 x 16 tokens x 4 bytes)
 */
static void
tiles_for(int S)
{
	r1_tilecfg	c __attribute__((aligned(64)));

	r1_tilecfg_init(&c);
	for (int t = 0; t < 4; t++)
	{
		c.rows[t] = AMX_ROWS;
		c.colsb[t] = 64;
	}
	for (int h = 0; h < 2; h++)
	{
		c.rows[4 + h] = AMX_ROWS;
		c.colsb[4 + h] = (uint16_t) S;
		c.rows[6 + h] = (uint8_t) (S / 4);
		c.colsb[6 + h] = 64;
	}
	_tile_loadconfig(&c);
}

/*
 * Row r's a and b of every sub-block (ns of them), from its unpacked parts,
 * into column r of sa[ns][16] and sb[ns][16].
 */
static void
row_scales(r1_dtype dt, const uint8_t *ub, int n, float *sa, float *sb)
{
	if (r1_qdot_block(dt) == 32)
	{
		const float *dw = (const float *) (ub + 2 * (size_t) n);

		for (int i = 0; i < n / 32; i++)
		{
			sa[16 * i] = dw[i];
			sb[16 * i] = 0.0f;
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

					sa[16 * (16 * i + s)] = d * sv[16 * (8 * i + s / 2) + 8 * (s % 2)];
					sb[16 * (16 * i + s)] = d * (int16_t) (uint16_t) (pair >> (16 * (s % 2)));
				}
			else
				for (int g = 0; g < 8; g++)
				{
					sa[16 * (8 * i + g)] = d * sv[16 * (8 * i + g)];
					sb[16 * (8 * i + g)] = dmin * (int16_t) (uint16_t) (uint32_t) mp[8 * i + g];
				}
		}
	}
}

/*
 * Four 64-byte chunks of an x8 group (repack.h: chunk c holds 8 bytes of
 * each of the eight rows) turned round: rr[m] holds rows 2m and 2m + 1's 32
 * bytes (chunk 0's 8 first), one row per 256-bit half.
 */
static inline void
rows_of_chunks(const uint8_t *c0, size_t step, __m512i rr[4])
{
	const __m512i lo = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0),	/* rows 0-3 of (a, b) */
				hi = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4),	/* rows 4-7 */
				r01 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0),
				r23 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
	__m512i		z0 = _mm512_loadu_si512(c0),
				z1 = _mm512_loadu_si512(c0 + step),
				z2 = _mm512_loadu_si512(c0 + 2 * step),
				z3 = _mm512_loadu_si512(c0 + 3 * step);

	for (int h = 0; h < 2; h++)
	{
		__m512i		t01 = _mm512_permutex2var_epi64(z0, h ? hi : lo, z1),
					t23 = _mm512_permutex2var_epi64(z2, h ? hi : lo, z3);

		rr[2 * h] = _mm512_permutex2var_epi64(t01, r01, t23);
		rr[2 * h + 1] = _mm512_permutex2var_epi64(t01, r23, t23);
	}
}

/* rows 2m and 2m + 1's 32 bytes (v's halves) to ub + row * us + off */
static inline void
put_rows(__m512i v, int m, uint8_t *ub, size_t us, size_t off)
{
	_mm256_storeu_si256((__m256i *) (ub + (size_t) (2 * m) * us + off), _mm512_castsi512_si256(v));
	_mm256_storeu_si256((__m256i *) (ub + (size_t) (2 * m + 1) * us + off), _mm512_extracti64x4_epi64(v, 1));
}

/*
 * The eight rows of an x8 group (repack.h) straight into what the tiles
 * read: codes in weight order at ub + r * us, and each sub-block's a and b
 * into columns 0-7 of sa, sb ([ns][16]).  r1_qgemm_unpack's general path
 * puts whole blocks back first and works out the VNNI GEMM's scale vectors,
 * which the tiles do not need.
 */
static void
unpack_x8(r1_dtype dt, const uint8_t *grp, int n, uint8_t *ub, size_t us, float *sa, float *sb)
{
	const __m512i m4 = _mm512_set1_epi8(0x0F),
				m3 = _mm512_set1_epi8(0x03);
	__m512i		rr[4];

	if (dt == R1_Q8_0)
	{
		/* every block's d, then every block's codes + 128 */
		const int	nb = n / 32;

		for (int i = 0; i < nb; i++)
		{
			rows_of_chunks(grp + (size_t) nb * 16 + (size_t) i * 256, 64, rr);
			for (int m = 0; m < 4; m++)
				put_rows(_mm512_xor_si512(rr[m], _mm512_set1_epi8((char) 0x80)), m, ub, us, 32 * (size_t) i);
			_mm256_storeu_ps(sa + 16 * (size_t) i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (grp + 16 * (size_t) i))));
			_mm256_storeu_ps(sb + 16 * (size_t) i, _mm256_setzero_ps());
		}
		return;
	}
	for (int i = 0; i < n / 256; i++)
	{
		const uint8_t *o = grp + (size_t) i * (dt == R1_Q4_K ? 1152 : 1680);
		float		d[8],
					dm[8];

		_mm256_storeu_ps(d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) o)));
		if (dt == R1_Q4_K)
		{
			_mm256_storeu_ps(dm, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (o + 16))));
			/* code bytes 32j .. 32j + 31: sub-block 2j low, 2j + 1 high */
			for (int j = 0; j < 4; j++)
			{
				rows_of_chunks(o + 128 + 256 * (size_t) j, 64, rr);
				for (int m = 0; m < 4; m++)
				{
					put_rows(_mm512_and_si512(rr[m], m4), m, ub, us, 256 * (size_t) i + 64 * j);
					put_rows(_mm512_and_si512(_mm512_srli_epi16(rr[m], 4), m4), m, ub, us, 256 * (size_t) i + 64 * j + 32);
				}
			}
			for (int r = 0; r < 8; r++)
				for (int g = 0; g < 8; g++)
				{
					int			u = 16 * (g / 2) + 2 * r + g % 2,
								sc = o[32 + u] & 63,
								mn = (o[32 + u] >> 6) << 4 | ((o[96 + u % 32] >> (u < 32 ? 0 : 4)) & 0xF);

					sa[16 * (8 * i + g) + r] = d[r] * sc;
					sb[16 * (8 * i + g) + r] = dm[r] * mn;
				}
		}
		else
		{
			/*
			 * Q6_K, half h: triples (qh, ql, ql + 32) of chunks; weights 128h
			 * + 32k + l from ql's nibble and qh's 2-bit field k
			 */
			for (int h = 0; h < 2; h++)
			{
				const uint8_t *t = o + 144 + 3 * 64 * 4 * (size_t) h;
				__m512i		qh[4],
							qa[4],
							qb[4];

				rows_of_chunks(t, 192, qh);
				rows_of_chunks(t + 64, 192, qa);
				rows_of_chunks(t + 128, 192, qb);
				for (int m = 0; m < 4; m++)
				{
					size_t		off = 256 * (size_t) i + 128 * h;

					put_rows(_mm512_or_si512(_mm512_and_si512(qa[m], m4),
											 _mm512_slli_epi16(_mm512_and_si512(qh[m], m3), 4)), m, ub, us, off);
					put_rows(_mm512_or_si512(_mm512_and_si512(qb[m], m4),
											 _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[m], 2), m3), 4)),
							 m, ub, us, off + 32);
					put_rows(_mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(qa[m], 4), m4),
											 _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[m], 4), m3), 4)),
							 m, ub, us, off + 64);
					put_rows(_mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(qb[m], 4), m4),
											 _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh[m], 6), m3), 4)),
							 m, ub, us, off + 96);
				}
			}
			for (int r = 0; r < 8; r++)
				for (int sbk = 0; sbk < 16; sbk++)
				{
					int			u = 16 * (sbk / 2) + 2 * r + sbk % 2,
								sc = (int8_t) o[16 + u];

					sa[16 * (16 * i + sbk) + r] = d[r] * sc;
					sb[16 * (16 * i + sbk) + r] = d[r] * (32 * sc);
				}
		}
	}
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

	/* each sub-block's a and b of the 16 rows, side by side: [ns][16] each */
	float	   *sa = (float *) (ub + AMX_ROWS * us),
			   *sb = sa + (size_t) ns * 16;
	int32_t		cbuf[2][AMX_ROWS][16] __attribute__((aligned(64)));
	float		res[AMX_ROWS][16] __attribute__((aligned(64)));

	/* x8 groups start at rows that are multiples of 8, and nr is one too */
	if (x8 && r0 % R1_REPACK_ROWS == 0 && nr % R1_REPACK_ROWS == 0 &&
		(dt == R1_Q8_0 || dt == R1_Q4_K || dt == R1_Q6_K))
		for (int r = 0; r < nr; r += R1_REPACK_ROWS)
			unpack_x8(dt, w + (size_t) (r0 + r) * row_bytes, n, ub + (size_t) r * us, us, sa + r, sb + r);
	else
	{
		r1_qgemm_unpack(dt, w, x8, row_bytes, r0, nr, n, unpack);
		for (int r = 0; r < nr; r++)
			row_scales(dt, ub + (size_t) r * us, n, sa + r, sb + r);
	}
	/* rows past nr: scales of 0, so their (unread) codes add nothing */
	for (int s = 0; s < ns; s++)
		for (int r = nr; r < AMX_ROWS; r++)
			sa[16 * s + r] = sb[16 * s + r] = 0.0f;
	tiles_for(S);
	for (int g = 0; g < x->groups; g++)
	{
		const uint8_t *qa = x->q + (size_t) g * 16 * n;
		__m512		acc[AMX_ROWS];

#pragma GCC unroll 16
		for (int r = 0; r < AMX_ROWS; r++)
			acc[r] = _mm512_setzero_ps();

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
		AMX_ISSUE(0, 4, 6, 0);
		if (ns > 1)
			AMX_ISSUE(1, 5, 7, 1);
		for (int s = 0; s <= ns; s++)
		{
			/*
			 * s + 2's multiply goes out (four C tiles in turn: tiles are not
			 * renamed), s's dots are stored, and s - 1's (stored a step ago:
			 * a tile store does not forward to loads) are scaled
			 */
			if (s < ns)
			{
				int			ahead = s + 2 < ns;

				switch (s % 4)
				{
					case 0:
						if (ahead)
							AMX_ISSUE(2, 4, 6, s + 2);
						_tile_stored(0, cbuf[s % 2], 64);
						break;
					case 1:
						if (ahead)
							AMX_ISSUE(3, 5, 7, s + 2);
						_tile_stored(1, cbuf[s % 2], 64);
						break;
					case 2:
						if (ahead)
							AMX_ISSUE(0, 4, 6, s + 2);
						_tile_stored(2, cbuf[s % 2], 64);
						break;
					default:
						if (ahead)
							AMX_ISSUE(1, 5, 7, s + 2);
						_tile_stored(3, cbuf[s % 2], 64);
						break;
				}
			}
			if (s == 0)
				continue;
			{
				const int	p = s - 1;
				int32_t		(*cb)[16] = cbuf[p % 2];
				const float *a = sa + 16 * (size_t) p;

				if (!k)
				{
					/* a 32-weight block: its own super-block, scaled at once */
					__m512		dx = _mm512_loadu_ps(x->dxv + ((size_t) g * nblk + p) * 16);

#pragma GCC unroll 16
					for (int r = 0; r < AMX_ROWS; r++)
						acc[r] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(a[r]), dx),
												 _mm512_cvtepi32_ps(_mm512_load_si512(cb[r])), acc[r]);
				}
				else
				{
					/* inner: acc's registers, added to res per super-block */
					const float *b = sb + 16 * (size_t) p;
					__m512		bs = _mm512_loadu_ps(x->bsv + ((size_t) g * ns + p) * 16);

					if (p % spb == 0)
#pragma GCC unroll 16
						for (int r = 0; r < AMX_ROWS; r++)
							acc[r] = _mm512_setzero_ps();
#pragma GCC unroll 16
					for (int r = 0; r < AMX_ROWS; r++)
						acc[r] = _mm512_fnmadd_ps(_mm512_set1_ps(b[r]), bs,
												  _mm512_fmadd_ps(_mm512_set1_ps(a[r]),
																  _mm512_cvtepi32_ps(_mm512_load_si512(cb[r])),
																  acc[r]));
					if (p % spb == spb - 1)
					{
						__m512		dx = _mm512_loadu_ps(x->dxv + ((size_t) g * nblk + p / spb) * 16);

#pragma GCC unroll 16
						for (int r = 0; r < AMX_ROWS; r++)
							_mm512_store_ps(res[r], p < spb ? _mm512_mul_ps(acc[r], dx)
											: _mm512_fmadd_ps(acc[r], dx, _mm512_load_ps(res[r])));
					}
				}
			}
		}
#undef AMX_ISSUE
		if (!k)
#pragma GCC unroll 16
			for (int r = 0; r < AMX_ROWS; r++)
				_mm512_store_ps(res[r], acc[r]);
		for (int tok = 0; tok < 16 && 16 * g + tok < x->T; tok++)
			for (int r = 0; r < nr; r++)
				out[(size_t) (16 * g + tok) * ldo + r0 + r] = res[r][tok];
	}
	_tile_release();
}
