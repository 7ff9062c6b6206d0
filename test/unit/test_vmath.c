/*
 * test_vmath.c - vmath.h: e^x within 2 ulp of the float64 value over the
 * range activations reach, the clamps and NaN as documented, and SiLU's
 * vector lanes bitwise the scalar tail's for every element, wherever it
 * falls (what batch invariance needs of an element-wise function).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "vmath.h"

static float
frand(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return (float) ((*s >> 8) / 16777216.0 * 2.0 - 1.0);
}

int
main(void)
{
	uint32_t	s = 17;
	double		worst = 0;
	int			n = 1003;
	float	   *g = malloc(sizeof(float) * n),
			   *u = malloc(sizeof(float) * n),
			   *v = malloc(sizeof(float) * n);
	int			same = 1;

	for (int i = 0; i < 200000; i++)
	{
		float		x = -87.0f + 175.0f * (float) i / 200000.0f;
		double		want = exp((double) x),
					ulp = nextafterf((float) want, INFINITY) - (float) want;

		worst = fmax(worst, fabs(r1_expf(x) - want) / ulp);
	}
	ok(worst <= 2.0, "r1_expf within 2 ulp of exp on [-87, 88] (worst %.2f ulp)", worst);
	ok(r1_expf(0.0f) == 1.0f && r1_expf(1000.0f) == r1_expf(88.37f) && isfinite(r1_expf(1000.0f)) &&
	   r1_expf(-1000.0f) == r1_expf(-87.3f) && r1_expf(-1000.0f) > 0.0f,
	   "r1_expf: e^0 = 1; arguments clamped to [-87.3, 88.37], so finite and positive");
	for (int i = 0; i < n; i++)
	{
		g[i] = frand(&s) * (i % 97 == 0 ? 120.0f : 12.0f);
		u[i] = frand(&s);
		v[i] = g[i];
	}
	r1_silu_mul(g, u, n);
	for (int i = 0; i < n; i++)
	{
		float		one = v[i];

		/* element i alone: always the scalar tail */
		r1_silu_mul(&one, &u[i], 1);
		same &= memcmp(&one, &g[i], sizeof(float)) == 0;
		same &= fabs(one - v[i] / (1.0 + exp(-(double) v[i])) * u[i]) <= 1e-6 * (fabs(v[i] * u[i]) + 1e-30);
	}
	ok(same, "r1_silu_mul: %d elements in eight-lane steps are bitwise each element alone, and silu within 1e-6", n);
	free(g);
	free(u);
	free(v);
	return done_testing();
}
