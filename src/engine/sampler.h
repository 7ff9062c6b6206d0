/*
 * sampler.h - choosing the next token from logits: temperature, top-k, top-p,
 * min-p, greedy at temperature 0.  Randomness is counter-based: the uniform
 * number for a draw is a pure function of (seed, position), so a seeded
 * request gives the same tokens whatever else shares the batch.
 */
#ifndef R1_SAMPLER_H
#define R1_SAMPLER_H

#include <stdint.h>

#include "util.h"

typedef struct r1_sampling
{
	float		temperature;	/* 0 = greedy; default 0.6 */
	float		top_p;			/* (0, 1]; default 0.95 */
	int			top_k;			/* 0 = off */
	float		min_p;			/* [0, 1); 0 = off */
	uint64_t	seed;
} r1_sampling;

#define R1_DEFAULT_TEMPERATURE 0.6f
#define R1_DEFAULT_TOP_P 0.95f

void		r1_sampling_defaults(r1_sampling *s);
int			r1_sampling_validate(const r1_sampling *s, r1_error *err);

/* Uniform double in [0, 1) from (seed, counter): Philox-4x32-10. */
double		r1_rng_uniform(uint64_t seed, uint64_t counter);

/* The index of the largest logit (lowest index on ties). */
int32_t		r1_argmax(const float *logits, int n);

/*
 * Sample from logits[n] for the token at `position`.  scratch must hold
 * 2*n floats' worth (r1_sampler_scratch_size bytes).
 */
size_t		r1_sampler_scratch_size(int n);
int32_t		r1_sample(const float *logits, int n, const r1_sampling *s, uint64_t position,
					  void *scratch);

#endif							/* R1_SAMPLER_H */
