/*
 * reasoning.h - reasoning-aware settings shared by the SQL functions that
 * generate: loop detection (r1.repetition_*), and the voting functions
 * (vote.c).
 */
#ifndef R1_REASONING_H
#define R1_REASONING_H

#include "lib/stringinfo.h"

/* settings (loop detection, src/engine/repetition.h) */
extern int	r1_repetition_max_span;
extern int	r1_repetition_min_repeats;
extern int	r1_repetition_min_tokens;

/* _PG_init: define r1.repetition_*. */
extern void r1_reasoning_define_gucs(void);

/*
 * The loop-detection members of a generate request, or "" when the settings
 * are the engine's defaults (so requests and traces stay as they were):
 * e.g. "\"repetition_max_span\":0,...", without a leading comma (palloc'd).
 */
extern char *r1_repetition_params(void);

/* Add them to a request being built: ",..." when not the defaults. */
extern void r1_append_repetition_params(StringInfo req);

/* extra_params of a trace: base (may be NULL) plus the loop-detection members. */
extern const char *r1_trace_extra_params(const char *base);

#endif							/* R1_REASONING_H */
