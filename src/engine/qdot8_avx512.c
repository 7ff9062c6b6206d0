/*
 * qdot8_avx512.c - the x8 kernels of repack.h for AVX-512 VNNI: eight rows
 * of a K-quant weight against one to four tokens.
 *
 * A 64-byte load holds 8 weights of each of the eight rows; the token's 8
 * matching activations are broadcast to all eight, vpmaddubsw pairs them and
 * vpdpwssd weights the pairs by each row's sub-block scale.  Integer lane
 * (r, e) of accumulator c sums, over the super-block, the products of
 * weights 8c + 4e .. 8c + 4e + 3 of each 32-group: qdot.h's L_k, k = 2c + e.
 * The float steps are qdot.h's, row by row in the lanes (acc[k] by fma, the
 * mins term by fma, hsum8 in its order), so every row's result is bitwise
 * what the one-row kernels give.
 */
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,f16c")
#include <immintrin.h>
#include <string.h>

#include "repack.h"

#define Q8_INLINE static inline __attribute__((always_inline))

/*
 * How far ahead of the block being read the Q8_0 kernel asks for the
 * weights: the hardware prefetcher alone left an Intel core at ~80% of the
 * read bandwidth on this stream (BENCHMARKS.md, issue 15's fifth pass); the
 * K-quant kernels, with more work a byte, gained nothing from it.
 */
#define Q8_AHEAD 2048

/* ask for the bytes [p + Q8_AHEAD, p + Q8_AHEAD + bytes), a line at a time (the hint does not fault past the end) */
Q8_INLINE void
q8_prefetch(const uint8_t *p, const int bytes)
{
#pragma GCC unroll 32
	for (int o = 0; o < bytes; o += 64)
		_mm_prefetch((const char *) (p + Q8_AHEAD + o), _MM_HINT_T0);
}

Q8_INLINE __m512i
q8_bcast64(const int8_t *p)
{
	int64_t		v;

	memcpy(&v, p, 8);
	return _mm512_set1_epi64(v);
}

/*
 * The scale vectors of 32 scale bytes v (u = 16p + 2r + e, p = 2k + pp):
 * sv[2pp + e] holds sub-block (2p + e)'s scale of row r in int16 lanes
 * 4r .. 4r + 3; signed or unsigned bytes.
 */
Q8_INLINE void
q8_scales4(__m512i v16, __m512i sv[4])
{
	const __m512i lane = _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16,
										  15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);

	/* lane l -> 2 (l / 4) + 16 pp + e */
	const __m512i base = _mm512_and_si512(_mm512_srli_epi16(lane, 1), _mm512_set1_epi16(~1));

#pragma GCC unroll 4
	for (int pe = 0; pe < 4; pe++)
		sv[pe] = _mm512_permutexvar_epi16(_mm512_add_epi16(base, _mm512_set1_epi16((short) (16 * (pe / 2) + pe % 2))), v16);
}

/*
 * acc[c] lane (r, e) += d_r * (float) s[c] lane (r, e): qdot.h's
 * acc[k] = fmaf(d * d_x, (float) L_k, acc[k]) for the eight rows, ddx their
 * d * d_x
 */
Q8_INLINE void
q8_acc(__m512 acc[4], __m256 ddx, const __m512i s[4])
{
	__m512		dd = _mm512_permutexvar_ps(_mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0),
										   _mm512_castps256_ps512(ddx));

#pragma GCC unroll 4
	for (int c = 0; c < 4; c++)
		acc[c] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(s[c]), acc[c]);
}

/*
 * One Q4_K x8 block against nt tokens (qx: token t's codes at q + t*n, one
 * d per 256, sums of 16 at bsum + t*n/16, all for this super-block i).
 */
Q8_INLINE void
q4k8_block(const uint8_t *b, const r1_qx *x, int i, int nt, __m512 acc[][4], __m256 accm[])
{
	const __m512i m4 = _mm512_set1_epi8(0x0F);
	const int	n = x->n;
	__m512i		raw = _mm512_loadu_si512(b + 32),
				sc8 = _mm512_and_si512(raw, _mm512_set1_epi8(0x3F)),
				mlo,
				m8,
				sca,
				scb,
				mna,
				mnb,
				scv[8];
	__m256i		ml = _mm256_loadu_si256((const __m256i *) (b + 96));
	__m256		dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) b)),
				dmv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (b + 16)));

	mlo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(ml, _mm256_set1_epi8(0x0F))),
							 _mm256_and_si256(_mm256_srli_epi16(ml, 4), _mm256_set1_epi8(0x0F)), 1);
	m8 = _mm512_or_si512(mlo, _mm512_and_si512(_mm512_srli_epi16(raw, 2), _mm512_set1_epi8(0x30)));
	sca = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(sc8));	/* u 0..31: p 0, 1 */
	scb = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(sc8, 1));	/* u 32..63: p 2, 3 */
	mna = _mm512_cvtepu8_epi16(_mm512_castsi512_si256(m8));
	mnb = _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(m8, 1));

	/* sub-block g = 2p + e's scale of row r in int16 lanes 4r .. 4r + 3 */
	q8_scales4(sca, scv);
	q8_scales4(scb, scv + 4);

#pragma GCC unroll 4
	for (int t = 0; t < nt; t++)
	{
		const int8_t *q = x->q + (size_t) t * n + 256 * (size_t) i;
		__m512i		s[4];
		float		dx = x->d[(size_t) t * (n / 256) + i];

		/* the mins term: M_r = sum_g m[r][g] (bsum[2g] + bsum[2g + 1]) */
		{
			__m256i		bs2 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) (x->bsum + (size_t) t * (n / 16) + 16 * (size_t) i)),
												_mm256_set1_epi16(1));
			__m512i		pk = _mm512_castsi256_si512(_mm256_packs_epi32(bs2, bs2));	/* dword 0, 1, 4, 5: p
																					 * 0..3 */
			__m512i		ba = _mm512_permutexvar_epi32(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), pk),
						bb = _mm512_permutexvar_epi32(_mm512_set_epi32(5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4), pk),
						mv = _mm512_add_epi32(_mm512_madd_epi16(mna, ba), _mm512_madd_epi16(mnb, bb));
			__m256i		M = _mm256_add_epi32(_mm512_castsi512_si256(mv), _mm512_extracti64x4_epi64(mv, 1));

			accm[t] = _mm256_fmadd_ps(_mm256_mul_ps(dmv, _mm256_set1_ps(dx)), _mm256_cvtepi32_ps(M), accm[t]);
		}
#pragma GCC unroll 4
		for (int c = 0; c < 4; c++)
			s[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
		for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
			{
				__m512i		z = _mm512_loadu_si512(b + 128 + 64 * (4 * j + c)),
							lo = _mm512_and_si512(z, m4),
							hi = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);

				s[c] = _mm512_dpwssd_epi32(s[c], _mm512_maddubs_epi16(lo, q8_bcast64(q + 64 * j + 8 * c)), scv[2 * j]);
				s[c] = _mm512_dpwssd_epi32(s[c], _mm512_maddubs_epi16(hi, q8_bcast64(q + 64 * j + 32 + 8 * c)),
										   scv[2 * j + 1]);
			}
		q8_acc(acc[t], _mm256_mul_ps(dv, _mm256_set1_ps(dx)), s);
	}
}

/* One Q6_K x8 block against nt tokens; see q4k8_block. */
Q8_INLINE void
q6k8_block(const uint8_t *b, const r1_qx *x, int i, int nt, __m512 acc[][4], __m256 accm[])
{
	const __m512i m4 = _mm512_set1_epi8(0x0F),
				m3 = _mm512_set1_epi8(0x03);
	const int	n = x->n;
	__m512i		sc16[4],
				scv[16];
	__m256		dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) b));

#pragma GCC unroll 4
	for (int k = 0; k < 4; k++)
	{
		sc16[k] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *) (b + 16 + 32 * k)));
		q8_scales4(sc16[k], scv + 4 * k);
	}

#pragma GCC unroll 4
	for (int t = 0; t < nt; t++)
	{
		const int8_t *q = x->q + (size_t) t * n + 256 * (size_t) i;
		__m512i		s[4];
		float		dx = x->d[(size_t) t * (n / 256) + i];
		__m256		ddx = _mm256_mul_ps(dv, _mm256_set1_ps(dx));

		/*
		 * the mins term: M_r = 32 sum_s sc[r][s] bsum[s] (the codes' offset
		 * of 32)
		 */
		{
			__m512i		bs = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) (x->bsum + (size_t) t * (n / 16) + 16 * (size_t) i)));
			__m512i		mv = _mm512_setzero_si512();
			__m256i		M;

#pragma GCC unroll 4
			for (int k = 0; k < 4; k++)
				mv = _mm512_add_epi32(mv, _mm512_madd_epi16(sc16[k],
															_mm512_permutexvar_epi32(_mm512_set_epi32(2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
																									  2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1,
																									  2 * k, 2 * k, 2 * k, 2 * k,
																									  2 * k, 2 * k, 2 * k, 2 * k), bs)));
			M = _mm256_slli_epi32(_mm256_add_epi32(_mm512_castsi512_si256(mv), _mm512_extracti64x4_epi64(mv, 1)), 5);
			accm[t] = _mm256_fmadd_ps(ddx, _mm256_cvtepi32_ps(M), accm[t]);
		}
#pragma GCC unroll 4
		for (int c = 0; c < 4; c++)
			s[c] = _mm512_setzero_si512();
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++)
#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
			{
				__m512i		qh = _mm512_loadu_si512(b + 144 + 192 * (4 * h + c));

#pragma GCC unroll 2
				for (int a = 0; a < 2; a++)
				{
					__m512i		z = _mm512_loadu_si512(b + 144 + 192 * (4 * h + c) + 64 * (1 + a));
					__m512i		lo = _mm512_or_si512(_mm512_and_si512(z, m4),
													 _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 2 * a), m3), 4)),
								hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(z, 4), m4),
													 _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(qh, 4 + 2 * a), m3), 4));
					int			glo = 4 * h + a,
								ghi = 4 * h + 2 + a;

					s[c] = _mm512_dpwssd_epi32(s[c], _mm512_maddubs_epi16(lo, q8_bcast64(q + 32 * glo + 8 * c)),
											   scv[2 * glo + c / 2]);
					s[c] = _mm512_dpwssd_epi32(s[c], _mm512_maddubs_epi16(hi, q8_bcast64(q + 32 * ghi + 8 * c)),
											   scv[2 * ghi + c / 2]);
				}
			}
		q8_acc(acc[t], ddx, s);
	}
}

/* lanes (r, e) of acc[0..3] to the eight rows' results: qdot.h's hsum8, then - accm */
Q8_INLINE void
q8_finish(__m512 acc[4], __m256 accm, float *out)
{
	__m512		z = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
	__m512		pair = _mm512_add_ps(z, _mm512_permute_ps(z, 0xB1));
	__m256		r = _mm512_castps512_ps256(_mm512_permutexvar_ps(_mm512_set_epi32(14, 12, 10, 8, 6, 4, 2, 0,
																				  14, 12, 10, 8, 6, 4, 2, 0), pair));

	_mm256_storeu_ps(out, _mm256_sub_ps(r, accm));
}

/*
 * Q8_0 x8 rows against nt tokens: qdot.h's 32-weight arithmetic, block i
 * into accumulator pair i % 2.  The codes are stored + 128, so vpdpbusd of
 * them with the activations gives L + 128 * (the activations' sum), and a
 * second vpdpbusd of 128s takes that sum away (exact int32).
 */
Q8_INLINE void
q8_0_rows(const uint8_t *grp, const r1_qx *x, int nt, float *out, size_t stride)
{
	const __m512i k80 = _mm512_set1_epi8((char) 0x80);
	const int	n = x->n,
				nb = n / 32;
	__m512		acc[4][2][4];

#pragma GCC unroll 4
	for (int t = 0; t < nt; t++)
#pragma GCC unroll 2
		for (int h = 0; h < 2; h++)
#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
				acc[t][h][c] = _mm512_setzero_ps();
	for (int i = 0; i < nb; i++)
	{
		const uint8_t *b = grp + (size_t) nb * 16 + (size_t) i * 256;
		__m256		dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (grp + 16 * (size_t) i)));
		__m512i		z[4];

		q8_prefetch(b, 256);
#pragma GCC unroll 4
		for (int c = 0; c < 4; c++)
			z[c] = _mm512_loadu_si512(b + 64 * c);
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const int8_t *q = x->q + (size_t) t * n + 32 * (size_t) i;
			__m512i		L[4];

#pragma GCC unroll 4
			for (int c = 0; c < 4; c++)
			{
				__m512i		a = q8_bcast64(q + 8 * c);

				L[c] = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), z[c], a),
										_mm512_dpbusd_epi32(_mm512_setzero_si512(), k80, a));
			}
			q8_acc(acc[t][i % 2], _mm256_mul_ps(dv, _mm256_set1_ps(x->d[(size_t) t * nb + i])), L);
		}
	}
#pragma GCC unroll 4
	for (int t = 0; t < nt; t++)
	{
		__m512		v[4];

#pragma GCC unroll 4
		for (int c = 0; c < 4; c++)
			v[c] = _mm512_add_ps(acc[t][0][c], acc[t][1][c]);
		q8_finish(v, _mm256_setzero_ps(), out + (size_t) t * stride);
	}
}

Q8_INLINE void
q8_rows(int q6, const uint8_t *grp, const r1_qx *x, int nt, float *out, size_t stride)
{
	__m512		acc[4][4];
	__m256		accm[4];
	int			nsb = x->n / 256;

#pragma GCC unroll 4
	for (int t = 0; t < nt; t++)
	{
		accm[t] = _mm256_setzero_ps();
#pragma GCC unroll 4
		for (int c = 0; c < 4; c++)
			acc[t][c] = _mm512_setzero_ps();
	}
	for (int i = 0; i < nsb; i++)
		if (q6)
			q6k8_block(grp + (size_t) i * 1680, x, i, nt, acc, accm);
		else
			q4k8_block(grp + (size_t) i * 1152, x, i, nt, acc, accm);
#pragma GCC unroll 4
	for (int t = 0; t < nt; t++)
		q8_finish(acc[t], accm[t], out + (size_t) t * stride);
}

Q8_INLINE void
q4k8_rows(const uint8_t *grp, const r1_qx *x, int nt, float *out, size_t stride)
{
	q8_rows(0, grp, x, nt, out, stride);
}

Q8_INLINE void
q6k8_rows(const uint8_t *grp, const r1_qx *x, int nt, float *out, size_t stride)
{
	q8_rows(1, grp, x, nt, out, stride);
}

/* one function per type, the token count a constant in each case */
#define Q8_INST(name, rows) \
static void name(const uint8_t *grp, const r1_qx *x, int nt, float *out, size_t stride) \
{ \
	switch (nt) \
	{ \
		case 1: rows(grp, x, 1, out, stride); break; \
		case 2: rows(grp, x, 2, out, stride); break; \
		case 3: rows(grp, x, 3, out, stride); break; \
		default: rows(grp, x, 4, out, stride); break; \
	} \
}
Q8_INST(q4k8_fn, q4k8_rows)
Q8_INST(q6k8_fn, q6k8_rows)
Q8_INST(q8_0_fn, q8_0_rows)

const r1_qdot8_fn r1_qdot8_avx512[4] = {q4k8_fn, NULL, q6k8_fn, q8_0_fn};
