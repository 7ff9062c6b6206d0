/*
 * test_bf16dot.c - the bf16 dot products of bf16dot.h: the prompt form
 * (three rows by four tokens) gives each row and token the float the
 * one-row form gives, bit for bit, whatever the tile, and the one-row form
 * is the float64 dot of its bf16 inputs within float32 rounding; so is the
 * AMX-BF16 prompt GEMM where the machine has it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bf16dot.h"
#include "cpu_features.h"
#include "tap.h"
#include "util.h"

static float
frand(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return (float) ((*s >> 8) / 16777216.0 * 2.0 - 1.0);
}

static void
test_gemm(int n, int nr, int T)
{
	uint16_t   *w = malloc(sizeof(uint16_t) * n * nr),
			   *x = malloc(sizeof(uint16_t) * n * T);
	float	   *got = malloc(sizeof(float) * nr * T);
	uint32_t	s = 3 + (uint32_t) (n * 7 + nr * 5 + T);
	int			same = 1,
				close = 1;

	for (int i = 0; i < n * nr; i++)
		w[i] = r1_f32_to_bf16(frand(&s) * (i % 71 == 0 ? 8.0f : 1.0f));
	for (int i = 0; i < n * T; i++)
		x[i] = r1_f32_to_bf16(frand(&s));
	r1_bf16_gemm_rows(w, nr, x, T, n, got, nr);
	for (int t = 0; t < T; t++)
		for (int r = 0; r < nr; r++)
		{
			float		want;
			double		ref = 0,
						mag = 0;

			r1_bf16dot_avx512(w + (size_t) r * n, x + (size_t) t * n, n, 1, &want, 1);
			if (memcmp(&want, &got[(size_t) t * nr + r], sizeof(float)) != 0)
			{
				if (same)
					diag("n=%d row %d token %d: prompt form %.9g, one row %.9g", n, r, t,
						 got[(size_t) t * nr + r], want);
				same = 0;
			}
			for (int i = 0; i < n; i++)
			{
				double		p = (double) r1_bf16_to_f32(w[(size_t) r * n + i]) * r1_bf16_to_f32(x[(size_t) t * n + i]);

				ref += p;
				mag += fabs(p);
			}
			close &= fabs(want - ref) <= 1e-5 * mag;
		}
	ok(same, "bf16, n=%d, %d rows x %d tokens: the prompt form is bitwise the one-row form", n, nr, T);
	ok(close, "bf16, n=%d: the one-row form is the float64 dot within float32 rounding", n);
	free(w);
	free(x);
	free(got);
}

/*
 * The AMX-BF16 prompt GEMM: every output the float64 dot of its bf16 inputs
 * within float32 rounding, tokens past T and rows past nr untouched, from
 * token groups packed by separate calls.
 */
static void
test_amx(int n, int nr, int T)
{
	uint16_t   *w = malloc(sizeof(uint16_t) * n * nr),
			   *x = malloc(sizeof(uint16_t) * n * T),
			   *xp = aligned_alloc(64, r1_bf16_amx_pack_bytes(T, n));
	float	   *got = malloc(sizeof(float) * (nr + 1) * T);
	uint32_t	s = 9 + (uint32_t) (n * 3 + nr * 11 + T);
	int			close = 1,
				untouched = 1,
				groups = (T + 15) / 16;

	for (int i = 0; i < n * nr; i++)
		w[i] = r1_f32_to_bf16(frand(&s) * (i % 71 == 0 ? 8.0f : 1.0f));
	for (int i = 0; i < n * T; i++)
		x[i] = r1_f32_to_bf16(frand(&s));
	for (int i = 0; i < (nr + 1) * T; i++)
		got[i] = -12345.0f;
	r1_bf16_amx_pack(x, T, n, xp, 0, 1);
	r1_bf16_amx_pack(x, T, n, xp, 1, groups);
	r1_bf16_amx_rows(w, nr, xp, T, n, got, nr + 1);
	for (int t = 0; t < T; t++)
	{
		untouched &= got[(size_t) t * (nr + 1) + nr] == -12345.0f;
		for (int r = 0; r < nr; r++)
		{
			double		ref = 0,
						mag = 0;

			for (int i = 0; i < n; i++)
			{
				double		p = (double) r1_bf16_to_f32(w[(size_t) r * n + i]) * r1_bf16_to_f32(x[(size_t) t * n + i]);

				ref += p;
				mag += fabs(p);
			}
			if (!(fabs(got[(size_t) t * (nr + 1) + r] - ref) <= 1e-5 * mag))
			{
				if (close)
					diag("n=%d row %d token %d: AMX %.9g, float64 %.9g", n, r, t, got[(size_t) t * (nr + 1) + r], ref);
				close = 0;
			}
		}
	}
	ok(close && untouched, "bf16 AMX, n=%d, %d rows x %d tokens: the float64 dot within float32 rounding, nothing else written",
	   n, nr, T);
	free(w);
	free(x);
	free(xp);
	free(got);
}

int
main(void)
{
	if (!r1_cpu()->avx512_bf16)
	{
		diag("skipped: this processor has no AVX512_BF16");
		ok(1, "nothing to check without AVX512_BF16");
		return done_testing();
	}
	test_gemm(1536, 16, 128 / 16);
	test_gemm(1576, 7, 9);		/* a tail of 40 weights, every tile shape */
	test_gemm(40, 4, 5);		/* no whole step at all */
	if (r1_bf16_amx_takes(1536))
	{
		test_amx(1536, 16, 128);
		test_amx(1536, 16, 33);	/* an odd token group, a partial one */
		test_amx(8960, 7, 5);	/* a partial row block */
		ok(!r1_bf16_amx_takes(1576), "bf16 AMX takes only whole steps of 32 inputs");
	}
	else
		diag("skipped: the AMX-BF16 GEMM needs AMX-BF16 (and the OS's leave to use it), which this machine lacks");
	return done_testing();
}
