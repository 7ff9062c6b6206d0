/*
 * qgemm_avx512.c - the prompt GEMM of qgemm.h on AVX-512 with VNNI.
 *
 * A row's blocks are unpacked once per call (unpack_row; unpack_row_x8 from
 * the x8 copies of repack.h) into
 * codes in weight order and ready-made scale vectors; then two rows meet a
 * tile of eight tokens, four zmm of token pairs.  Per 32-weight group and
 * pair of tokens the integer work is
 *   K-quants:          vpmaddubsw (unsigned codes x signed activations) and
 *                      vpdpwssd (x the 16-weight scales, summed into L_k);
 *   32-weight blocks:  one vpdpbusd (activations + 128 x signed codes) on
 *                      top of -128 * the codes' sums, which gives L_k.
 * The float steps are qdot.h's, lane for lane and in its order (the two
 * halves of a zmm are two tokens), so the result is the reference's bit for
 * bit.  The K-quants' mins term is computed for the eight tokens at once
 * (vpdpwssd over the sums of 16, token by token).
 */
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")
#include <immintrin.h>
#include <math.h>

#include "qgemm.h"
#include "repack.h"

#include <string.h>
#include "qdot_simd_helpers.h"

/* ---------- a row unpacked ---------- */

/*
 * K-quants, n inputs: codes[n] (uint8, weight order), sv[n/32][16] (int16:
 * the scale of each 16 weights, 8 lanes each), mp[n/256][8] (int32: two
 * int16 mins-term weights, for the sums of 16 2j and 2j + 1), dd[n/256][2]
 * (d, dm).  32-weight blocks: codes[n] (int8), corr[n/32][8] (int32: -128 x
 * the sum of each 4 codes), dw[n/32].
 */
typedef struct urow
{
	const uint8_t *codes;
	const int16_t *sv;
	const int32_t *mp;
	const float *dd;
	const int32_t *corr;
	const float *dw;
} urow;

static size_t
ustride(int n)
{
	return (R1_QGEMM_UNPACK_BYTES(n) + 63) & ~(size_t) 63;
}

static void
urow_at(int k, int n, uint8_t *buf, urow *u)
{
	u->codes = buf;
	if (k)
	{
		u->sv = (const int16_t *) (buf + n);
		u->mp = (const int32_t *) (buf + 2 * (size_t) n);
		u->dd = (const float *) (buf + 2 * (size_t) n + n / 8);
	}
	else
	{
		u->corr = (const int32_t *) (buf + n);
		u->dw = (const float *) (buf + 2 * (size_t) n);
	}
}

static inline int32_t
pair16(int lo, int hi)
{
	return (int32_t) ((uint32_t) (uint16_t) (int16_t) lo | ((uint32_t) (uint16_t) (int16_t) hi << 16));
}

/*
 * Superblock i of a K-quant row into buf's parts (see urow).  b is the block
 * as the file stores it; sm_in, where not NULL, holds Q4_K's scales and mins
 * already unpacked (its packed bytes in b are then not read).
 */
static void
unpack_k_block(int slot, const uint8_t *b, const uint8_t *sm_in, int i, int n, uint8_t *buf)
{
	uint8_t    *c = buf + 256 * (size_t) i;
	int16_t    *s = (int16_t *) (buf + n) + 128 * (size_t) i;
	int32_t    *mp = (int32_t *) (buf + 2 * (size_t) n);
	float	   *dd = (float *) (buf + 2 * (size_t) n + n / 8);

	if (slot != 5)
	{
		uint8_t		sm[16];
		const uint8_t *ql = b + (slot == 3 ? 16 : 48);
		__m256i		qh = slot == 4 ? _mm256_loadu_si256((const __m256i *) (b + 16)) : _mm256_setzero_si256();

		dd[2 * i] = qd_half(b);
		dd[2 * i + 1] = qd_half(b + 2);
		if (sm_in)
			memcpy(sm, sm_in, sizeof(sm));
		else
			qd_scales_k4(b + 4, sm);
		for (int j = 0; j < 4; j++)
		{
			__m256i		lo,
						hi;

			qd_codes_k45(slot == 4, ql, qh, j, &lo, &hi);
			_mm256_storeu_si256((__m256i *) (c + 64 * j), lo);
			_mm256_storeu_si256((__m256i *) (c + 64 * j + 32), hi);
		}
		for (int g = 0; g < 8; g++)
		{
			_mm256_storeu_si256((__m256i *) (s + 16 * g), _mm256_set1_epi16(sm[g]));
			mp[8 * i + g] = pair16(sm[8 + g], sm[8 + g]);
		}
	}
	else
	{
		const int8_t *sc = (const int8_t *) (b + 192);

		dd[2 * i] = dd[2 * i + 1] = qd_half(b + 208);
		for (int h = 0; h < 2; h++)
		{
			__m256i		u[4];

			qd_codes_q6(b, h, u);
			for (int g = 0; g < 4; g++)
				_mm256_storeu_si256((__m256i *) (c + 128 * h + 32 * g), u[g]);
		}
		for (int g = 0; g < 8; g++)
			_mm256_storeu_si256((__m256i *) (s + 16 * g),
								_mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1]), _mm_set1_epi16(sc[2 * g])));
		for (int j = 0; j < 8; j++)
			mp[8 * i + j] = pair16(32 * sc[2 * j], 32 * sc[2 * j + 1]);
	}
}

/* block i of a 32-weight-block row (b, as the file stores it) into buf's parts */
static void
unpack_32_block(int slot, const uint8_t *b, int i, int n, uint8_t *buf)
{
	int8_t	   *codes = (int8_t *) buf;
	int32_t    *corr = (int32_t *) (buf + n);
	float	   *dw = (float *) (buf + 2 * (size_t) n);
	__m256i		c = qd_codes32(slot, b);
	__m256i		s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char) 0x80), c);

	_mm256_storeu_si256((__m256i *) (codes + 32 * (size_t) i), c);
	_mm256_storeu_si256((__m256i *) (corr + 8 * (size_t) i), _mm256_sub_epi32(_mm256_setzero_si256(), s));
	dw[i] = qd_half(b);
}

/* a row (w, as the file stores it) unpacked into buf */
static void
unpack_row(int slot, const uint8_t *w, int n, uint8_t *buf)
{
	if (slot >= 3)
	{
		const size_t bb = slot == 3 ? 144 : slot == 4 ? 176 : 210;

		for (int i = 0; i < n / 256; i++)
			unpack_k_block(slot, w + (size_t) i * bb, NULL, i, n, buf);
	}
	else
	{
		const size_t bb = slot == 0 ? 34 : slot == 1 ? 18 : 22;

		for (int i = 0; i < n / 32; i++)
			unpack_32_block(slot, w + (size_t) i * bb, i, n, buf);
	}
}

/* bytes of an x8 row put back at a time, before they are unpacked */
#define X8_CHUNK_BYTES 4096

/*
 * Row r of an x8 group (repack.h) unpacked into buf, X8_CHUNK_BYTES of blocks
 * at a time: put back into a small buffer (Q4_K's scales come out unpacked), then
 * unpacked once those stores are done (a wide load right after the narrow
 * stores that wrote it would wait for them).
 */
static void
unpack_row_x8(r1_dtype dt, int slot, const uint8_t *grp, int r, int n, uint8_t *buf)
{
	uint8_t		blks[X8_CHUNK_BYTES] __attribute__((aligned(64)));
	uint8_t		sm[X8_CHUNK_BYTES / 144][16];
	const int	k = slot >= 3,
				nb = n / (k ? 256 : 32);
	const size_t bb = dt == R1_Q8_0 ? 34 : dt == R1_Q4_K ? 144 : 210;
	const int	chunk = (int) (X8_CHUNK_BYTES / bb);

	for (int i0 = 0; i0 < nb; i0 += chunk)
	{
		int			m = nb - i0 < chunk ? nb - i0 : chunk;

		r1_repack_blocks_back(dt, grp, n, i0, m, r, blks, sm);
		for (int j = 0; j < m; j++)
			if (k)
				unpack_k_block(slot, blks + (size_t) j * bb, dt == R1_Q4_K ? sm[j] : NULL, i0 + j, n, buf);
			else
				unpack_32_block(slot, blks + (size_t) j * bb, i0 + j, n, buf);
	}
}

/* ---------- two rows (or one) against a tile of eight tokens ---------- */

#define QG_INLINE static inline __attribute__((always_inline))

QG_INLINE __m512i
bcast256(const void *p)
{
	return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) p));
}

/* res[r][tt]: row r, token tt of the tile */
QG_INLINE void
tile_k(const int NR, const urow *u, int n, const r1_qxp *x, int tile, float res[2][8])
{
	const int	nsb = n / 256,
				ng = n / 32;
	const uint8_t *xq = x->q + (size_t) tile * 4 * ng * 64;
	__m512		acc[2][4];
	__m256		accm[2];

#pragma GCC unroll 8
	for (int r = 0; r < NR; r++)
	{
		accm[r] = _mm256_setzero_ps();
#pragma GCC unroll 8
		for (int p = 0; p < 4; p++)
			acc[r][p] = _mm512_setzero_ps();
	}
	for (int i = 0; i < nsb; i++)
	{
		__m512i		s[2][4];

#pragma GCC unroll 8
		for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
			for (int p = 0; p < 4; p++)
				s[r][p] = _mm512_setzero_si512();
#pragma GCC unroll 8
		for (int g = 0; g < 8; g++)
		{
			__m512i		uv[2],
						sv[2];

#pragma GCC unroll 8
			for (int r = 0; r < NR; r++)
			{
				uv[r] = bcast256(u[r].codes + 256 * (size_t) i + 32 * g);
				sv[r] = bcast256(u[r].sv + 16 * (8 * (size_t) i + g));
			}
#pragma GCC unroll 8
			for (int p = 0; p < 4; p++)
			{
				__m512i		a = _mm512_loadu_si512(xq + ((size_t) p * ng + 8 * i + g) * 64);

#pragma GCC unroll 8
				for (int r = 0; r < NR; r++)
					s[r][p] = _mm512_dpwssd_epi32(s[r][p], _mm512_maddubs_epi16(uv[r], a), sv[r]);
			}
		}
#pragma GCC unroll 8
		for (int p = 0; p < 4; p++)
		{
			__m512		dxv = _mm512_loadu_ps(x->dxv + ((size_t) (4 * tile + p) * nsb + i) * 16);

#pragma GCC unroll 8
			for (int r = 0; r < NR; r++)
				acc[r][p] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(u[r].dd[2 * i]), dxv),
											_mm512_cvtepi32_ps(s[r][p]), acc[r][p]);
		}
		{
			const int16_t *bs = x->bs + ((size_t) tile * nsb + i) * 128;
			__m256		dx8 = _mm256_loadu_ps(x->dx8 + ((size_t) tile * nsb + i) * 8);

#pragma GCC unroll 8
			for (int r = 0; r < NR; r++)
			{
				__m256i		M = _mm256_setzero_si256();

#pragma GCC unroll 8
				for (int j = 0; j < 8; j++)
					M = _mm256_dpwssd_epi32(M, _mm256_loadu_si256((const __m256i *) (bs + 16 * j)),
											_mm256_set1_epi32(u[r].mp[8 * (size_t) i + j]));
				accm[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(u[r].dd[2 * i + 1]), dx8),
										  _mm256_cvtepi32_ps(M), accm[r]);
			}
		}
	}
#pragma GCC unroll 8
	for (int r = 0; r < NR; r++)
	{
		float		m[8];

		_mm256_storeu_ps(m, accm[r]);
#pragma GCC unroll 8
		for (int p = 0; p < 4; p++)
		{
			res[r][2 * p] = qd_hsum8(_mm512_castps512_ps256(acc[r][p])) - m[2 * p];
			res[r][2 * p + 1] = qd_hsum8(_mm512_extractf32x8_ps(acc[r][p], 1)) - m[2 * p + 1];
		}
	}
}

/* one 32-weight block i into acc (qdot.h's acc_(i%2)) */
QG_INLINE void
step_32(const int NR, const urow *u, int nb, const uint8_t *xq, const float *dxv, int i, __m512 acc[2][4])
{
	__m512i		cv[2],
				kv[2];
	__m512		wv[2];

#pragma GCC unroll 8
	for (int r = 0; r < NR; r++)
	{
		cv[r] = bcast256(u[r].codes + 32 * (size_t) i);
		kv[r] = bcast256(u[r].corr + 8 * (size_t) i);
		wv[r] = _mm512_set1_ps(u[r].dw[i]);
	}
#pragma GCC unroll 8
	for (int p = 0; p < 4; p++)
	{
		__m512i		a = _mm512_loadu_si512(xq + ((size_t) p * nb + i) * 64);
		__m512		dx = _mm512_loadu_ps(dxv + ((size_t) p * nb + i) * 16);

#pragma GCC unroll 8
		for (int r = 0; r < NR; r++)
			acc[r][p] = _mm512_fmadd_ps(_mm512_mul_ps(wv[r], dx),
										_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(kv[r], a, cv[r])), acc[r][p]);
	}
}

QG_INLINE void
tile_32(const int NR, const urow *u, int n, const r1_qxp *x, int tile, float res[2][8])
{
	const int	nb = n / 32;
	const uint8_t *xq = x->q + (size_t) tile * 4 * nb * 64;
	const float *dxv = x->dxv + (size_t) tile * 4 * nb * 16;
	__m512		acc0[2][4],
				acc1[2][4];
	int			i = 0;

#pragma GCC unroll 8
	for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
		for (int p = 0; p < 4; p++)
			acc0[r][p] = acc1[r][p] = _mm512_setzero_ps();
	for (; i + 2 <= nb; i += 2)
	{
		step_32(NR, u, nb, xq, dxv, i, acc0);
		step_32(NR, u, nb, xq, dxv, i + 1, acc1);
	}
	if (i < nb)
		step_32(NR, u, nb, xq, dxv, i, acc0);
#pragma GCC unroll 8
	for (int r = 0; r < NR; r++)
#pragma GCC unroll 8
		for (int p = 0; p < 4; p++)
		{
			__m512		v = _mm512_add_ps(acc0[r][p], acc1[r][p]);

			res[r][2 * p] = qd_hsum8(_mm512_castps512_ps256(v));
			res[r][2 * p + 1] = qd_hsum8(_mm512_extractf32x8_ps(v, 1));
		}
}

/* one function per kernel and row count: NR a constant inside */
#define QG_TILE(name, kern, nr) \
static void name(const urow *u, int n, const r1_qxp *x, int tile, float res[2][8]) \
{ kern(nr, u, n, x, tile, res); }
QG_TILE(tile_k2, tile_k, 2)
QG_TILE(tile_k1, tile_k, 1)
QG_TILE(tile_322, tile_32, 2)
QG_TILE(tile_321, tile_32, 1)

/* rows [r0, r0 + nr) of the output from nr unpacked rows at ub (us apart) */
static void
rows_against_tiles(int k, int n, const uint8_t *ub, size_t us, int r0, int nr, const r1_qxp *x,
				   float *out, size_t ldo)
{
	for (int tile = 0; tile < x->tiles; tile++)
		for (int r = 0; r < nr; r += 2)
		{
			int			two = r + 1 < nr;
			urow		u[2];
			float		res[2][8];

			urow_at(k, n, (uint8_t *) ub + (size_t) r * us, &u[0]);
			if (two)
				urow_at(k, n, (uint8_t *) ub + (size_t) (r + 1) * us, &u[1]);
			if (k)
				(two ? tile_k2 : tile_k1) (u, n, x, tile, res);
			else
				(two ? tile_322 : tile_321) (u, n, x, tile, res);
			for (int h = 0; h <= two; h++)
				for (int tt = 0; tt < R1_QGEMM_TILE; tt++)
				{
					int			t = tile * R1_QGEMM_TILE + tt;

					if (t < x->T)
						out[(size_t) t * ldo + r0 + r + h] = res[h][tt];
				}
		}
}

/* each row unpacked, from the file's layout or (x8) from its group of an x8 copy */
void
r1_qgemm_unpack(r1_dtype dt, const uint8_t *w, int x8, size_t row_bytes, int r0, int nr, int n, void *unpack)
{
	const int	slot = r1_qdot_slot(dt);
	const size_t us = ustride(n);

	for (int r = 0; r < nr; r++)
	{
		int			row = r0 + r;
		uint8_t    *ub = (uint8_t *) unpack + (size_t) r * us;

		if (x8)
			unpack_row_x8(dt, slot, w + (size_t) (row / R1_REPACK_ROWS) * R1_REPACK_ROWS * row_bytes,
						  row % R1_REPACK_ROWS, n, ub);
		else
			unpack_row(slot, w + (size_t) row * row_bytes, n, ub);
	}
}

/* Rows [r0, r0 + nr) of w against every token: the rows unpacked, then the tiles. */
static void
qgemm_rows(r1_dtype dt, const uint8_t *w, int x8, size_t row_bytes, int r0, int nr, const r1_qxp *x,
		   float *out, size_t ldo, void *unpack)
{
	r1_qgemm_unpack(dt, w, x8, row_bytes, r0, nr, x->n, unpack);
	rows_against_tiles(r1_qdot_slot(dt) >= 3, x->n, unpack, ustride(x->n), r0, nr, x, out, ldo);
}

void
r1_qgemm_rows(r1_dtype dt, const uint8_t *w, size_t row_bytes, int r0, int nr,
			  const r1_qxp *x, float *out, size_t ldo, void *unpack)
{
	qgemm_rows(dt, w, 0, row_bytes, r0, nr, x, out, ldo, unpack);
}

void
r1_qgemm_rows_x8(r1_dtype dt, const uint8_t *x8, size_t row_bytes, int r0, int nr,
				 const r1_qxp *x, float *out, size_t ldo, void *unpack)
{
	qgemm_rows(dt, x8, 1, row_bytes, r0, nr, x, out, ldo, unpack);
}
