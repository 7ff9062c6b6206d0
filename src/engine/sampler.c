/*
 * sampler.c - next-token choice: greedy, or temperature + top-k + top-p +
 * min-p with a counter-based random number.
 */
#include "sampler.h"
#include "philox.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void
r1_sampling_defaults(r1_sampling *s)
{
	s->temperature = R1_DEFAULT_TEMPERATURE;
	s->top_p = R1_DEFAULT_TOP_P;
	s->top_k = 0;
	s->min_p = 0.0f;
	s->seed = 0;
}

int
r1_sampling_validate(const r1_sampling *s, r1_error *err)
{
	if (!(s->temperature >= 0.0f) || isinf(s->temperature))
		return r1_fail(err, "temperature must be a finite number >= 0, got %g", s->temperature);
	if (!(s->top_p > 0.0f && s->top_p <= 1.0f))
		return r1_fail(err, "top_p must be in (0, 1], got %g", s->top_p);
	if (s->top_k < 0)
		return r1_fail(err, "top_k must be >= 0 (0 turns it off), got %d", s->top_k);
	if (!(s->min_p >= 0.0f && s->min_p < 1.0f))
		return r1_fail(err, "min_p must be in [0, 1), got %g", s->min_p);
	return 0;
}

/* Philox-4x32-10 of (seed, position): philox.h, shared with the GPU sampler */
double
r1_rng_uniform(uint64_t seed, uint64_t counter)
{
	return r1ph_uniform(seed, counter);
}

int32_t
r1_argmax(const float *logits, int n)
{
	int32_t		best = 0;

	for (int i = 1; i < n; i++)
		if (logits[i] > logits[best])
			best = i;
	return best;
}

size_t
r1_sampler_scratch_size(int n)
{
	return (size_t) n * (sizeof(float) + sizeof(int32_t));
}

typedef struct cand
{
	float		p;
	int32_t		id;
} cand;

static int
cand_desc(const void *a, const void *b)
{
	const cand *x = a,
			   *y = b;

	if (x->p != y->p)
		return x->p < y->p ? 1 : -1;
	return x->id - y->id;
}

int32_t
r1_sample(const float *logits, int n, const r1_sampling *s, uint64_t position, void *scratch)
{
	cand	   *c = scratch;
	float		maxl;
	double		sum = 0.0,
				cut,
				r,
				acc;
	int			m = 0,
				keep;

	if (s->temperature <= 0.0f || s->top_k == 1)
		return r1_argmax(logits, n);

	/* softmax at temperature, over the candidates above the min-p floor */
	maxl = logits[r1_argmax(logits, n)];
	{
		float		inv_t = 1.0f / s->temperature;

		/* min_p keeps tokens whose probability is >= min_p * p(best) */
		float		floor_logit = s->min_p > 0.0f ? maxl + s->temperature * logf(s->min_p) : -INFINITY;

		/*
		 * Tokens below exp(-40) of the best carry no mass that float32 sums
		 * could see; dropping them keeps the sort short.
		 */
		if (floor_logit < maxl - 40.0f * s->temperature)
			floor_logit = maxl - 40.0f * s->temperature;

		for (int i = 0; i < n; i++)
		{
			if (logits[i] < floor_logit || isnan(logits[i]))
				continue;
			c[m].p = expf((logits[i] - maxl) * inv_t);
			c[m].id = i;
			m++;
		}
	}
	/* every logit NaN (a broken model): no candidate, so the greedy choice */
	if (m == 0)
		return r1_argmax(logits, n);

	/*
	 * Only sort what top-k/top-p can keep: with top_p < 1 a partial selection
	 * would do, but a full sort of the survivors is simple and exact.
	 */
	qsort(c, m, sizeof(cand), cand_desc);
	keep = (s->top_k > 0 && s->top_k < m) ? s->top_k : m;
	for (int i = 0; i < keep; i++)
		sum += c[i].p;
	if (s->top_p < 1.0f)
	{
		double		acc_p = 0.0;
		int			k;

		for (k = 0; k < keep; k++)
		{
			acc_p += c[k].p;
			if (acc_p >= s->top_p * sum)
			{
				k++;
				break;
			}
		}
		keep = k < 1 ? 1 : k;
		sum = 0.0;
		for (int i = 0; i < keep; i++)
			sum += c[i].p;
	}
	r = r1_rng_uniform(s->seed, position);
	cut = r * sum;
	acc = 0.0;
	for (int i = 0; i < keep; i++)
	{
		acc += c[i].p;
		if (cut < acc)
			return c[i].id;
	}
	return c[keep - 1].id;
}
