/*
 * activity.h - what each backend's engine request is doing (r1.stat_activity)
 * and cumulative counters (r1.stats), both in shared memory.
 */
#ifndef R1_ACTIVITY_H
#define R1_ACTIVITY_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

/* shared memory (shmem.h says when) */
extern void r1_activity_shmem_request(void);
extern void r1_activity_shmem_init(void);

/*
 * One generate request of this backend, observed: req is the complete JSON
 * request object; a "tag" member is added, the request shows in
 * r1.stat_activity while it waits or runs (prompt: its text for the view, in
 * UTF-8), and its outcome, latency and tokens are counted in r1.stats.
 * Returns the response like r1_call() and raises the same errors.  One
 * request at a time per backend.
 */
extern Jsonb *r1_observed_call(StringInfo req, const char *prompt, size_t prompt_len);

/* For callers that run requests another way (several at once): count one outcome. */
typedef enum R1Outcome
{
	R1_OUTCOME_COMPLETED,
	R1_OUTCOME_ERROR,
	R1_OUTCOME_CANCELLED,
	R1_OUTCOME_TIMEOUT
} R1Outcome;

extern void r1_stats_count_request(void);
extern void r1_stats_count_outcome(R1Outcome outcome, double ms, int64 prompt_tokens,
								   int64 completion_tokens);

/* A completed response: counts finish_reason 'repetition' (loop detection). */
extern void r1_stats_count_finish(Jsonb *resp);

#endif							/* R1_ACTIVITY_H */
