/*
 * answer_equal.h - are two final answers of a math problem the same?
 *
 * The grading that math benchmarks apply to a model's \boxed{} answer and a
 * reference answer: both are put in a canonical form (whitespace, \left and
 * \right, \dfrac/\tfrac, \text{} units, degrees, percent signs, a leading
 * "x =", thousands separators, trailing periods removed), then compared as
 * numbers when both are numeric expressions (integers exactly, other values
 * within a relative 1e-4, as Qwen2.5-Math's grader does), as sets (any order)
 * or tuples/intervals (in order, same brackets) element by element, and
 * otherwise as canonical strings.
 *
 * Pure C, no PostgreSQL: the extension links it (r1_answers_equal() in SQL)
 * and so does the engine.  Every call does bounded work: inputs over
 * R1_ANSWER_MAX_LEN bytes are compared byte for byte, nesting deeper than a
 * few levels is not looked into, and a budget caps the element comparisons of
 * sets and tuples, so hostile input costs time linear in its length.  Never
 * fails: out of memory reads as "not equal" unless the bytes are equal.
 */
#ifndef R1_ANSWER_EQUAL_H
#define R1_ANSWER_EQUAL_H

#include <stddef.h>

#define R1_ANSWER_MAX_LEN	16384	/* longer answers are compared byte for
									 * byte */

/* 1 when a and b (UTF-8, not NUL-terminated) are the same answer, else 0. */
int			r1_answers_equal(const char *a, size_t a_len, const char *b, size_t b_len);

/*
 * The canonical form used for the string comparison (malloc'd, NULL when out
 * of memory or too long): for tests and for grouping answers in a vote.
 */
char	   *r1_answer_normalize(const char *s, size_t len);

#endif							/* R1_ANSWER_EQUAL_H */
