/*
 * client_many.h - many requests to the engine host in flight at once from
 * one backend (r1_reason_many): one connection per request, all
 * non-blocking, multiplexed with a WaitEventSet, so the engine batches them.
 */
#ifndef R1_CLIENT_MANY_H
#define R1_CLIENT_MANY_H

#include "utils/jsonb.h"

typedef struct R1Many R1Many;

/*
 * Prepare n requests (JSON bodies; a NULL body is skipped) with at most
 * `window` of them in flight; the rest are sent as earlier ones finish.
 * Everything lives in the current memory context, which must outlive the
 * calls (an SRF's multi_call_memory_ctx): when that context goes away (end
 * of the query, an error, a cancel) every open connection is closed, which
 * cancels its request in the engine.  Waits for a ready engine first.
 */
extern R1Many *r1_many_start(int n, char **bodies, size_t *lens, int window);

/*
 * Admission control (quotas): when set, admit(index, in_flight, arg) is
 * called before request index is sent.  R1_ADMIT_LATER holds it (and the
 * ones after it) back until one of the in_flight requests finishes (never
 * returned while none is in flight); R1_ADMIT_REFUSE skips it: r1_many_next
 * returns its index with *resp = NULL.
 */
typedef enum R1Admit
{
	R1_ADMIT_SEND,
	R1_ADMIT_LATER,
	R1_ADMIT_REFUSE
} R1Admit;
typedef R1Admit (*R1ManyAdmit) (int index, int in_flight, void *arg);
extern void r1_many_set_admit(R1Many *m, R1ManyAdmit admit, void *arg);

/*
 * Wait for the next request to finish; returns its index and its parsed
 * response (an {"ok":true,...} or {"ok":false,"code":...} object, in the
 * caller's current memory context), or -1 when every request has finished;
 * *resp is NULL for a request the admit callback refused.
 * Interrupts (cancel, statement_timeout) and a host that goes away raise an
 * ERROR.
 */
extern int	r1_many_next(R1Many *m, Jsonb **resp);

#endif							/* R1_CLIENT_MANY_H */
