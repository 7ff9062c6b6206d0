/* test_chat.c - prompt template, think/answer split, \boxed extraction, UTF-8 check. */
#include <stdlib.h>

#include "chat.h"
#include "tap.h"

static void
split_case(const char *text, const char *think, const char *answer, const char *name)
{
	char	   *t,
			   *a;
	r1_error	err;

	ok(r1_split_think(text, &t, &a, &err) == 0, "%s: split", name);
	is_str(t, think, "%s: think", name);
	if (answer)
		is_str(a, answer, "%s: answer", name);
	else
		ok(a == NULL, "%s: no answer", name);
	free(t);
	free(a);
}

static void
boxed_case(const char *text, const char *want, const char *name)
{
	char	   *b = r1_extract_boxed(text);

	if (want)
		is_str(b, want, "%s", name);
	else
		ok(b == NULL, "%s: none", name);
	free(b);
}

/*
 * The definition, slowly: for every \boxed (and spaces) then "{", scan forward
 * from it with a depth count, a backslash escaping the next character; the
 * last one that closes wins.  Quadratic; the reference for random texts.
 */
static char *
boxed_reference(const char *text)
{
	size_t		len = strlen(text);
	size_t		best_start = 0,
				best_end = 0;
	int			have = 0;
	char	   *out;

	for (size_t q = 0; q + 6 <= len; q++)
	{
		size_t		b = q + 6,
					e;
		int			depth = 1;

		if (memcmp(text + q, "\\boxed", 6) != 0)
			continue;
		while (b < len && text[b] == ' ')
			b++;
		if (b >= len || text[b] != '{')
			continue;
		for (e = b + 1; e < len; e++)
		{
			if (text[e] == '\\' && e + 1 < len)
			{
				e++;
				continue;
			}
			if (text[e] == '{')
				depth++;
			else if (text[e] == '}' && --depth == 0)
				break;
		}
		if (depth == 0)
		{
			have = 1;
			best_start = b + 1;
			best_end = e;
		}
	}
	if (!have)
		return NULL;
	out = malloc(best_end - best_start + 1);
	memcpy(out, text + best_start, best_end - best_start);
	out[best_end - best_start] = '\0';
	return out;
}

static void
test_boxed_random(void)
{
	static const char *const parts[] = {"\\boxed", "{", "}", "\\", " ", "x", "\\{", "\\}", "\\\\"};
	unsigned	seed = 12345;
	int			bad = 0;

	for (int t = 0; t < 20000; t++)
	{
		char		text[256];
		size_t		n = 0;
		int			k = 1 + (int) ((seed = seed * 1103515245u + 12345u) >> 16) % 24;
		char	   *a,
				   *b;

		for (int i = 0; i < k; i++)
		{
			const char *p = parts[((seed = seed * 1103515245u + 12345u) >> 16) % 9];

			memcpy(text + n, p, strlen(p));
			n += strlen(p);
		}
		text[n] = '\0';
		a = r1_extract_boxed(text);
		b = boxed_reference(text);
		if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
		{
			if (bad++ == 0)
				diag("differs on \"%s\": \"%s\" vs reference \"%s\"", text, a ? a : "(null)", b ? b : "(null)");
		}
		free(a);
		free(b);
	}
	ok(bad == 0, "r1_extract_boxed agrees with the quadratic definition on 20000 random texts (%d differ)", bad);
}

/* 200,000 openers: linear, so this takes milliseconds (it took minutes) */
static void
test_boxed_many_openers(void)
{
	size_t		n = 200000;
	char	   *text = malloc(n * 7 + 32);
	char	   *b;

	for (size_t i = 0; i < n; i++)
		memcpy(text + i * 7, "\\boxed{", 7);
	text[n * 7] = '\0';
	b = r1_extract_boxed(text);
	ok(b == NULL, "200,000 unclosed openers: no box");
	free(b);
	strcpy(text + n * 7, "42}");
	b = r1_extract_boxed(text);
	is_str(b, "42", "200,000 openers, the last one closed");
	free(b);
	free(text);
}

int
main(void)
{
	r1_error	err;
	char	   *p = r1_chat_prompt(NULL, "What is 6*7?", &err);

	is_str(p, "<｜begin▁of▁sentence｜><｜User｜>What is 6*7?<｜Assistant｜><think>\n", "template without system");
	free(p);
	p = r1_chat_prompt("Be brief.", "Hi", &err);
	is_str(p, "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜><think>\n", "template with system");
	free(p);

	split_case("Let me think.\n</think>\n\nThe answer is 42.", "Let me think.", "The answer is 42.", "plain");
	split_case("<think>\nhmm\n</think>\nok", "hmm", "ok", "leading <think> trimmed");
	split_case("cut off in the middle of thinking", "cut off in the middle of thinking", NULL, "no </think>");
	split_case("</think>answer", "", "answer", "empty think");
	split_case("a</think>b</think>c", "a", "b</think>c", "first </think> splits");

	boxed_case("so \\boxed{42}.", "42", "simple");
	boxed_case("\\boxed{1} then \\boxed{2}", "2", "last one wins");
	boxed_case("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}", "nested braces");
	boxed_case("\\boxed{a{b{c}}d}", "a{b{c}}d", "deeply nested");
	boxed_case("\\boxed{\\{x\\}}", "\\{x\\}", "escaped braces are content");
	boxed_case("\\boxed{2} and \\boxed{unclosed", "2", "unclosed last one ignored");
	boxed_case("no box here", NULL, "no box");
	boxed_case("\\boxed {7}", "7", "space before brace");
	boxed_case("\\boxed{a\\\\}", "a\\\\", "\\\\ is an escaped backslash: the brace after it closes");
	boxed_case("\\boxed{a\\\\\\}}", "a\\\\\\}", "\\\\ then \\}: content");
	boxed_case("\\boxed{1} \\boxed{{}", "1", "an opener whose closer is taken");
	boxed_case("}}\\boxed{x}{", "x", "stray braces around");
	boxed_case("\\\\boxed{5}", "5", "\\boxed after a backslash still counts");
	test_boxed_random();
	test_boxed_many_openers();

	ok(r1_utf8_valid("abc", 3), "ascii valid");
	ok(r1_utf8_valid("数学", 6), "CJK valid");
	ok(r1_utf8_valid("\xf0\x9f\x98\x80", 4), "emoji valid");
	ok(!r1_utf8_valid("\xe6\x95", 2), "truncated character invalid");
	ok(!r1_utf8_valid("\xc0\xaf", 2), "overlong invalid");
	ok(!r1_utf8_valid("\xed\xa0\x80", 3), "surrogate invalid");
	ok(!r1_utf8_valid("\xf4\x90\x80\x80", 4), "above U+10FFFF invalid");
	ok(!r1_utf8_valid("\xff", 1), "0xff invalid");
	return done_testing();
}
