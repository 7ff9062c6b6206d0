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
