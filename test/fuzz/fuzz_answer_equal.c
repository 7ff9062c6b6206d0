/*
 * fuzz_answer_equal.c - r1_answers_equal and r1_answer_normalize on
 * arbitrary bytes: the input is split at its first newline into two answers.
 *
 * Checks: no crash or sanitizer report within the time limit (the work is
 * bounded), every answer equals itself, and the canonical form is at most
 * twice as long as the answer.
 */
#include "answer_equal.h"
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *) data;
	const char *nl = memchr(s, '\n', size);
	size_t		al = nl ? (size_t) (nl - s) : size;
	const char *b = nl ? nl + 1 : s;
	size_t		bl = nl ? size - al - 1 : size;
	char	   *n;

	(void) r1_answers_equal(s, al, b, bl);
	FUZZ_CHECK(r1_answers_equal(s, al, s, al) == 1, "an answer differs from itself");
	n = r1_answer_normalize(s, al);
	if (n)
	{
		FUZZ_CHECK(strlen(n) <= 2 * al, "canonical form of %zu bytes from %zu", strlen(n), al);
		free(n);
	}
	return 0;
}
