/*
 * repetition.h - loop detection over a sequence's generated token ids.
 *
 * The distilled models fall into loops (the same sentence or paragraph over
 * and over), most at low temperature.  A detector watches the generated ids
 * and reports when their tail is periodic: a span of L tokens (1 <= L <=
 * max_span) repeated at least min_repeats times back to back, covering at
 * least min_tokens tokens.  The engine then stops the sequence with
 * finish_reason "repetition" instead of letting it run to max_tokens.
 *
 * Cost: O(max_span) per generated token and max_span ints per sequence; for
 * every period L the detector keeps how many consecutive tokens equal the
 * token L before them, so the periodic tail of period L is that count + L.
 */
#ifndef R1_REPETITION_H
#define R1_REPETITION_H

#include <stdint.h>

#include "util.h"

/* conservative defaults (r1.repetition_*, r1 generate --repetition-*) */
#define R1_REPETITION_MAX_SPAN		512
#define R1_REPETITION_MIN_REPEATS	4
#define R1_REPETITION_MIN_TOKENS	256
#define R1_REPETITION_SPAN_LIMIT	8192	/* largest max_span accepted */

typedef struct r1_repetition_opts
{
	int			max_span;		/* longest period looked for; 0 turns
								 * detection off */
	int			min_repeats;	/* >= 2: copies of the span back to back */
	int			min_tokens;		/* >= 1: tokens the periodic tail must cover */
} r1_repetition_opts;

typedef struct r1_repdet
{
	r1_repetition_opts o;
	int		   *run;			/* [max_span + 1]: run[L] = tokens equal to
								 * the one L before */
} r1_repdet;

/* the defaults above */
void		r1_repetition_defaults(r1_repetition_opts *o);

/* 0, or -1 with a message naming the bad value */
int			r1_repetition_validate(const r1_repetition_opts *o, r1_error *err);

/* max_span 0: an inactive detector (push always returns 0) */
int			r1_repdet_init(r1_repdet *d, const r1_repetition_opts *o, r1_error *err);
void		r1_repdet_free(r1_repdet *d);

/*
 * ids[n - 1] was just generated (ids[0..n) is everything generated so far).
 * Returns the period L of a loop that meets the thresholds, else 0.
 */
int			r1_repdet_push(r1_repdet *d, const int32_t *ids, int n);

#endif							/* R1_REPETITION_H */
