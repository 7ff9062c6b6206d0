/* test_sampler.c - sampling parameters, the counter-based RNG and the filters. */
#include <math.h>
#include <stdlib.h>

#include "sampler.h"
#include "tap.h"

#define V 64

int
main(void)
{
	float		logits[V];
	void	   *scratch = malloc(r1_sampler_scratch_size(V));
	r1_sampling s;
	r1_error	err;
	int			counts[V] = {0};

	for (int i = 0; i < V; i++)
		logits[i] = (float) (i % 7) * 0.5f;
	logits[40] = 10.0f;

	/* validation */
	r1_sampling_defaults(&s);
	ok(r1_sampling_validate(&s, &err) == 0, "defaults are valid");
	ok(fabsf(s.temperature - 0.6f) < 1e-6 && fabsf(s.top_p - 0.95f) < 1e-6, "defaults: temperature 0.6, top_p 0.95");
	s.temperature = -0.1f;
	fails_with(r1_sampling_validate(&s, &err), err, "temperature", "negative temperature rejected");
	r1_sampling_defaults(&s);
	s.top_p = 0.0f;
	fails_with(r1_sampling_validate(&s, &err), err, "top_p", "top_p 0 rejected");
	s.top_p = 1.5f;
	fails_with(r1_sampling_validate(&s, &err), err, "top_p", "top_p > 1 rejected");
	r1_sampling_defaults(&s);
	s.top_k = -1;
	fails_with(r1_sampling_validate(&s, &err), err, "top_k", "negative top_k rejected");
	r1_sampling_defaults(&s);
	s.min_p = 1.0f;
	fails_with(r1_sampling_validate(&s, &err), err, "min_p", "min_p 1 rejected");
	r1_sampling_defaults(&s);
	s.temperature = NAN;
	fails_with(r1_sampling_validate(&s, &err), err, "temperature", "NaN temperature rejected");

	/* RNG: pure function of (seed, counter), uniform-looking */
	ok(r1_rng_uniform(1, 2) == r1_rng_uniform(1, 2), "same (seed, counter) gives the same number");
	ok(r1_rng_uniform(1, 2) != r1_rng_uniform(1, 3), "another counter gives another number");
	ok(r1_rng_uniform(1, 2) != r1_rng_uniform(2, 2), "another seed gives another number");
	{
		double		sum = 0,
					lo = 1,
					hi = 0;

		for (int i = 0; i < 100000; i++)
		{
			double		u = r1_rng_uniform(42, i);

			sum += u;
			lo = u < lo ? u : lo;
			hi = u > hi ? u : hi;
		}
		ok(fabs(sum / 100000 - 0.5) < 0.01 && lo >= 0 && hi < 1, "uniform in [0,1): mean %.4f", sum / 100000);
	}
	/*
	 * Philox-4x32-10 known answer (Random123 kat_vectors: counter 0, key 0 gives
	 * 6627e8d5 e169c58d ...): the top 53 bits of the first two words.
	 */
	ok(r1_rng_uniform(0, 0) == (double) (0x6627e8d5e169c58dULL >> 11) / 9007199254740992.0,
	   "Philox-4x32-10 known-answer vector");

	/* greedy */
	r1_sampling_defaults(&s);
	s.temperature = 0;
	is_int(r1_sample(logits, V, &s, 0, scratch), 40, "temperature 0 is argmax");
	is_int(r1_argmax((float[]) {1, 3, 3, 2}, 4), 1, "argmax takes the lowest index on ties");
	s.temperature = 1.0f;
	s.top_k = 1;
	is_int(r1_sample(logits, V, &s, 5, scratch), 40, "top_k 1 is argmax");

	/* seeded draws are reproducible and independent of call order */
	r1_sampling_defaults(&s);
	s.temperature = 5.0f;
	s.top_p = 1.0f;
	s.seed = 7;
	{
		int			a = r1_sample(logits, V, &s, 100, scratch);
		int			b;

		(void) r1_sample(logits, V, &s, 101, scratch);
		b = r1_sample(logits, V, &s, 100, scratch);
		is_int(a, b, "same seed and position give the same token whatever came between");
	}
	/* high temperature spreads over many tokens */
	for (int i = 0; i < 4000; i++)
		counts[r1_sample(logits, V, &s, i, scratch)]++;
	{
		int			distinct = 0;

		for (int i = 0; i < V; i++)
			distinct += counts[i] > 0;
		ok(distinct > 30, "temperature 5 samples %d distinct tokens", distinct);
	}
	/* top_k restricts to the k best */
	s.top_k = 3;
	{
		int			bad = 0;

		for (int i = 0; i < 2000; i++)
		{
			int			t = r1_sample(logits, V, &s, i, scratch);

			/* the best three: 40 (10.0), then logits 3.0 at i%7==6: 6, 13 (lowest ids on ties) */
			bad += !(t == 40 || t == 6 || t == 13);
		}
		is_int(bad, 0, "top_k 3 only draws the three best tokens");
	}
	/* top_p: a dominant token alone covers the mass */
	r1_sampling_defaults(&s);
	s.temperature = 1.0f;
	s.top_p = 0.5f;
	{
		int			bad = 0;

		for (int i = 0; i < 500; i++)
			bad += r1_sample(logits, V, &s, i, scratch) != 40;
		is_int(bad, 0, "top_p 0.5 keeps only the dominant token");
	}
	/* min_p: tokens below min_p * p(best) never drawn */
	{
		float		l2[4] = {0.0f, -1.0f, -10.0f, -0.5f};
		int			bad = 0,
					seen3 = 0;

		r1_sampling_defaults(&s);
		s.temperature = 1.0f;
		s.top_p = 1.0f;
		s.min_p = 0.1f;			/* exp(-1) = 0.37 passes, exp(-10) does not */
		for (int i = 0; i < 2000; i++)
		{
			int			t = r1_sample(l2, 4, &s, i, scratch);

			bad += t == 2;
			seen3 += t == 3;
		}
		is_int(bad, 0, "min_p drops the improbable token");
		ok(seen3 > 0, "min_p keeps the probable ones");
	}
	/* frequencies follow softmax at temperature 1 */
	{
		float		l3[2] = {0.0f, (float) log(3.0)};
		int			c1 = 0;

		r1_sampling_defaults(&s);
		s.temperature = 1.0f;
		s.top_p = 1.0f;
		s.seed = 99;
		for (int i = 0; i < 20000; i++)
			c1 += r1_sample(l3, 2, &s, i, scratch) == 1;
		ok(fabs(c1 / 20000.0 - 0.75) < 0.015, "p(token 1) = %.3f, want 0.75", c1 / 20000.0);
	}
	/* every logit NaN (a broken model): no candidate survives, yet a valid id comes back */
	{
		float		nan_logits[V];
		int			valid = 1;

		for (int i = 0; i < V; i++)
			nan_logits[i] = NAN;
		r1_sampling_defaults(&s);
		s.temperature = 0.7f;
		for (int k = 0; k < 2; k++)
		{
			int32_t		id;

			s.top_p = k == 0 ? 1.0f : 0.9f;
			id = r1_sample(nan_logits, V, &s, 3, scratch);
			valid &= id >= 0 && id < V;
		}
		ok(valid, "all-NaN logits: r1_sample returns an id of the vocabulary (top_p 1 and 0.9)");
	}
	free(scratch);
	return done_testing();
}
