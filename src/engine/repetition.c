/*
 * repetition.c - loop detection over generated ids (repetition.h).
 */
#include "repetition.h"

#include <stdlib.h>

void
r1_repetition_defaults(r1_repetition_opts *o)
{
	o->max_span = R1_REPETITION_MAX_SPAN;
	o->min_repeats = R1_REPETITION_MIN_REPEATS;
	o->min_tokens = R1_REPETITION_MIN_TOKENS;
}

int
r1_repetition_validate(const r1_repetition_opts *o, r1_error *err)
{
	if (o->max_span < 0 || o->max_span > R1_REPETITION_SPAN_LIMIT)
		return r1_fail(err, "repetition_max_span must be in [0, %d] (0 = no loop detection), got %d",
					   R1_REPETITION_SPAN_LIMIT, o->max_span);
	if (o->max_span == 0)
		return 0;
	if (o->min_repeats < 2)
		return r1_fail(err, "repetition_min_repeats must be at least 2, got %d", o->min_repeats);
	if (o->min_tokens < 1)
		return r1_fail(err, "repetition_min_tokens must be at least 1, got %d", o->min_tokens);
	return 0;
}

int
r1_repdet_init(r1_repdet *d, const r1_repetition_opts *o, r1_error *err)
{
	d->o = *o;
	d->run = NULL;
	if (o->max_span <= 0)
	{
		d->o.max_span = 0;
		return 0;
	}
	if (r1_repetition_validate(o, err) != 0)
		return -1;
	d->run = r1_calloc((size_t) o->max_span + 1, sizeof(int), err);
	return d->run ? 0 : -1;
}

void
r1_repdet_free(r1_repdet *d)
{
	free(d->run);
	d->run = NULL;
	d->o.max_span = 0;
}

int
r1_repdet_push(r1_repdet *d, const int32_t *ids, int n)
{
	int32_t		t;
	int			top,
				hit = 0;

	if (d->o.max_span == 0 || n < 2)
		return 0;
	t = ids[n - 1];
	top = d->o.max_span < n - 1 ? d->o.max_span : n - 1;
	for (int L = 1; L <= top; L++)
	{
		int			r = ids[n - 1 - L] == t ? d->run[L] + 1 : 0;
		long		need = (long) d->o.min_repeats * L;

		d->run[L] = r;
		if (need < d->o.min_tokens)
			need = d->o.min_tokens;
		if (!hit && (long) r + L >= need)
			hit = L;
	}
	return hit;
}
