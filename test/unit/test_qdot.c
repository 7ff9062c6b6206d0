/*
 * test_qdot.c - the integer dot products of qdot.h: on every path the
 * processor has, each kernel gives bitwise the reference's result (the plain
 * C that states the arithmetic), for one to four tokens, and a token's result
 * does not depend on the tokens beside it; the reference itself is checked
 * against the float64 dot of the dequantised weights and activations.  The
 * prompt GEMM (qgemm.h) gives the reference's bits for every row and token
 * of a prompt, whatever the tile and padding, and packs its tiles as it
 * says.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_features.h"
#include "qdot.h"
#include "qgemm.h"
#include "quant.h"
#include "repack.h"
#include "tap.h"

static float
frand(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return (float) ((*s >> 8) / 16777216.0 * 2.0 - 1.0);
}

static const r1_dtype types[] = {R1_Q8_0, R1_Q4_0, R1_Q5_0, R1_Q4_K, R1_Q5_K, R1_Q6_K};

/* activations quantised for nt tokens of n values */
typedef struct acts
{
	int8_t	   *q;
	float	   *d;
	int16_t    *bsum;
	r1_qx		x;
} acts;

static void
make_acts(acts *a, const float *xf, int n, int nt, int block)
{
	a->q = malloc((size_t) n * nt);
	a->d = malloc(sizeof(float) * (n / block) * nt);
	a->bsum = malloc(sizeof(int16_t) * (n / 16) * nt);
	for (int t = 0; t < nt; t++)
		r1_qdot_quantize(xf + (size_t) t * n, n, block, a->q + (size_t) t * n, a->d + (size_t) t * (n / block),
						 a->bsum + (size_t) t * (n / 16));
	a->x.q = a->q;
	a->x.d = a->d;
	a->x.bsum = a->bsum;
	a->x.n = n;
}

static void
free_acts(acts *a)
{
	free(a->q);
	free(a->d);
	free(a->bsum);
}

static void
test_type(r1_dtype dt, int n, float wscale)
{
	int			block = r1_qdot_block(dt);
	size_t		rb = 0;
	float	   *w = malloc(sizeof(float) * n),
			   *wd = malloc(sizeof(float) * n),
			   *xf = malloc(sizeof(float) * n * 4);
	uint8_t    *wq;
	acts		a;
	float		ref[4],
				alone[4];
	uint32_t	s = 7 + (uint32_t) n + (uint32_t) dt * 131;
	int			good = 1;

	r1_dtype_row_bytes(dt, n, &rb);
	wq = malloc(rb);
	for (int i = 0; i < n; i++)
		w[i] = frand(&s) * wscale * (i % 97 == 0 ? 8.0f : 1.0f);	/* some outliers */
	for (int i = 0; i < 4 * n; i++)
		xf[i] = frand(&s) * (i % 61 == 0 ? 10.0f : 1.0f);
	r1_quantize_row(dt, w, wq, n);
	r1_dequantize_row(dt, wq, wd, n);
	make_acts(&a, xf, n, 4, block);

	/* the reference against float64 of what it multiplies */
	r1_qdot_ref[r1_qdot_slot(dt)] (wq, &a.x, 4, ref, 1);
	for (int t = 0; t < 4; t++)
	{
		double		want = 0,
					mag = 0;

		for (int i = 0; i < n; i++)
		{
			double		xv = (double) a.d[t * (n / block) + i / block] * a.q[(size_t) t * n + i];

			want += (double) wd[i] * xv;
			mag += fabs((double) wd[i] * xv);
		}
		if (fabs(ref[t] - want) > 1e-5 * mag)
		{
			diag("%s n=%d token %d: reference %.9g, float64 %.9g", r1_dtype_name(dt), n, t, ref[t], want);
			good = 0;
		}
	}
	ok(good, "%s n=%d: the reference equals the float64 dot of the dequantised weights and 8-bit activations",
	   r1_dtype_name(dt), n);
	for (int t = 0; t < 4; t++)
	{
		r1_qx		one = a.x;

		one.q += (size_t) t * n;
		one.d += (size_t) t * (n / block);
		one.bsum += (size_t) t * (n / 16);
		r1_qdot_ref[r1_qdot_slot(dt)] (wq, &one, 1, &alone[t], 1);
	}
	ok(memcmp(alone, ref, sizeof(ref)) == 0, "%s n=%d: reference: a token alone equals it among four",
	   r1_dtype_name(dt), n);

	for (int p = R1_CPU_AVX2; p <= (int) r1_cpu()->best; p++)
	{
		r1_qdot_fn	f = r1_qdot_kernel((r1_cpu_path) p, dt);
		int			same = 1;

		for (int nt = 1; nt <= 4; nt++)
			for (int t0 = 0; t0 + nt <= 4; t0++)
			{
				r1_qx		sub = a.x;
				float		got[8];

				sub.q += (size_t) t0 * n;
				sub.d += (size_t) t0 * (n / block);
				sub.bsum += (size_t) t0 * (n / 16);
				f(wq, &sub, nt, got, 2);
				for (int t = 0; t < nt; t++)
					if (memcmp(&got[2 * t], &ref[t0 + t], sizeof(float)) != 0)
					{
						if (same)
							diag("%s %s n=%d, %d tokens from %d: token %d got %.9g, reference %.9g",
								 r1_cpu_path_name((r1_cpu_path) p), r1_dtype_name(dt), n, nt, t0, t,
								 got[2 * t], ref[t0 + t]);
						same = 0;
					}
			}
		ok(same, "%s %s n=%d: bitwise the reference for 1-4 tokens at any offset",
		   r1_cpu_path_name((r1_cpu_path) p), r1_dtype_name(dt), n);
	}
	free_acts(&a);
	free(w);
	free(wd);
	free(xf);
	free(wq);
}

static void
test_quantize(void)
{
	float		x[256];
	int8_t		q[256];
	float		d[8];
	int16_t		bs[16];
	uint32_t	s = 3;
	int			good = 1;

	for (int i = 0; i < 256; i++)
		x[i] = frand(&s) * 3.0f;
	x[40] = 0;
	memset(x + 64, 0, 32 * sizeof(float));	/* an all-zero block */
	r1_qdot_quantize(x, 256, 32, q, d, bs);
	for (int i = 0; i < 256; i++)
		if (fabsf(d[i / 32] * q[i] - x[i]) > 0.5f * d[i / 32] * 1.0001f || abs(q[i]) > 127)
			good = 0;
	ok(good && d[2] == 0.0f && q[64] == 0, "activation quantisation: codes within half a step, zero blocks stay zero");
	good = 1;
	for (int g = 0; g < 16; g++)
	{
		int			sum = 0;

		for (int i = 0; i < 16; i++)
			sum += q[16 * g + i];
		good &= bs[g] == sum;
	}
	ok(good, "activation quantisation: bsum holds the sum of each 16 codes");
}

/*
 * nrows random rows of dt (every third with an offset, so the K-quants'
 * mins matter) and T tokens' activations, quantised for it (a)
 */
static uint8_t *
random_case(r1_dtype dt, int n, int nrows, int T, uint32_t s, size_t *rb, acts *a)
{
	float	   *w = malloc(sizeof(float) * n),
			   *xf = malloc(sizeof(float) * n * T);
	uint8_t    *wq;

	r1_dtype_row_bytes(dt, n, rb);
	wq = malloc(*rb * nrows);
	for (int r = 0; r < nrows; r++)
	{
		for (int i = 0; i < n; i++)
			w[i] = frand(&s) * (i % 89 == 0 ? 4.0f : 1.0f) * (r + 1) * 0.1f + (r % 3 == 0 ? 0.05f : 0.0f);
		r1_quantize_row(dt, w, wq + *rb * r, n);
	}
	for (int i = 0; i < n * T; i++)
		xf[i] = frand(&s) * (i % 53 == 0 ? 10.0f : 1.0f);
	make_acts(a, xf, n, T, r1_qdot_block(dt));
	free(w);
	free(xf);
	return wq;
}

/*
 * Rows [r0, r0 + nr) of nrows random rows against T tokens: the GEMM's
 * outputs are the reference's, one token at a time, bit for bit.
 */
static void
test_gemm(r1_dtype dt, int n, int nrows, int r0, int nr, int T)
{
	int			block = r1_qdot_block(dt);
	size_t		rb = 0;
	float	   *got = malloc(sizeof(float) * nrows * T);
	void	   *pack = aligned_alloc(64, r1_qgemm_pack_bytes(T, n)),
			   *unp = aligned_alloc(64, (size_t) nr * R1_QGEMM_UNPACK_BYTES(n));
	acts		a;
	uint8_t    *wq = random_case(dt, n, nrows, T, 11 + (uint32_t) n * 3 + (uint32_t) T * 7 + (uint32_t) dt, &rb, &a);
	r1_qxp		P;
	int			same = 1,
				untouched = 1;

	for (int i = 0; i < nrows * T; i++)
		got[i] = -12345.0f;
	/* two tiles packed by separate calls, as threads do */
	r1_qgemm_layout(dt, n, T, pack, &P);
	r1_qgemm_pack(&a.x, &P, 0, 1);
	r1_qgemm_pack(&a.x, &P, 1, P.tiles);
	r1_qgemm_rows(dt, wq, rb, r0, nr, &P, got, nrows, unp);
	for (int t = 0; t < T; t++)
		for (int r = 0; r < nrows; r++)
		{
			r1_qx		one = a.x;
			float		want;

			if (r < r0 || r >= r0 + nr)
			{
				untouched &= got[(size_t) t * nrows + r] == -12345.0f;
				continue;
			}
			one.q += (size_t) t * n;
			one.d += (size_t) t * (n / block);
			one.bsum += (size_t) t * (n / 16);
			r1_qdot_ref[r1_qdot_slot(dt)] (wq + rb * r, &one, 1, &want, 1);
			if (memcmp(&want, &got[(size_t) t * nrows + r], sizeof(float)) != 0)
			{
				if (same)
					diag("%s n=%d T=%d: row %d token %d got %.9g, reference %.9g", r1_dtype_name(dt), n, T,
						 r, t, got[(size_t) t * nrows + r], want);
				same = 0;
			}
		}
	ok(same && untouched, "%s n=%d, rows %d..%d of %d, %d tokens: the prompt GEMM is bitwise the reference",
	   r1_dtype_name(dt), n, r0, r0 + nr - 1, nrows, T);
	if (nrows % R1_REPACK_ROWS == 0 && r1_repack_takes(R1_CPU_AVX512_VNNI, dt, nrows, n))
	{
		/* the same rows unpacked from their x8 copy (repack.h) */
		uint8_t    *x8 = malloc(rb * nrows);
		float	   *got8 = malloc(sizeof(float) * nrows * T);

		for (int g = 0; g < nrows / R1_REPACK_ROWS; g++)
			r1_repack_group(dt, wq + rb * R1_REPACK_ROWS * g, rb, n, x8 + rb * R1_REPACK_ROWS * g);
		for (int i = 0; i < nrows * T; i++)
			got8[i] = -12345.0f;
		r1_qgemm_rows_x8(dt, x8, rb, r0, nr, &P, got8, nrows, unp);
		ok(memcmp(got8, got, sizeof(float) * nrows * T) == 0,
		   "%s n=%d, rows %d..%d of %d, %d tokens: from the x8 copy, the same bits and nothing else written",
		   r1_dtype_name(dt), n, r0, r0 + nr - 1, nrows, T);
		free(x8);
		free(got8);
	}
	free_acts(&a);
	free(got);
	free(wq);
	free(pack);
	free(unp);
}

/*
 * The AMX GEMM (ggml's arithmetic) against the reference: rows [r0, r0 + nr)
 * of nrows random rows, T tokens, from the file's layout and from the x8
 * copy; every output within rounding of the reference's, nothing else
 * written.
 */
static void
test_gemm_amx(r1_dtype dt, int n, int nrows, int r0, int nr, int T)
{
	int			block = r1_qdot_block(dt);
	size_t		rb = 0;
	float	   *got = malloc(sizeof(float) * nrows * T),
			   *want = malloc(sizeof(float) * nrows * T);
	void	   *pack = aligned_alloc(64, r1_qgemm_pack_bytes(T, n)),
			   *unp = aligned_alloc(64, R1_QGEMM_SCRATCH_BYTES(n));
	acts		a;
	uint8_t    *wq = random_case(dt, n, nrows, T, 5 + (uint32_t) n * 7 + (uint32_t) T * 3 + (uint32_t) dt, &rb, &a);
	r1_qxa		A;
	double		maxw = 0,
				maxd = 0;
	int			untouched = 1;

	for (int t = 0; t < T; t++)
		for (int r = r0; r < r0 + nr; r++)
		{
			r1_qx		one = a.x;

			one.q += (size_t) t * n;
			one.d += (size_t) t * (n / block);
			one.bsum += (size_t) t * (n / 16);
			r1_qdot_ref[r1_qdot_slot(dt)] (wq + rb * r, &one, 1, &want[(size_t) t * nrows + r], 1);
			maxw = fmax(maxw, fabs(want[(size_t) t * nrows + r]));
		}
	r1_qgemm_amx_layout(dt, n, T, pack, &A);
	r1_qgemm_amx_pack(&a.x, &A, 0, 1);
	r1_qgemm_amx_pack(&a.x, &A, 1, A.groups);
	for (int x8 = 0; x8 < 2; x8++)
	{
		uint8_t    *src = wq;

		if (x8)
		{
			if (nrows % R1_REPACK_ROWS != 0 || !r1_repack_takes(R1_CPU_AVX512_VNNI, dt, nrows, n))
				break;
			src = malloc(rb * nrows);
			for (int g = 0; g < nrows / R1_REPACK_ROWS; g++)
				r1_repack_group(dt, wq + rb * R1_REPACK_ROWS * g, rb, n, src + rb * R1_REPACK_ROWS * g);
		}
		for (int i = 0; i < nrows * T; i++)
			got[i] = -12345.0f;
		r1_qgemm_amx_rows(dt, src, x8, rb, r0, nr, &A, got, nrows, unp);
		maxd = 0;
		untouched = 1;
		for (int t = 0; t < T; t++)
			for (int r = 0; r < nrows; r++)
			{
				float		v = got[(size_t) t * nrows + r];

				if (r < r0 || r >= r0 + nr)
					untouched &= v == -12345.0f;
				else
					maxd = fmax(maxd, isfinite(v) ? fabs(v - want[(size_t) t * nrows + r]) : INFINITY);
			}
		ok(maxd <= 2e-5 * maxw && maxw > 0 && untouched,
		   "%s n=%d, rows %d..%d of %d, %d tokens%s: AMX GEMM within rounding of the reference (max |diff| %.3g of %.3g)",
		   r1_dtype_name(dt), n, r0, r0 + nr - 1, nrows, T, x8 ? ", x8 copy" : "", maxd, maxw);
		if (x8)
			free(src);
	}
	free_acts(&a);
	free(got);
	free(want);
	free(wq);
	free(pack);
	free(unp);
}

/* the packed layout of qgemm.h, checked by index on any processor */
static void
test_pack_layout(void)
{
	const int	n = 512,
				T = 11;
	float	   *xf = malloc(sizeof(float) * n * T);
	void	   *pack = aligned_alloc(64, r1_qgemm_pack_bytes(T, n));
	acts		a;
	r1_qxp		P;
	uint32_t	s = 5;
	int			good = 1;

	for (int i = 0; i < n * T; i++)
		xf[i] = frand(&s);
	make_acts(&a, xf, n, T, 256);
	r1_qgemm_layout(R1_Q4_K, n, T, pack, &P);
	r1_qgemm_pack(&a.x, &P, 0, 2);
	good &= P.tiles == 2 && P.block == 256;
	for (int t = 0; t < 16; t++)
		for (int i = 0; i < n; i++)
		{
			int8_t		want = t < T ? a.q[(size_t) t * n + i] : 0;

			good &= (int8_t) P.q[((size_t) (t / 2) * (n / 32) + i / 32) * 64 + 32 * (t % 2) + i % 32] == want;
		}
	for (int t = 0; t < 16; t++)
		for (int sb = 0; sb < 2; sb++)
		{
			float		d = t < T ? a.d[t * 2 + sb] : 0.0f;

			for (int l = 0; l < 8; l++)
				good &= P.dxv[((size_t) (t / 2) * 2 + sb) * 16 + 8 * (t % 2) + l] == d;
			good &= P.dx8[((size_t) (t / 8) * 2 + sb) * 8 + t % 8] == d;
			for (int sx = 0; sx < 16; sx++)
				good &= P.bs[(((size_t) (t / 8) * 2 + sb) * 8 + sx / 2) * 16 + 2 * (t % 8) + sx % 2] ==
					(t < T ? a.bsum[(size_t) t * (n / 16) + 16 * sb + sx] : 0);
		}
	ok(good, "prompt GEMM packing: tokens paired by 32-byte group, scales spread, sums of 16 by token, padding zero");
	free_acts(&a);
	make_acts(&a, xf, n, T, 32);
	r1_qgemm_layout(R1_Q8_0, n, T, pack, &P);
	r1_qgemm_pack(&a.x, &P, 0, 2);
	good = P.block == 32 && P.bs == NULL;
	for (int i = 0; i < n; i++)
		good &= P.q[(size_t) (i / 32) * 64 + i % 32] == (uint8_t) (a.q[i] + 128) &&
			P.q[((size_t) 5 * (n / 32) + i / 32) * 64 + 32 + i % 32] == 128 &&
			P.dxv[(size_t) (i / 32) * 16 + 8 + i % 8] == a.d[n / 32 + i / 32] &&
			P.dxv[((size_t) 5 * (n / 32) + i / 32) * 16 + 8 + i % 8] == 0.0f;
	ok(good, "prompt GEMM packing: 32-weight blocks hold codes + 128, padding tokens 128");
	ok(r1_qgemm_takes(R1_CPU_AVX512_VNNI, R1_Q4_K, 1536) && !r1_qgemm_takes(R1_CPU_AVX2, R1_Q4_K, 1536) &&
	   !r1_qgemm_takes(R1_CPU_AVX512_VNNI, R1_Q4_K, 224) && !r1_qgemm_takes(R1_CPU_AVX512_VNNI, R1_BF16, 1536),
	   "prompt GEMM: only the AVX-512 VNNI path, only whole blocks of a quantised type");
	free_acts(&a);
	free(xf);
	free(pack);
}

int
main(void)
{
	diag("cpu path %s (best %s), features %s", r1_cpu_path_name(r1_cpu()->path),
		 r1_cpu_path_name(r1_cpu()->best), r1_cpu_features_string());
	test_quantize();
	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
	{
		int			b = r1_qdot_block(types[k]);

		test_type(types[k], b == 32 ? 224 : 256, 1.0f);		/* odd number of 32-blocks */
		test_type(types[k], 1536, 0.05f);
		test_type(types[k], 8960, 0.02f);
	}
	test_pack_layout();
	if (r1_cpu()->best >= R1_CPU_AVX512_VNNI)
		for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
		{
			int			b = r1_qdot_block(types[k]);

			test_gemm(types[k], b == 32 ? 224 : 256, 5, 0, 5, 5);
			test_gemm(types[k], b == 32 ? 1568 : 1536, 7, 1, 5, 17);
			test_gemm(types[k], 1536, 4, 0, 4, 16);
			test_gemm(types[k], b == 32 ? 224 : 256, 16, 3, 11, 9);	/* rows across two x8 groups */
			test_gemm(types[k], 1536, 16, 0, 16, 17);
		}
	else
		diag("skipped: the prompt GEMM needs AVX-512 VNNI, which this processor lacks");
	if (r1_cpu()->amx_int8)
		for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
		{
			int			b = r1_qdot_block(types[k]);

			test_gemm_amx(types[k], b == 32 ? 224 : 256, 5, 0, 5, 5);
			test_gemm_amx(types[k], 1536, 24, 8, 16, 33);
			test_gemm_amx(types[k], b == 32 ? 1568 : 1536, 16, 3, 11, 17);
			test_gemm_amx(types[k], 8960, 16, 0, 16, 16);
		}
	else
		diag("skipped: the AMX GEMM needs AMX-INT8 (and the OS's leave to use it), which this machine lacks");
	return done_testing();
}
