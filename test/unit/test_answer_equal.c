/*
 * test_answer_equal.c - r1_answers_equal(): a table of equivalent and
 * non-equivalent answer pairs, symmetry, and bounded work on hostile input.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "answer_equal.h"
#include "tap.h"

static const struct
{
	const char *a;
	const char *b;
	int			eq;
}			cases[] = {
	/* identical and whitespace */
	{"42", "42", 1},
	{" 42 ", "42", 1},
	{"x + 1", "x+1", 1},
	{"\\frac{1}{2}", "\\frac {1} {2}", 1},
	{"2\\,000", "2000", 1},
	{"$42$", "42", 1},
	{"\\boxed{42}", "42", 1},
	/* \left \right */
	{"\\left(1, 2\\right)", "(1,2)", 1},
	{"\\left[0, 1\\right)", "[0,1)", 1},
	{"\\left\\{1,2\\right\\}", "\\{1,2\\}", 1},
	{"\\left. x \\right|", "x|", 1},
	{"\\leftarrow", "\\arrow", 0},
	/* fractions */
	{"\\dfrac{1}{2}", "\\frac{1}{2}", 1},
	{"\\tfrac{3}{4}", "3/4", 1},
	{"\\frac12", "\\frac{1}{2}", 1},
	{"\\frac{1}{2}", "1/2", 1},
	{"\\frac{x}{2}", "x/2", 1},
	{"\\dfrac{x}{y}", "x/y", 1},
	{"-\\frac{1}{3}", "\\frac{-1}{3}", 1},
	{"\\frac{2}{4}", "\\frac{1}{2}", 1},
	{"\\frac{1}{3}", "\\frac{1}{4}", 0},
	{"\\frac{x}{2}", "x/3", 0},
	/* numbers */
	{"0.5", "\\frac{1}{2}", 1},
	{"0.5", "1/2", 1},
	{".5", "0.5", 1},
	{"5.0", "5", 1},
	{"5.00", "5", 1},
	{"007", "7", 1},
	{"-0", "0", 1},
	{"0.3333333", "\\frac{1}{3}", 1},
	{"0.33", "\\frac{1}{3}", 0},
	{"3.14159", "\\pi", 1},
	{"3.14", "\\pi", 0},
	{"2\\sqrt{2}", "\\sqrt{8}", 1},
	{"\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", 1},
	{"\\frac{\\sqrt{3}}{2}", "0.8660254", 1},
	{"2^{10}", "1024", 1},
	{"2^3", "8", 1},
	{"10^{-2}", "0.01", 1},
	{"3 \\cdot 4", "12", 1},
	{"3 \\times 4", "12", 1},
	{"6 \\div 3", "2", 1},
	{"1+1", "2", 1},
	{"(2)", "2", 1},
	{"-5", "5", 0},
	{"12", "13", 0},
	{"123456", "123457", 0},
	{"100000000000000000001", "100000000000000000000", 0},
	{"100000000000000000001", "100000000000000000001", 1},
	{"1e5", "100000", 0},
	{"0", "0.0", 1},
	{"\\sqrt[3]{8}", "2", 1},
	{"\\frac{1}{0}", "\\frac{1}{0}", 1},
	{"\\frac{1}{0}", "\\frac{2}{0}", 0},
	/* thousands separators */
	{"1,000", "1000", 1},
	{"1,000,000", "1000000", 1},
	{"12,345.5", "12345.5", 1},
	{"1{,}000", "1000", 1},
	{"-1,234", "-1234", 1},
	{"1,000", "1", 0},
	{"10,00", "1000", 0},
	/* units */
	{"5 \\text{ cm}", "5", 1},
	{"5\\text{cm}^2", "5", 1},
	{"10 \\text{ meters}", "10", 1},
	{"12 \\mbox{ inches}", "12", 1},
	{"\\$5", "5", 1},
	{"5 \\text{ cm}", "6", 0},
	{"\\text{(A)}", "A", 1},
	{"(B)", "B", 1},
	{"\\textbf{C}", "C", 1},
	{"(A)", "B", 0},
	{"\\text{Yes}", "Yes", 1},
	{"\\text{yes}", "\\text{no}", 0},
	/* degrees and percent */
	{"90^\\circ", "90", 1},
	{"90^{\\circ}", "90", 1},
	{"45\xc2\xb0", "45", 1},
	{"30\\degree", "30", 1},
	{"50\\%", "50", 1},
	{"50%", "50", 1},
	{"50\\%", "0.5", 0},
	{"60^\\circ", "90^\\circ", 0},
	/* leading x = */
	{"x = 5", "5", 1},
	{"x=\\frac{1}{2}", "0.5", 1},
	{"y = 2x + 3", "2x+3", 1},
	{"x_1 = 4", "4", 1},
	{"\\theta = 30^\\circ", "30", 1},
	{"x = 5", "x = 6", 0},
	{"a+b=5", "5", 0},
	/* trailing periods */
	{"42.", "42", 1},
	{"42...", "42", 1},
	{"\\text{Paris}.", "Paris", 1},
	/* sets: any order */
	{"\\{1, 2, 3\\}", "\\{3, 2, 1\\}", 1},
	{"\\{1,2\\}", "\\{1,3\\}", 0},
	{"\\{1,2\\}", "\\{1,2,3\\}", 0},
	{"\\{\\frac{1}{2}, 2\\}", "\\{2, 0.5\\}", 1},
	{"\\{1,1,2\\}", "\\{1,2,2\\}", 0},
	{"1, 2", "2, 1", 1},
	{"x = 2, 3", "3, 2", 1},
	{"2 \\text{ and } 3", "3, 2", 1},
	{"-1, 4", "4, -1", 1},
	{"-1, 4", "4, 1", 0},
	{"\\{1, 2\\}", "1, 2", 1},
	/* tuples and intervals: in order, same brackets */
	{"(1, 2)", "(1,2)", 1},
	{"(1, 2)", "(2, 1)", 0},
	{"(\\frac{1}{2}, 3)", "(0.5, 3)", 1},
	{"[0, 1]", "[0,1]", 1},
	{"[0, 1]", "(0, 1)", 0},
	{"[0, 1)", "[0, 1]", 0},
	{"(-\\infty, 2]", "(-\\infty,2]", 1},
	{"(1,2)", "\\{1,2\\}", 0},
	{"((1,2),(3,4))", "((1, 2), (3, 4))", 1},
	{"\\{(1,2),(3,4)\\}", "\\{(3,4),(1,2)\\}", 1},
	{"\\{(1,2),(3,4)\\}", "\\{(4,3),(1,2)\\}", 0},
	{"x=1, y=2", "(1, 2)", 1},
	/* symbols and words */
	{"\\infty", "\\infty", 1},
	{"\\emptyset", "\\varnothing", 1},
	{"x \\leq 3", "x\\le3", 1},
	{"x \\geq 3", "x \\le 3", 0},
	{"\\sqrt{2}", "\\sqrt2", 1},
	{"\\sqrt{2}", "\\sqrt{3}", 0},
	{"\\pi", "\\pi", 1},
	{"2\\pi", "\\pi", 0},
	{"abc", "abd", 0},
	{"A", "a", 0},
	{"", "", 1},
	{"", "0", 0},
	{"\\frac{1}{2", "\\frac{1}{2}", 0},
	{"((", "((", 1},
	{"((", "(", 0},
	{"}", "{", 0},
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *
repeat(const char *unit, int times, const char *tail)
{
	size_t		ul = strlen(unit),
				tl = strlen(tail);
	char	   *s = malloc(ul * times + tl + 1);

	for (int i = 0; i < times; i++)
		memcpy(s + ul * i, unit, ul);
	memcpy(s + ul * times, tail, tl + 1);
	return s;
}

int
main(void)
{
	int			n = (int) (sizeof(cases) / sizeof(cases[0]));
	int			n_eq = 0,
				n_ne = 0;

	for (int i = 0; i < n; i++)
	{
		const char *a = cases[i].a,
				   *b = cases[i].b;
		int			ab = r1_answers_equal(a, strlen(a), b, strlen(b));
		int			ba = r1_answers_equal(b, strlen(b), a, strlen(a));

		if (!ok(ab == cases[i].eq, "%s \"%s\" and \"%s\"", cases[i].eq ? "equal:" : "differ:", a, b))
		{
			char	   *na = r1_answer_normalize(a, strlen(a)),
					   *nb = r1_answer_normalize(b, strlen(b));

			diag("  normalized \"%s\" and \"%s\"", na ? na : "(null)", nb ? nb : "(null)");
			free(na);
			free(nb);
		}
		ok(ab == ba, "symmetric: \"%s\" and \"%s\"", a, b);
		if (cases[i].eq)
			n_eq++;
		else
			n_ne++;
	}
	ok(n >= 100, "the table has %d pairs (%d equal, %d not)", n, n_eq, n_ne);

	/* hostile input: bounded work, no crash */
	{
		struct
		{
			char	   *a,
					   *b;
			const char *name;
		}			h[6];
		double		t0 = now_s();

		h[0].a = repeat("(", 20000, "1");
		h[0].b = repeat("(", 20000, "2");
		h[0].name = "deep parentheses";
		h[1].a = repeat("1,", R1_ANSWER_MAX_LEN / 2 - 1, "1");
		h[1].b = repeat("2,", R1_ANSWER_MAX_LEN / 2 - 1, "1");
		h[1].name = "a long bare list";
		h[2].a = repeat("\\{(", 2000, "");
		h[2].b = repeat("\\{(", 2000, "x");
		h[2].name = "unclosed nested sets";
		h[3].a = repeat("\\frac{", 3000, "1");
		h[3].b = repeat("\\frac{", 3000, "2");
		h[3].name = "unclosed fractions";
		h[4].a = repeat("x", 1 << 20, "");
		h[4].b = repeat("x", 1 << 20, "y");
		h[4].name = "a megabyte";
		h[5].a = repeat("(1,(1,(1,(1,", 1000, "");
		h[5].b = repeat("(1,(1,(1,(1,", 1000, "");
		h[5].b[3] = '2';
		h[5].name = "nested tuples";
		for (int i = 0; i < 6; i++)
		{
			ok(!r1_answers_equal(h[i].a, strlen(h[i].a), h[i].b, strlen(h[i].b)), "hostile: %s differ", h[i].name);
			ok(r1_answers_equal(h[i].a, strlen(h[i].a), h[i].a, strlen(h[i].a)), "hostile: %s equal itself", h[i].name);
			free(h[i].a);
			free(h[i].b);
		}
		{
			/* many nested sets of many elements: the budget stops the pairing */
			char	   *a = repeat("\\{1,2,3,4,5,6,7,8,", 400, "9\\}"),
					   *b = repeat("\\{8,7,6,5,4,3,2,1,", 400, "0\\}");

			ok(!r1_answers_equal(a, strlen(a), b, strlen(b)), "hostile: wide sets differ");
			free(a);
			free(b);
		}
		ok(now_s() - t0 < 5.0, "hostile inputs took %.3f s", now_s() - t0);
	}
	{
		/* an embedded NUL is compared byte for byte */
		ok(!r1_answers_equal("1\0" "2", 3, "1", 1), "embedded NUL: not truncated");
		ok(r1_answers_equal("1\0" "2", 3, "1\0" "2", 3), "embedded NUL: equal bytes");
	}
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
