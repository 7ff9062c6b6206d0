/*
 * quant.c - decoding and encoding ggml's block-quantised formats (layouts in
 * quant.h), and dot products over quantised rows.
 *
 * Blocks sit at any byte offset (a Q8_0 block is 34 bytes), so multi-byte
 * fields are assembled from bytes, never read through a cast pointer.
 */
#include "quant.h"
#include "util.h"

#include <math.h>
#include <string.h>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#define Q8_0_BYTES 34
#define Q4_0_BYTES 18
#define Q5_0_BYTES 22
#define Q4_K_BYTES 144
#define Q5_K_BYTES 176
#define Q6_K_BYTES 210

static inline float
half_at(const uint8_t *p)
{
	return r1_f16_to_f32((uint16_t) (p[0] | (p[1] << 8)));
}

static inline void
put_half(uint8_t *p, float f)
{
	uint16_t	h = r1_f32_to_f16(f);

	p[0] = (uint8_t) h;
	p[1] = (uint8_t) (h >> 8);
}

int
r1_dtype_block_elems(r1_dtype dt)
{
	switch (dt)
	{
		case R1_F32:
		case R1_F16:
		case R1_BF16:
			return 1;
		case R1_Q8_0:
		case R1_Q4_0:
		case R1_Q5_0:
			return R1_QK8_0;
		case R1_Q4_K:
		case R1_Q5_K:
		case R1_Q6_K:
			return R1_QK_K;
		default:
			return 0;
	}
}

size_t
r1_dtype_block_bytes(r1_dtype dt)
{
	switch (dt)
	{
		case R1_F32:
			return 4;
		case R1_F16:
		case R1_BF16:
			return 2;
		case R1_Q8_0:
			return Q8_0_BYTES;
		case R1_Q4_0:
			return Q4_0_BYTES;
		case R1_Q5_0:
			return Q5_0_BYTES;
		case R1_Q4_K:
			return Q4_K_BYTES;
		case R1_Q5_K:
			return Q5_K_BYTES;
		case R1_Q6_K:
			return Q6_K_BYTES;
		default:
			return 0;
	}
}

int
r1_dtype_is_quant(r1_dtype dt)
{
	return dt == R1_Q8_0 || dt == R1_Q4_0 || dt == R1_Q5_0 || dt == R1_Q4_K || dt == R1_Q5_K || dt == R1_Q6_K;
}

int
r1_dtype_row_bytes(r1_dtype dt, int64_t n, size_t *out)
{
	int			be = r1_dtype_block_elems(dt);

	if (be == 0 || n < 0 || n % be != 0)
		return -1;
	return r1_mul_size((size_t) (n / be), r1_dtype_block_bytes(dt), out) ? 0 : -1;
}

/* ---------- decoding one block ---------- */

static void
decode_q8_0(const uint8_t *b, float *y)
{
	float		d = half_at(b);
	const int8_t *q = (const int8_t *) (b + 2);

	for (int i = 0; i < R1_QK8_0; i++)
		y[i] = d * q[i];
}

/* the 32 signed codes of a Q4_0 (q - 8) or Q5_0 (q - 16) block */
static inline void
codes_q4_0_q5_0(r1_dtype dt, const uint8_t *b, int8_t *c)
{
	if (dt == R1_Q4_0)
	{
		for (int j = 0; j < 16; j++)
		{
			c[j] = (int8_t) ((b[2 + j] & 0xF) - 8);
			c[j + 16] = (int8_t) ((b[2 + j] >> 4) - 8);
		}
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
decode_q4_0_q5_0(r1_dtype dt, const uint8_t *b, float *y)
{
	float		d = half_at(b);
	int8_t		c[32];

	codes_q4_0_q5_0(dt, b, c);
	for (int i = 0; i < 32; i++)
		y[i] = d * c[i];
}

static void
decode_q4_k(const uint8_t *b, float *y)
{
	float		d = half_at(b),
				dmin = half_at(b + 2);
	const uint8_t *scales = b + 4;
	const uint8_t *q = b + 16;

	for (int j = 0; j < 8; j += 2)
	{
		int			sc,
					m;
		float		d1,
					m1,
					d2,
					m2;

		r1_q4k_scale_min(j, scales, &sc, &m);
		d1 = d * sc;
		m1 = dmin * m;
		r1_q4k_scale_min(j + 1, scales, &sc, &m);
		d2 = d * sc;
		m2 = dmin * m;
		for (int l = 0; l < 32; l++)
			y[32 * j + l] = d1 * (q[l] & 0xF) - m1;
		for (int l = 0; l < 32; l++)
			y[32 * j + 32 + l] = d2 * (q[l] >> 4) - m2;
		q += 32;
	}
}

static void
decode_q5_k(const uint8_t *b, float *y)
{
	float		d = half_at(b),
				dmin = half_at(b + 2);
	const uint8_t *scales = b + 4;
	const uint8_t *qh = b + 16;
	const uint8_t *ql = b + 48;

	for (int j = 0; j < 8; j += 2)
	{
		int			sc,
					m;
		float		d1,
					m1,
					d2,
					m2;
		uint8_t		u1 = (uint8_t) (1u << j),
					u2 = (uint8_t) (2u << j);

		r1_q4k_scale_min(j, scales, &sc, &m);
		d1 = d * sc;
		m1 = dmin * m;
		r1_q4k_scale_min(j + 1, scales, &sc, &m);
		d2 = d * sc;
		m2 = dmin * m;
		for (int l = 0; l < 32; l++)
			y[32 * j + l] = d1 * ((ql[l] & 0xF) + ((qh[l] & u1) ? 16 : 0)) - m1;
		for (int l = 0; l < 32; l++)
			y[32 * j + 32 + l] = d2 * ((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
		ql += 32;
	}
}

static void
decode_q6_k(const uint8_t *b, float *y)
{
	const uint8_t *ql = b;
	const uint8_t *qh = b + 128;
	const int8_t *sc = (const int8_t *) (b + 192);
	float		d = half_at(b + 208);

	for (int half = 0; half < 2; half++)
	{
		for (int l = 0; l < 32; l++)
		{
			int			is = l / 16;
			int			q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
			int			q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
			int			q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
			int			q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;

			y[l] = d * sc[is] * q1;
			y[l + 32] = d * sc[is + 2] * q2;
			y[l + 64] = d * sc[is + 4] * q3;
			y[l + 96] = d * sc[is + 6] * q4;
		}
		y += 128;
		ql += 64;
		qh += 32;
		sc += 8;
	}
}

static inline void
decode_block(r1_dtype dt, const uint8_t *b, float *y)
{
	switch (dt)
	{
		case R1_Q8_0:
			decode_q8_0(b, y);
			break;
		case R1_Q4_0:
		case R1_Q5_0:
			decode_q4_0_q5_0(dt, b, y);
			break;
		case R1_Q4_K:
			decode_q4_k(b, y);
			break;
		case R1_Q5_K:
			decode_q5_k(b, y);
			break;
		case R1_Q6_K:
			decode_q6_k(b, y);
			break;
		default:
			break;
	}
}

void
r1_dequantize_row(r1_dtype dt, const void *src, float *dst, int64_t n)
{
	const uint8_t *p = src;

	switch (dt)
	{
		case R1_F32:
			memcpy(dst, src, (size_t) n * 4);
			return;
		case R1_F16:
		case R1_BF16:
			for (int64_t i = 0; i < n; i++)
			{
				uint16_t	h = (uint16_t) (p[2 * i] | (p[2 * i + 1] << 8));

				dst[i] = dt == R1_F16 ? r1_f16_to_f32(h) : r1_bf16_to_f32(h);
			}
			return;
		default:
			{
				int			be = r1_dtype_block_elems(dt);
				size_t		bb = r1_dtype_block_bytes(dt);

				if (be == 0)
					return;
				for (int64_t i = 0; i < n / be; i++)
					decode_block(dt, p + i * bb, dst + i * be);
			}
	}
}

/* ---------- encoding ---------- */

static inline int
nearest(float x)
{
	return (int) lrintf(x);
}

static inline int
clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static void
encode_q8_0(const float *x, uint8_t *b)
{
	float		amax = 0.0f,
				d,
				id;

	for (int i = 0; i < R1_QK8_0; i++)
		if (fabsf(x[i]) > amax)
			amax = fabsf(x[i]);
	d = amax / 127.0f;
	put_half(b, d);
	d = half_at(b);				/* quantise against the scale as stored */
	id = d != 0.0f ? 1.0f / d : 0.0f;
	for (int i = 0; i < R1_QK8_0; i++)
		b[2 + i] = (uint8_t) (int8_t) clampi(nearest(x[i] * id), -127, 127);
}

/*
 * Q4_0 / Q5_0 as ggml's reference quantiser: d = (the value of largest
 * magnitude) / -8 (-16), so that value is the code 0; codes clamped to the
 * type's range; round to nearest.
 */
static void
encode_q4_0_q5_0(r1_dtype dt, const float *x, uint8_t *b)
{
	int			top = dt == R1_Q4_0 ? 8 : 16;
	float		amax = 0.0f,
				vmax = 0.0f,
				d,
				id;
	int			c[32];
	uint32_t	qh = 0;

	for (int i = 0; i < 32; i++)
		if (fabsf(x[i]) > amax)
		{
			amax = fabsf(x[i]);
			vmax = x[i];
		}
	d = vmax / (float) -top;
	put_half(b, d);
	d = half_at(b);				/* quantise against the scale as stored */
	id = d != 0.0f ? 1.0f / d : 0.0f;
	for (int i = 0; i < 32; i++)
		c[i] = clampi(nearest(x[i] * id) + top, 0, 2 * top - 1);
	if (dt == R1_Q4_0)
	{
		for (int j = 0; j < 16; j++)
			b[2 + j] = (uint8_t) (c[j] | (c[j + 16] << 4));
		return;
	}
	for (int j = 0; j < 16; j++)
	{
		b[6 + j] = (uint8_t) ((c[j] & 0xF) | ((c[j + 16] & 0xF) << 4));
		qh |= (uint32_t) (c[j] >> 4) << j;
		qh |= (uint32_t) (c[j + 16] >> 4) << (j + 16);
	}
	b[2] = (uint8_t) qh;
	b[3] = (uint8_t) (qh >> 8);
	b[4] = (uint8_t) (qh >> 16);
	b[5] = (uint8_t) (qh >> 24);
}

void
r1_q4k_pack_scales(const int *ls, const int *lm, uint8_t *q)
{
	for (int j = 0; j < 4; j++)
	{
		q[j] = (uint8_t) ((ls[j] & 63) | ((ls[j + 4] >> 4) << 6));
		q[j + 4] = (uint8_t) ((lm[j] & 63) | ((lm[j + 4] >> 4) << 6));
		q[j + 8] = (uint8_t) ((ls[j + 4] & 0xF) | ((lm[j + 4] & 0xF) << 4));
	}
}

/*
 * Q4_K / Q5_K: per sub-block of 32 an affine map min..max onto 0..nmax, the
 * scales and (negated) mins quantised to 6 bits against two fp16 super-block
 * scales; the weights then quantised against the stored scales.  Fills
 * L[256] with the quants and b with d, dmin and the packed scales.
 */
static void
encode_k_affine(const float *x, uint8_t *b, int nmax, int *L)
{
	float		scale[8],
				minv[8],
				max_scale = 0.0f,
				max_min = 0.0f,
				d,
				dmin;
	int			ls[8],
				lm[8];

	for (int j = 0; j < 8; j++)
	{
		float		lo = x[32 * j],
					hi = x[32 * j];

		for (int l = 1; l < 32; l++)
		{
			lo = fminf(lo, x[32 * j + l]);
			hi = fmaxf(hi, x[32 * j + l]);
		}
		if (lo > 0.0f)
			lo = 0.0f;			/* the format subtracts a non-negative min */
		scale[j] = (hi - lo) / nmax;
		minv[j] = -lo;
		max_scale = fmaxf(max_scale, scale[j]);
		max_min = fmaxf(max_min, minv[j]);
	}
	put_half(b, max_scale / 63.0f);
	put_half(b + 2, max_min / 63.0f);
	d = half_at(b);
	dmin = half_at(b + 2);
	for (int j = 0; j < 8; j++)
	{
		ls[j] = d > 0.0f ? clampi(nearest(scale[j] / d), 0, 63) : 0;
		lm[j] = dmin > 0.0f ? clampi(nearest(minv[j] / dmin), 0, 63) : 0;
	}
	r1_q4k_pack_scales(ls, lm, b + 4);
	for (int j = 0; j < 8; j++)
	{
		float		ds = d * ls[j],
					dm = dmin * lm[j];

		for (int l = 0; l < 32; l++)
			L[32 * j + l] = ds > 0.0f ? clampi(nearest((x[32 * j + l] + dm) / ds), 0, nmax) : 0;
	}
}

static void
encode_q4_k(const float *x, uint8_t *b)
{
	int			L[R1_QK_K];
	uint8_t    *q = b + 16;

	encode_k_affine(x, b, 15, L);
	for (int j = 0; j < R1_QK_K; j += 64)
	{
		for (int l = 0; l < 32; l++)
			q[l] = (uint8_t) (L[j + l] | (L[j + 32 + l] << 4));
		q += 32;
	}
}

static void
encode_q5_k(const float *x, uint8_t *b)
{
	int			L[R1_QK_K];
	uint8_t    *qh = b + 16;
	uint8_t    *ql = b + 48;

	encode_k_affine(x, b, 31, L);
	memset(qh, 0, 32);
	for (int j = 0; j < 8; j += 2)
	{
		for (int l = 0; l < 32; l++)
		{
			int			lo = L[32 * j + l],
						hi = L[32 * j + 32 + l];

			ql[l] = (uint8_t) ((lo & 0xF) | ((hi & 0xF) << 4));
			if (lo & 16)
				qh[l] |= (uint8_t) (1u << j);
			if (hi & 16)
				qh[l] |= (uint8_t) (2u << j);
		}
		ql += 32;
	}
}

static void
encode_q6_k(const float *x, uint8_t *b)
{
	float		scale[16],
				amax_s = 0.0f,
				d;
	int			L[R1_QK_K];
	int8_t	   *sc = (int8_t *) (b + 192);
	uint8_t    *ql = b,
			   *qh = b + 128;

	for (int j = 0; j < 16; j++)
	{
		float		amax = 0.0f;

		for (int l = 0; l < 16; l++)
			amax = fmaxf(amax, fabsf(x[16 * j + l]));
		scale[j] = amax / 31.0f;
		amax_s = fmaxf(amax_s, scale[j]);
	}
	put_half(b + 208, amax_s / 127.0f);
	d = half_at(b + 208);
	for (int j = 0; j < 16; j++)
	{
		int			s = d > 0.0f ? clampi(nearest(scale[j] / d), -128, 127) : 0;
		float		ds = d * s;

		sc[j] = (int8_t) s;
		for (int l = 0; l < 16; l++)
			L[16 * j + l] = (ds != 0.0f ? clampi(nearest(x[16 * j + l] / ds), -32, 31) : 0) + 32;
	}
	for (int half = 0; half < 2; half++)
	{
		const int  *h = L + 128 * half;

		for (int l = 0; l < 32; l++)
		{
			int			q1 = h[l],
						q2 = h[l + 32],
						q3 = h[l + 64],
						q4 = h[l + 96];

			ql[l] = (uint8_t) ((q1 & 0xF) | ((q3 & 0xF) << 4));
			ql[l + 32] = (uint8_t) ((q2 & 0xF) | ((q4 & 0xF) << 4));
			qh[l] = (uint8_t) ((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
		}
		ql += 64;
		qh += 32;
	}
}

int
r1_quantize_row(r1_dtype dt, const float *src, void *dst, int64_t n)
{
	uint8_t    *p = dst;
	int			be = r1_dtype_block_elems(dt);
	size_t		bb = r1_dtype_block_bytes(dt);

	if (be == 0 || n % be != 0)
		return -1;
	for (int64_t i = 0; i < n / be; i++)
	{
		const float *x = src + i * be;
		uint8_t    *b = p + i * bb;

		switch (dt)
		{
			case R1_F32:
				memcpy(b, x, 4);
				break;
			case R1_F16:
			case R1_BF16:
				{
					uint16_t	h = dt == R1_F16 ? r1_f32_to_f16(*x) : r1_f32_to_bf16(*x);

					b[0] = (uint8_t) h;
					b[1] = (uint8_t) (h >> 8);
				}
				break;
			case R1_Q8_0:
				encode_q8_0(x, b);
				break;
			case R1_Q4_0:
			case R1_Q5_0:
				encode_q4_0_q5_0(dt, x, b);
				break;
			case R1_Q4_K:
				encode_q4_k(x, b);
				break;
			case R1_Q5_K:
				encode_q5_k(x, b);
				break;
			case R1_Q6_K:
				encode_q6_k(x, b);
				break;
			default:
				return -1;
		}
	}
	return 0;
}

/* ---------- dot products ---------- */

/* dot of nb floats (a multiple of 8) */
static inline float
dot_f32(const float *a, const float *b, int n)
{
#ifdef __AVX2__
	__m256		acc = _mm256_setzero_ps();
	__m128		lo,
				hi;

	for (int i = 0; i < n; i += 8)
		acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
	lo = _mm256_castps256_ps128(acc);
	hi = _mm256_extractf128_ps(acc, 1);
	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
	return _mm_cvtss_f32(lo);
#else
	float		s = 0.0f;

	for (int i = 0; i < n; i++)
		s += a[i] * b[i];
	return s;
#endif
}

#ifdef __AVX2__
/*
 * AVX2 dot products straight from the blocks: a sub-block's integer codes
 * become floats in registers and meet x there; its scale (and min) multiply
 * the sub-block's partial sum.  Per block the sum is
 *   sum_sub scale_sub * sum_i q_i x_i  -  min_sub * sum_i x_i
 * (the decoded weight is scale * q - min).  Every x vector of a call is
 * accumulated by the same sequence of operations whatever the number of
 * vectors (1 to 4), so dot and dot4 agree bitwise: the batch-invariance of
 * the CPU backend relies on it.
 */
#define MAXT 4

static inline float
hsum8(__m256 v)
{
	__m128		lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
	return _mm_cvtss_f32(lo);
}

/* 32 unsigned (or signed) bytes to 4 x 8 floats */
static inline void
u8_to_ps(__m256i b, __m256 f[4])
{
	__m128i		lo = _mm256_castsi256_si128(b),
				hi = _mm256_extracti128_si256(b, 1);

	f[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
	f[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
	f[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
	f[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

static inline void
i8_to_ps(__m256i b, __m256 f[4])
{
	__m128i		lo = _mm256_castsi256_si128(b),
				hi = _mm256_extracti128_si256(b, 1);

	f[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
	f[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
	f[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
	f[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

/* acc += scale * sum(f[k] * x[8k..]) - min * sum(x[8k..]) over nf vectors (min 0: no min term) */
static inline __m256
sub_fma(__m256 acc, const __m256 *f, int nf, const float *x, float scale, float min)
{
	__m256		x0 = _mm256_loadu_ps(x);
	__m256		s = _mm256_mul_ps(f[0], x0),
				sx = x0;

	for (int k = 1; k < nf; k++)
	{
		__m256		xk = _mm256_loadu_ps(x + 8 * k);

		s = _mm256_fmadd_ps(f[k], xk, s);
		sx = _mm256_add_ps(sx, xk);
	}
	acc = _mm256_fmadd_ps(_mm256_set1_ps(scale), s, acc);
	if (min != 0.0f)
		acc = _mm256_fnmadd_ps(_mm256_set1_ps(min), sx, acc);
	return acc;
}

static void
kdot_avx2(r1_dtype dt, const uint8_t *w, const float *x, int n, int nt, float *out, size_t stride)
{
	const __m256i m4 = _mm256_set1_epi8(0x0F),
				m1 = _mm256_set1_epi8(0x01),
				m3 = _mm256_set1_epi8(0x03),
				k32 = _mm256_set1_epi8(32);
	__m256		acc[MAXT];
	__m256		f[4];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm256_setzero_ps();
	if (dt == R1_Q8_0)
	{
		for (int i = 0; i < n / R1_QK8_0; i++)
		{
			const uint8_t *b = w + (size_t) i * Q8_0_BYTES;
			float		d = half_at(b);

			i8_to_ps(_mm256_loadu_si256((const __m256i *) (b + 2)), f);
			for (int t = 0; t < nt; t++)
				acc[t] = sub_fma(acc[t], f, 4, x + (size_t) t * n + (size_t) i * R1_QK8_0, d, 0.0f);
		}
	}
	else if (dt == R1_Q4_0 || dt == R1_Q5_0)
	{
		size_t		bb = dt == R1_Q4_0 ? Q4_0_BYTES : Q5_0_BYTES;

		for (int i = 0; i < n / R1_QK8_0; i++)
		{
			const uint8_t *b = w + (size_t) i * bb;
			int8_t		c[32];

			codes_q4_0_q5_0(dt, b, c);
			i8_to_ps(_mm256_loadu_si256((const __m256i *) c), f);
			for (int t = 0; t < nt; t++)
				acc[t] = sub_fma(acc[t], f, 4, x + (size_t) t * n + (size_t) i * R1_QK8_0, half_at(b), 0.0f);
		}
	}
	else if (dt == R1_Q4_K || dt == R1_Q5_K)
	{
		size_t		bb = dt == R1_Q4_K ? Q4_K_BYTES : Q5_K_BYTES;

		for (int i = 0; i < n / R1_QK_K; i++)
		{
			const uint8_t *b = w + (size_t) i * bb;
			float		d = half_at(b),
						dmin = half_at(b + 2);
			const uint8_t *scales = b + 4;
			const uint8_t *q = dt == R1_Q4_K ? b + 16 : b + 48;
			__m256i		qh = dt == R1_Q5_K ? _mm256_loadu_si256((const __m256i *) (b + 16)) : _mm256_setzero_si256();

			for (int j = 0; j < 8; j += 2)
			{
				__m256i		raw = _mm256_loadu_si256((const __m256i *) (q + 16 * j));
				__m256i		lo = _mm256_and_si256(raw, m4),
							hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
				int			sc1,
							mn1,
							sc2,
							mn2;
				size_t		off = (size_t) i * R1_QK_K + 32 * (size_t) j;

				if (dt == R1_Q5_K)
				{
					/*
					 * the fifth bit of sub-block j is bit j of qh, of j + 1
					 * bit j + 1
					 */
					lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, j), m1), 4));
					hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, j + 1), m1), 4));
				}
				r1_q4k_scale_min(j, scales, &sc1, &mn1);
				r1_q4k_scale_min(j + 1, scales, &sc2, &mn2);
				u8_to_ps(lo, f);
				for (int t = 0; t < nt; t++)
					acc[t] = sub_fma(acc[t], f, 4, x + (size_t) t * n + off, d * sc1, dmin * mn1);
				u8_to_ps(hi, f);
				for (int t = 0; t < nt; t++)
					acc[t] = sub_fma(acc[t], f, 4, x + (size_t) t * n + off + 32, d * sc2, dmin * mn2);
			}
		}
	}
	else if (dt == R1_Q6_K)
	{
		for (int i = 0; i < n / R1_QK_K; i++)
		{
			const uint8_t *b = w + (size_t) i * Q6_K_BYTES;
			float		d = half_at(b + 208);

			for (int h = 0; h < 2; h++)
			{
				const uint8_t *ql = b + 64 * h;
				const int8_t *sc = (const int8_t *) (b + 192) + 8 * h;
				__m256i		a = _mm256_loadu_si256((const __m256i *) ql),
							c = _mm256_loadu_si256((const __m256i *) (ql + 32)),
							qh = _mm256_loadu_si256((const __m256i *) (b + 128 + 32 * h));
				__m256i		q[4];

				q[0] = _mm256_or_si256(_mm256_and_si256(a, m4),
									   _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
				q[1] = _mm256_or_si256(_mm256_and_si256(c, m4),
									   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
				q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4),
									   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
				q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), m4),
									   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
				for (int k = 0; k < 4; k++)
				{
					size_t		off = (size_t) i * R1_QK_K + 128 * (size_t) h + 32 * (size_t) k;

					/* codes 0..63 stand for -32..31; 16 weights per scale */
					i8_to_ps(_mm256_sub_epi8(q[k], k32), f);
					for (int t = 0; t < nt; t++)
					{
						acc[t] = sub_fma(acc[t], f, 2, x + (size_t) t * n + off, d * sc[2 * k], 0.0f);
						acc[t] = sub_fma(acc[t], f + 2, 2, x + (size_t) t * n + off + 16, d * sc[2 * k + 1], 0.0f);
					}
				}
			}
		}
	}
	for (int t = 0; t < nt; t++)
		out[t * stride] = hsum8(acc[t]);
}
#endif

float
r1_quant_dot(r1_dtype dt, const void *w, const float *x, int n)
{
#ifdef __AVX2__
	float		out = 0.0f;

	if (r1_dtype_is_quant(dt))
		kdot_avx2(dt, w, x, n, 1, &out, 1);
	return out;
#else
	float		buf[R1_QK_K];
	int			be = r1_dtype_block_elems(dt);
	size_t		bb = r1_dtype_block_bytes(dt);
	const uint8_t *p = w;
	float		s = 0.0f;

	if (!r1_dtype_is_quant(dt))
		return 0.0f;
	for (int i = 0; i < n / be; i++)
	{
		decode_block(dt, p + (size_t) i * bb, buf);
		s += dot_f32(buf, x + (size_t) i * be, be);
	}
	return s;
#endif
}

void
r1_quant_dot4(r1_dtype dt, const void *w, const float *x, int n, float *out, size_t stride)
{
#ifdef __AVX2__
	if (r1_dtype_is_quant(dt))
		kdot_avx2(dt, w, x, n, 4, out, stride);
#else
	float		buf[R1_QK_K];
	int			be = r1_dtype_block_elems(dt);
	size_t		bb = r1_dtype_block_bytes(dt);
	const uint8_t *p = w;
	float		s[4] = {0, 0, 0, 0};

	if (!r1_dtype_is_quant(dt))
		return;
	for (int i = 0; i < n / be; i++)
	{
		size_t		off = (size_t) i * be;

		decode_block(dt, p + (size_t) i * bb, buf);
		for (int t = 0; t < 4; t++)
			s[t] += dot_f32(buf, x + (size_t) t * n + off, be);
	}
	for (int t = 0; t < 4; t++)
		out[t * stride] = s[t];
#endif
}
