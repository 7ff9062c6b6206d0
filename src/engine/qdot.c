/*
 * qdot.c - activation quantisation, the dispatch of the integer dot products
 * and their plain-C reference (qdot.h has the arithmetic every path follows).
 * The reference is written for clarity, one weight at a time; it is what runs
 * on the generic path and what the SIMD kernels are checked against.
 */
#include "qdot.h"

#include <math.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "quant.h"
#include "util.h"

int
r1_qdot_slot(r1_dtype dt)
{
	switch (dt)
	{
		case R1_Q8_0:
			return 0;
		case R1_Q4_0:
			return 1;
		case R1_Q5_0:
			return 2;
		case R1_Q4_K:
			return 3;
		case R1_Q5_K:
			return 4;
		case R1_Q6_K:
			return 5;
		default:
			return -1;
	}
}

int
r1_qdot_block(r1_dtype dt)
{
	int			s = r1_qdot_slot(dt);

	return s < 0 ? 0 : s < 3 ? 32 : 256;
}

r1_qdot_fn
r1_qdot_kernel(r1_cpu_path path, r1_dtype dt)
{
	int			s = r1_qdot_slot(dt);

	if (s < 0)
		return NULL;
	switch (path)
	{
		case R1_CPU_AVX512_VNNI:
			return r1_qdot_avx512[s];
		case R1_CPU_AVX2:
			return r1_qdot_avx2[s];
		default:
			return r1_qdot_ref[s];
	}
}

void
r1_qdot_quantize(const float *x, int n, int block, int8_t *q, float *d, int16_t *bsum)
{
	for (int b = 0; b < n / block; b++)
	{
		const float *xb = x + (size_t) b * block;
		int8_t	   *qb = q + (size_t) b * block;
		float		amax = 0.0f,
					id;
#ifdef __AVX2__

		/*
		 * the same numbers as the scalar loop: max is exact, x * id rounds
		 * once, vcvtps2dq rounds to nearest even as lrintf does
		 */
		__m256		vm = _mm256_setzero_ps();
		const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));

		for (int i = 0; i < block; i += 8)
			vm = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xb + i), abs), vm);
		{
			__m128		m = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));

			m = _mm_max_ps(m, _mm_movehl_ps(m, m));
			m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
			amax = _mm_cvtss_f32(m);
		}
		d[b] = amax / 127.0f;
		id = amax > 0.0f ? 127.0f / amax : 0.0f;
		{
			const __m256 vid = _mm256_set1_ps(id);
			const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);

			for (int i = 0; i < block; i += 32)
			{
				__m256i		a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i), vid)),
							c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 8), vid)),
							e = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 16), vid)),
							f = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + i + 24), vid));
				__m256i		v = _mm256_packs_epi16(_mm256_packs_epi32(a, c), _mm256_packs_epi32(e, f));

				_mm256_storeu_si256((__m256i *) (qb + i), _mm256_permutevar8x32_epi32(v, order));
			}
		}
#else
		for (int i = 0; i < block; i++)
			amax = fmaxf(amax, fabsf(xb[i]));
		d[b] = amax / 127.0f;
		id = amax > 0.0f ? 127.0f / amax : 0.0f;
		for (int i = 0; i < block; i++)
			qb[i] = (int8_t) lrintf(xb[i] * id);
#endif
	}
#ifdef __AVX2__
	for (int s = 0; s < n / 16; s += 2)
	{
		__m256i		v = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1),
															   _mm256_loadu_si256((const __m256i *) (q + 16 * s))),
										  _mm256_set1_epi16(1));

		v = _mm256_hadd_epi32(v, v);
		v = _mm256_hadd_epi32(v, v);
		bsum[s] = (int16_t) _mm256_extract_epi32(v, 0);
		bsum[s + 1] = (int16_t) _mm256_extract_epi32(v, 4);
	}
#else
	for (int s = 0; s < n / 16; s++)
	{
		int			sum = 0;

		for (int i = 0; i < 16; i++)
			sum += q[16 * s + i];
		bsum[s] = (int16_t) sum;
	}
#endif
}

/* ---------- the reference ---------- */

static inline float
half_at(const uint8_t *p)
{
	return r1_f16_to_f32((uint16_t) (p[0] | (p[1] << 8)));
}

static inline float
hsum8_ref(const float *v)
{
	return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

/* the 32 signed codes of a Q8_0, Q4_0 or Q5_0 block, in weight order */
static void
codes32(int slot, const uint8_t *b, int8_t *c)
{
	if (slot == 0)
		memcpy(c, b + 2, 32);
	else if (slot == 1)
		for (int j = 0; j < 16; j++)
		{
			c[j] = (int8_t) ((b[2 + j] & 0xF) - 8);
			c[j + 16] = (int8_t) ((b[2 + j] >> 4) - 8);
		}
	else
	{
		uint32_t	qh = (uint32_t) b[2] | (uint32_t) b[3] << 8 | (uint32_t) b[4] << 16 | (uint32_t) b[5] << 24;

		for (int j = 0; j < 16; j++)
		{
			c[j] = (int8_t) (((b[6 + j] & 0xF) | (((qh >> j) & 1) << 4)) - 16);
			c[j + 16] = (int8_t) (((b[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
		}
	}
}

static void
ref_32(int slot, const uint8_t *w, const r1_qx *x, int nt, float *out, size_t stride)
{
	static const size_t bytes[3] = {34, 18, 22};
	int			nb = x->n / 32;

	for (int t = 0; t < nt; t++)
	{
		const int8_t *q = x->q + (size_t) t * x->n;
		const float *dx = x->d + (size_t) t * nb;
		float		acc[2][8] = {{0}};
		float		v[8];

		for (int i = 0; i < nb; i++)
		{
			const uint8_t *b = w + (size_t) i * bytes[slot];
			int8_t		c[32];
			float		s = half_at(b) * dx[i];

			codes32(slot, b, c);
			for (int k = 0; k < 8; k++)
			{
				int32_t		L = 0;

				for (int j = 0; j < 4; j++)
					L += c[4 * k + j] * q[32 * i + 4 * k + j];
				acc[i % 2][k] = fmaf(s, (float) L, acc[i % 2][k]);
			}
		}
		for (int k = 0; k < 8; k++)
			v[k] = acc[0][k] + acc[1][k];
		out[t * stride] = hsum8_ref(v);
	}
}

/*
 * A K-quant super-block as unsigned codes u[256] in weight order, the scale
 * of each 16 weights sc16[16], the mins term's integer weights (mn16[16],
 * M = sum mn16[s] * bsum[s]), and its float scales (d for the codes, dm for
 * M).
 */
static void
unpack_k(int slot, const uint8_t *b, uint8_t *u, int *sc16, int *mn16, float *d, float *dm)
{
	if (slot == 5)				/* Q6_K */
	{
		const uint8_t *ql = b,
				   *qh = b + 128;
		const int8_t *sc = (const int8_t *) (b + 192);

		for (int h = 0; h < 2; h++)
			for (int l = 0; l < 32; l++)
			{
				uint8_t    *y = u + 128 * h;
				const uint8_t *L = ql + 64 * h,
						   *H = qh + 32 * h;

				y[l] = (uint8_t) ((L[l] & 0xF) | ((H[l] & 3) << 4));
				y[l + 32] = (uint8_t) ((L[l + 32] & 0xF) | (((H[l] >> 2) & 3) << 4));
				y[l + 64] = (uint8_t) ((L[l] >> 4) | (((H[l] >> 4) & 3) << 4));
				y[l + 96] = (uint8_t) ((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4));
			}
		for (int s = 0; s < 16; s++)
		{
			sc16[s] = sc[s];
			mn16[s] = 32 * sc[s];
		}
		*d = half_at(b + 208);
		*dm = *d;
		return;
	}
	*d = half_at(b);
	*dm = half_at(b + 2);
	for (int j = 0; j < 8; j++)
	{
		int			sc,
					m;
		const uint8_t *q = b + (slot == 3 ? 16 : 48) + 32 * (j / 2);

		r1_q4k_scale_min(j, b + 4, &sc, &m);
		sc16[2 * j] = sc16[2 * j + 1] = sc;
		mn16[2 * j] = mn16[2 * j + 1] = m;
		for (int l = 0; l < 32; l++)
		{
			int			v = j % 2 ? q[l] >> 4 : q[l] & 0xF;

			if (slot == 4 && (b[16 + l] & (1u << j)))
				v += 16;
			u[32 * j + l] = (uint8_t) v;
		}
	}
}

static void
ref_k(int slot, const uint8_t *w, const r1_qx *x, int nt, float *out, size_t stride)
{
	static const size_t bytes[3] = {144, 176, 210};
	int			nb = x->n / 256;

	for (int t = 0; t < nt; t++)
	{
		const int8_t *q = x->q + (size_t) t * x->n;
		const int16_t *bs = x->bsum + (size_t) t * (x->n / 16);
		const float *dx = x->d + (size_t) t * nb;
		float		acc[8] = {0},
					accm = 0.0f;

		for (int i = 0; i < nb; i++)
		{
			uint8_t		u[256];
			int			sc16[16],
						mn16[16];
			float		d,
						dm;
			int32_t		M = 0;

			unpack_k(slot, w + (size_t) i * bytes[slot - 3], u, sc16, mn16, &d, &dm);
			for (int k = 0; k < 8; k++)
			{
				int32_t		L = 0;

				for (int g = 0; g < 8; g++)
					for (int j = 0; j < 4; j++)
					{
						int			p = 32 * g + 4 * k + j;

						L += sc16[p / 16] * u[p] * q[256 * i + p];
					}
				acc[k] = fmaf(d * dx[i], (float) L, acc[k]);
			}
			for (int s = 0; s < 16; s++)
				M += mn16[s] * bs[16 * i + s];

			/*
			 * Q4_K/Q5_K repeat each 32-group's min on both of its 16s: one
			 * min per bsum
			 */
			accm = fmaf(dm * dx[i], (float) M, accm);
		}
		out[t * stride] = hsum8_ref(acc) - accm;
	}
}

#define REF32(name, slot) \
static void name(const uint8_t *w, const r1_qx *x, int nt, float *out, size_t stride) \
{ ref_32(slot, w, x, nt, out, stride); }
#define REFK(name, slot) \
static void name(const uint8_t *w, const r1_qx *x, int nt, float *out, size_t stride) \
{ ref_k(slot, w, x, nt, out, stride); }
REF32(ref_q8_0, 0)
REF32(ref_q4_0, 1)
REF32(ref_q5_0, 2)
REFK(ref_q4_k, 3)
REFK(ref_q5_k, 4)
REFK(ref_q6_k, 5)

const r1_qdot_fn r1_qdot_ref[R1_QDOT_NTYPES] = {ref_q8_0, ref_q4_0, ref_q5_0, ref_q4_k, ref_q5_k, ref_q6_k};
