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

#endif							/* R1_REASONING_H */
