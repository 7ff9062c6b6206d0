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
 * Wait for the next request to finish; returns its index and its parsed
 * response (an {"ok":true,...} or {"ok":false,"code":...} object, in the
 * caller's current memory context), or -1 when every request has finished.
 * Interrupts (cancel, statement_timeout) and a host that goes away raise an
 * ERROR.
 */
extern int	r1_many_next(R1Many *m, Jsonb **resp);

#endif							/* R1_CLIENT_MANY_H */
