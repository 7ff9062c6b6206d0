/*
 * test_qdot.c - the integer dot products of qdot.h: on every path the
 * processor has, each kernel gives bitwise the reference's result (the plain
 * C that states the arithmetic), for one to four tokens, and a token's result
 * does not depend on the tokens beside it; the reference itself is checked
 * against the float64 dot of the dequantised weights and activations.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_features.h"
#include "qdot.h"
#include "quant.h"
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
	return done_testing();
}
