/*
 * answer_equal.c - grading a final answer against another (answer_equal.h).
 *
 * Two steps.  r1_answer_normalize() rewrites an answer in passes, each one
 * linear in its length: drop whitespace, LaTeX spacing and $; drop \left,
 * \right, degree signs and percent signs; \dfrac and \tfrac become \frac;
 * trailing \text{} units go, other \text{X} become X; a leading "x =" goes;
 * trailing periods go; \frac12 becomes \frac{1}{2}; \frac{a}{b} of plain
 * atoms becomes a/b; thousands separators go.  Then equal() compares the two
 * canonical forms: the same string; else both numeric expressions (numbers,
 * + - * / ^, \frac, \sqrt, \pi, \cdot, \times, parentheses) of equal value;
 * else both sets, tuples, intervals or bare comma lists with equal elements
 * (sets and bare lists in any order).
 *
 * Bounds: R1_ANSWER_MAX_LEN bytes per input, R1_AE_MAX_DEPTH levels of
 * nested lists, R1_AE_MAX_ITEMS elements per list, R1_AE_EXPR_DEPTH levels of
 * expression nesting, and a budget of bytes looked at per call.
 */
#include "answer_equal.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define R1_AE_MAX_DEPTH		8	/* nested lists looked into */
#define R1_AE_MAX_ITEMS		256 /* elements of one set or tuple */
#define R1_AE_EXPR_DEPTH	64	/* nesting of a numeric expression */
#define R1_AE_BUDGET		(4L << 20)	/* bytes normalised per top-level call */
#define R1_AE_REL_TOL		1e-4	/* relative tolerance of non-integer
									 * values */

/* ---- helpers ---- */

static int
at(const char *s, size_t i, const char *lit)
{
	return strncmp(s + i, lit, strlen(lit)) == 0;
}

static int
is_letter(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * Index just past the brace group that opens at s[i] == '{' (unescaped
 * braces counted), or 0 when it does not close.
 */
static size_t
group_end(const char *s, size_t n, size_t i)
{
	int			depth = 0;

	for (size_t k = i; k < n; k++)
	{
		if (s[k] == '\\' && k + 1 < n)
		{
			k++;
			continue;
		}
		if (s[k] == '{')
			depth++;
		else if (s[k] == '}' && --depth == 0)
			return k + 1;
	}
	return 0;
}

/* ---- normalisation passes (in place unless said otherwise) ---- */

/* whitespace, $ and \$ (a dollar unit), ~ and LaTeX spacing commands */
static size_t
pass_space(char *s, size_t n)
{
	size_t		w = 0;

	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (isspace(c) || c == '$' || c == '~')
			continue;
		if (c == '\\' && i + 1 < n && strchr(",;:! $", s[i + 1]) && s[i + 1] != '\0')
		{
			i++;
			continue;
		}
		if (c == '\\' && (at(s, i, "\\qquad") || at(s, i, "\\quad")) &&
			!is_letter(s[i + (at(s, i, "\\qquad") ? 6 : 5)]))
		{
			i += at(s, i, "\\qquad") ? 5 : 4;
			continue;
		}
		if (c == '\\' && (at(s, i, "\\displaystyle") || at(s, i, "\\textstyle")) &&
			!is_letter(s[i + (at(s, i, "\\displaystyle") ? 13 : 10)]))
		{
			i += at(s, i, "\\displaystyle") ? 12 : 9;
			continue;
		}
		s[w++] = s[i];
	}
	s[w] = '\0';
	return w;
}

/* replacements that never lengthen the text */
static const struct
{
	const char *from;
	const char *to;
	int			word;			/* a command: not followed by a letter */
}			r1_ae_subst[] = {
	{"^{\\circ}", "", 0},
	{"^\\circ", "", 0},
	{"\\circ", "", 1},
	{"\\degree", "", 1},
	{"\xc2\xb0", "", 0},		/* ° */
	{"\\%", "", 0},
	{"%", "", 0},
	{"{,}", ",", 0},
	{"\\dfrac", "\\frac", 1},
	{"\\tfrac", "\\frac", 1},
	{"\\cfrac", "\\frac", 1},
	{"\\leq", "\\le", 1},
	{"\\geq", "\\ge", 1},
	{"\\varnothing", "\\emptyset", 1},
	{"\\lbrace", "\\{", 1},
	{"\\rbrace", "\\}", 1},
	{"\\infin", "\\infty", 1},
};

static size_t
pass_subst(char *s, size_t n)
{
	size_t		w = 0;

	for (size_t i = 0; i < n;)
	{
		int			done = 0;

		/* \left( \right) \left. \right.: keep the delimiter, drop a "." one */
		if (s[i] == '\\' && (at(s, i, "\\left") || at(s, i, "\\right")))
		{
			size_t		k = i + (at(s, i, "\\left") ? 5 : 6);

			if (!is_letter(s[k]))
			{
				i = s[k] == '.' ? k + 1 : k;
				continue;
			}
		}
		for (size_t t = 0; t < sizeof(r1_ae_subst) / sizeof(r1_ae_subst[0]); t++)
		{
			size_t		fl = strlen(r1_ae_subst[t].from);
			size_t		tl = strlen(r1_ae_subst[t].to);

			if (s[i] == r1_ae_subst[t].from[0] && at(s, i, r1_ae_subst[t].from) &&
				!(r1_ae_subst[t].word && is_letter(s[i + fl])))
			{
				memmove(s + w, r1_ae_subst[t].to, tl);
				w += tl;
				i += fl;
				done = 1;
				break;
			}
		}
		if (!done)
			s[w++] = s[i++];
	}
	s[w] = '\0';
	return w;
}

static const char *const r1_ae_text_cmds[] = {
	"\\text{", "\\textbf{", "\\textrm{", "\\textit{", "\\mathrm{", "\\mathbf{", "\\mbox{",
	"\\textnormal{", "\\boxed{", "\\fbox{"
};

/* length of the text command starting at s[i] up to its '{', or 0 */
static size_t
text_cmd_at(const char *s, size_t i)
{
	if (s[i] != '\\')
		return 0;
	for (size_t t = 0; t < sizeof(r1_ae_text_cmds) / sizeof(r1_ae_text_cmds[0]); t++)
		if (at(s, i, r1_ae_text_cmds[t]))
			return strlen(r1_ae_text_cmds[t]) - 1;
	return 0;
}

/* index past an exponent "^2" or "^{2}" at s[i], or i when none */
static size_t
skip_exponent(const char *s, size_t n, size_t i)
{
	if (i < n && s[i] == '^')
	{
		if (i + 1 < n && s[i + 1] == '{')
		{
			size_t		e = group_end(s, n, i + 1);

			return e ? e : i;
		}
		if (i + 1 < n && is_digit(s[i + 1]))
			return i + 2;
	}
	return i;
}

static int
is_conjunction(const char *s, size_t len)
{
	return (len == 3 && strncmp(s, "and", 3) == 0) || (len == 2 && strncmp(s, "or", 2) == 0);
}

/*
 * Units: \text{...} groups (with an exponent) at the end go when something
 * comes before them.  Then every \text{X} becomes X ("and"/"or" a comma).
 */
static size_t
pass_text(char *s, size_t n)
{
	size_t		w = 0;

	for (int round = 0; round < 4; round++)
	{
		size_t		last = (size_t) -1;

		for (size_t i = 0; i < n; i++)
		{
			size_t		cl = text_cmd_at(s, i);
			size_t		e;

			if (!cl || (e = group_end(s, n, i + cl)) == 0)
				continue;
			if (skip_exponent(s, n, e) == n && i > 0 &&
				!is_conjunction(s + i + cl + 1, e - i - cl - 2) &&
				strncmp(s + i, "\\boxed", 6) != 0 && strncmp(s + i, "\\fbox", 5) != 0)
				last = i;
			i = e - 1;
		}
		if (last == (size_t) -1)
			break;
		n = last;
		s[n] = '\0';
	}
	for (size_t i = 0; i < n;)
	{
		size_t		cl = text_cmd_at(s, i);
		size_t		e;

		if (cl && (e = group_end(s, n, i + cl)) != 0)
		{
			const char *in = s + i + cl + 1;
			size_t		len = e - i - cl - 2;

			if (is_conjunction(in, len))
				s[w++] = ',';
			else
			{
				memmove(s + w, in, len);
				w += len;
			}
			i = e;
		}
		else
			s[w++] = s[i++];
	}
	s[w] = '\0';
	return w;
}

/* a leading "x=", "x_1=", "\theta=" (one variable, then the value) */
static size_t
pass_lhs(char *s, size_t n)
{
	size_t		i = 0;

	if (n > 0 && is_letter(s[0]))
		i = 1;
	else if (n > 1 && s[0] == '\\' && is_letter(s[1]))
	{
		i = 1;
		while (i < n && is_letter(s[i]))
			i++;
		if (i - 1 > 8 || at(s, 0, "\\frac") || at(s, 0, "\\sqrt") || at(s, 0, "\\pi"))
			return n;
	}
	else
		return n;
	if (i < n && s[i] == '_')
	{
		if (i + 1 < n && s[i + 1] == '{')
		{
			size_t		e = group_end(s, n, i + 1);

			if (!e)
				return n;
			i = e;
		}
		else if (i + 1 < n)
			i += 2;
	}
	if (i < n && s[i] == '=' && i + 1 < n && s[i + 1] != '=')
	{
		memmove(s, s + i + 1, n - i);
		return n - i - 1;
	}
	return n;
}

/* \frac12 -> \frac{1}{2}, \sqrt2 -> \sqrt{2}; out must hold 2n + 1 bytes */
static size_t
pass_brace_args(const char *s, size_t n, char *out)
{
	size_t		w = 0;

	for (size_t i = 0; i < n;)
	{
		int			args = 0;

		if (at(s, i, "\\frac") && !is_letter(s[i + 5]))
			args = 2;
		else if (at(s, i, "\\sqrt") && !is_letter(s[i + 5]))
			args = 1;
		if (!args)
		{
			out[w++] = s[i++];
			continue;
		}
		memcpy(out + w, s + i, 5);
		w += 5;
		i += 5;
		for (int a = 0; a < args && i < n; a++)
		{
			if (s[i] == '{')
			{
				size_t		e = group_end(s, n, i);

				if (!e)
					break;
				memcpy(out + w, s + i, e - i);
				w += e - i;
				i = e;
			}
			else if (s[i] == '[' && args == 1)
				break;			/* \sqrt[3]{x}: left as written */
			else if (is_digit(s[i]) || is_letter(s[i]))
			{
				out[w++] = '{';
				out[w++] = s[i++];
				out[w++] = '}';
			}
			else
				break;
		}
	}
	out[w] = '\0';
	return w;
}

static int
is_atom(const char *s, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!(is_digit(s[i]) || is_letter(s[i]) || s[i] == '.'))
			return 0;
	return 1;
}

/* \frac{a}{b} of plain atoms -> a/b */
static size_t
pass_simple_frac(char *s, size_t n)
{
	size_t		w = 0;

	for (size_t i = 0; i < n;)
	{
		if (at(s, i, "\\frac{"))
		{
			size_t		e1 = group_end(s, n, i + 5);
			size_t		e2 = e1 && e1 < n && s[e1] == '{' ? group_end(s, n, e1) : 0;

			if (e2 && is_atom(s + i + 6, e1 - i - 7) && is_atom(s + e1 + 1, e2 - e1 - 2))
			{
				size_t		l1 = e1 - i - 7,
							l2 = e2 - e1 - 2;

				memmove(s + w, s + i + 6, l1);
				w += l1;
				s[w++] = '/';
				memmove(s + w, s + e1 + 1, l2);
				w += l2;
				i = e2;
				continue;
			}
		}
		s[w++] = s[i++];
	}
	s[w] = '\0';
	return w;
}

/* "1,234,567.5" -> "1234567.5" (the whole text only) */
static size_t
pass_thousands(char *s, size_t n)
{
	size_t		i = 0,
				w;
	int			groups = 0;

	if (i < n && (s[i] == '-' || s[i] == '+'))
		i++;
	{
		size_t		d0 = i;

		while (i < n && is_digit(s[i]))
			i++;
		if (i == d0 || i - d0 > 3)
			return n;
	}
	while (i + 3 < n + 0 && s[i] == ',' && is_digit(s[i + 1]) && is_digit(s[i + 2]) && is_digit(s[i + 3]) &&
		   !(i + 4 < n && is_digit(s[i + 4])))
	{
		i += 4;
		groups++;
	}
	if (groups == 0)
		return n;
	if (i < n && s[i] == '.')
	{
		i++;
		while (i < n && is_digit(s[i]))
			i++;
	}
	if (i != n)
		return n;
	w = 0;
	for (i = 0; i < n; i++)
		if (s[i] != ',')
			s[w++] = s[i];
	s[w] = '\0';
	return w;
}

char *
r1_answer_normalize(const char *in, size_t len)
{
	char	   *s,
			   *t;
	size_t		n;

	if (len > R1_ANSWER_MAX_LEN)
		return NULL;
	s = malloc(len + 1);
	t = malloc(2 * len + 1);
	if (!s || !t)
	{
		free(s);
		free(t);
		return NULL;
	}
	memcpy(s, in, len);
	s[len] = '\0';
	n = strlen(s);				/* an embedded NUL ends the answer */
	n = pass_space(s, n);
	/* a whole \boxed{...} is its content */
	while (at(s, 0, "\\boxed{") && group_end(s, n, 6) == n)
	{
		memmove(s, s + 7, n - 8);
		n -= 8;
		s[n] = '\0';
	}
	n = pass_subst(s, n);
	n = pass_text(s, n);
	n = pass_lhs(s, n);
	while (n > 0 && s[n - 1] == '.')
		s[--n] = '\0';
	n = pass_brace_args(s, n, t);
	n = pass_simple_frac(t, n);
	n = pass_thousands(t, n);
	/* "(A)" -> "A", a leading "+" goes */
	if (n == 3 && t[0] == '(' && t[2] == ')' && is_letter(t[1]))
	{
		t[0] = t[1];
		t[1] = '\0';
		n = 1;
	}
	if (n > 1 && t[0] == '+')
	{
		memmove(t, t + 1, n);
		n--;
	}
	free(s);
	return t;
}

/* ---- numeric expressions ---- */

typedef struct np
{
	const char *s;
	size_t		i,
				n;
	int			depth;
	int			fail;
} np;

static double np_expr(np *p);

static int
np_eat(np *p, const char *lit)
{
	size_t		l = strlen(lit);

	if (p->i + l <= p->n && strncmp(p->s + p->i, lit, l) == 0 &&
		!(lit[0] == '\\' && is_letter(lit[l - 1]) && p->i + l < p->n && is_letter(p->s[p->i + l])))
	{
		p->i += l;
		return 1;
	}
	return 0;
}

static double
np_group(np *p, char open, char close)
{
	double		v;

	if (p->i >= p->n || p->s[p->i] != open)
	{
		p->fail = 1;
		return 0;
	}
	p->i++;
	v = np_expr(p);
	if (p->i >= p->n || p->s[p->i] != close)
		p->fail = 1;
	else
		p->i++;
	return v;
}

static double
np_primary(np *p)
{
	char		c;

	if (p->fail || p->i >= p->n)
	{
		p->fail = 1;
		return 0;
	}
	c = p->s[p->i];
	if (is_digit(c) || c == '.')
	{
		char		buf[64];
		size_t		k = 0;
		int			dot = 0;

		while (p->i < p->n && (is_digit(p->s[p->i]) || (p->s[p->i] == '.' && !dot)))
		{
			if (p->s[p->i] == '.')
				dot = 1;
			if (k + 1 < sizeof(buf))
				buf[k++] = p->s[p->i];
			else
				p->fail = 1;	/* more digits than a double holds anyway */
			p->i++;
		}
		buf[k] = '\0';
		if (k == 1 && buf[0] == '.')
			p->fail = 1;
		return strtod(buf, NULL);
	}
	if (c == '(')
		return np_group(p, '(', ')');
	if (c == '{')
		return np_group(p, '{', '}');
	if (np_eat(p, "\\frac"))
	{
		double		a = np_group(p, '{', '}');
		double		b = np_group(p, '{', '}');

		return a / b;
	}
	if (np_eat(p, "\\sqrt"))
	{
		double		root = 2;

		if (p->i < p->n && p->s[p->i] == '[')
			root = np_group(p, '[', ']');
		return pow(np_group(p, '{', '}'), 1.0 / root);
	}
	if (np_eat(p, "\\pi"))
		return M_PI;
	p->fail = 1;
	return 0;
}

static double
np_unary(np *p)
{
	double		v;

	if (++p->depth > R1_AE_EXPR_DEPTH)
	{
		p->fail = 1;
		return 0;
	}
	if (p->i < p->n && (p->s[p->i] == '-' || p->s[p->i] == '+'))
	{
		int			neg = p->s[p->i++] == '-';

		v = np_unary(p);
		p->depth--;
		return neg ? -v : v;
	}
	v = np_primary(p);
	if (!p->fail && p->i < p->n && p->s[p->i] == '^')
	{
		double		e;

		p->i++;
		if (p->i < p->n && p->s[p->i] == '{')
			e = np_group(p, '{', '}');
		else if (p->i < p->n && p->s[p->i] == '-')
		{
			p->i++;
			e = -np_primary(p);
		}
		else
			e = np_primary(p);
		v = pow(v, e);
	}
	p->depth--;
	return v;
}

/* does a primary start at p->i (for implicit products like 2\sqrt{3}) */
static int
np_primary_starts(const np *p)
{
	const char *s = p->s + p->i;

	if (p->i >= p->n)
		return 0;
	return s[0] == '(' || strncmp(s, "\\frac", 5) == 0 || strncmp(s, "\\sqrt", 5) == 0 ||
		strncmp(s, "\\pi", 3) == 0;
}

static double
np_term(np *p)
{
	double		v = np_unary(p);

	while (!p->fail && p->i < p->n)
	{
		if (np_eat(p, "*") || np_eat(p, "\\cdot") || np_eat(p, "\\times"))
			v *= np_unary(p);
		else if (np_eat(p, "/") || np_eat(p, "\\div"))
			v /= np_unary(p);
		else if (np_primary_starts(p))
			v *= np_unary(p);
		else
			break;
	}
	return v;
}

static double
np_expr(np *p)
{
	double		v;

	if (++p->depth > R1_AE_EXPR_DEPTH)
	{
		p->fail = 1;
		return 0;
	}
	v = np_term(p);
	while (!p->fail && p->i < p->n && (p->s[p->i] == '+' || p->s[p->i] == '-'))
	{
		int			minus = p->s[p->i++] == '-';
		double		t = np_term(p);

		v = minus ? v - t : v + t;
	}
	p->depth--;
	return v;
}

/* the value of a numeric expression: 1 and *v, or 0 */
static int
num_eval(const char *s, double *v)
{
	np			p = {s, 0, strlen(s), 0, 0};

	if (p.n == 0)
		return 0;
	*v = np_expr(&p);
	return !p.fail && p.i == p.n && isfinite(*v);
}

/* an integer literal: its digits without sign and leading zeros in *digits */
static int
int_literal(const char *s, int *neg, const char **digits)
{
	size_t		i = 0;

	*neg = 0;
	if (s[0] == '-' || s[0] == '+')
	{
		*neg = s[0] == '-';
		i = 1;
	}
	if (!is_digit(s[i]))
		return 0;
	for (size_t k = i; s[k]; k++)
		if (!is_digit(s[k]))
			return 0;
	while (s[i] == '0' && s[i + 1] != '\0')
		i++;
	if (s[i] == '0')
		*neg = 0;
	*digits = s + i;
	return 1;
}

/* ---- lists: sets, tuples, intervals ---- */

enum list_kind
{
	L_NONE,
	L_SET,						/* \{a,b\} */
	L_TUPLE,					/* (a,b) [a,b] (a,b] ... */
	L_BARE,						/* a,b */
	L_PAREN						/* (x): look inside */
};

typedef struct alist
{
	enum list_kind kind;
	char		open,
				close;
	int			n;
	const char *item[R1_AE_MAX_ITEMS];
	size_t		len[R1_AE_MAX_ITEMS];
} alist;

/* width of a bracket token at s[i]: +w opener, -w closer, 0 other */
static int
bracket_at(const char *s, size_t i)
{
	if (s[i] == '\\' && s[i + 1] == '{')
		return 2;
	if (s[i] == '\\' && s[i + 1] == '}')
		return -2;
	if (s[i] == '(' || s[i] == '[' || s[i] == '{')
		return 1;
	if (s[i] == ')' || s[i] == ']' || s[i] == '}')
		return -1;
	return 0;
}

/* does the opener at 0 close exactly at the end (n - closer width)? */
static int
wraps_whole(const char *s, size_t n)
{
	int			depth = 0;

	for (size_t i = 0; i < n;)
	{
		int			b = bracket_at(s, i);

		if (b > 0)
			depth++;
		else if (b < 0 && --depth == 0)
			return i + (size_t) (-b) == n;
		if (depth < 0)
			return 0;
		i += b ? (size_t) abs(b) : (s[i] == '\\' && s[i + 1] ? 2 : 1);
	}
	return 0;
}

/* split s[from, to) at top-level commas; 0 when there are too many items or it is malformed */
static int
split_commas(const char *s, size_t from, size_t to, alist *l)
{
	int			depth = 0;
	size_t		start = from;

	l->n = 0;
	if (from == to)
		return 1;
	for (size_t i = from; i <= to;)
	{
		int			b = i < to ? bracket_at(s, i) : 0;

		if (i == to || (s[i] == ',' && depth == 0))
		{
			if (l->n >= R1_AE_MAX_ITEMS)
				return 0;
			l->item[l->n] = s + start;
			l->len[l->n] = i - start;
			l->n++;
			start = i + 1;
			i++;
			continue;
		}
		if (b > 0)
			depth++;
		else if (b < 0)
			depth--;
		i += b ? (size_t) abs(b) : (s[i] == '\\' && i + 1 < to ? 2 : 1);
	}
	return depth == 0;
}

static int
has_top_comma(const char *s, size_t from, size_t to)
{
	int			depth = 0;

	for (size_t i = from; i < to;)
	{
		int			b = bracket_at(s, i);

		if (s[i] == ',' && depth == 0)
			return 1;
		if (b > 0)
			depth++;
		else if (b < 0)
			depth--;
		i += b ? (size_t) abs(b) : (s[i] == '\\' && i + 1 < to ? 2 : 1);
	}
	return 0;
}

static void
list_of(const char *s, alist *l)
{
	size_t		n = strlen(s);

	l->kind = L_NONE;
	if (n >= 4 && at(s, 0, "\\{") && at(s, n - 2, "\\}") && wraps_whole(s, n))
	{
		if (split_commas(s, 2, n - 2, l))
			l->kind = L_SET;
		return;
	}
	if (n >= 2 && (s[0] == '(' || s[0] == '[') && (s[n - 1] == ')' || s[n - 1] == ']') &&
		wraps_whole(s, n))
	{
		if (has_top_comma(s, 1, n - 1))
		{
			if (split_commas(s, 1, n - 1, l))
			{
				l->kind = L_TUPLE;
				l->open = s[0];
				l->close = s[n - 1];
			}
		}
		else if (s[0] == '(' && s[n - 1] == ')')
		{
			l->kind = L_PAREN;
			l->n = 1;
			l->item[0] = s + 1;
			l->len[0] = n - 2;
		}
		return;
	}
	if (has_top_comma(s, 0, n) && split_commas(s, 0, n, l))
		l->kind = L_BARE;
}

/* ---- comparison ---- */

typedef struct actx
{
	long		budget;
} actx;

static int	eq_raw(const char *a, size_t an, const char *b, size_t bn, int depth, actx *cx);

static int
values_equal(double x, double y)
{
	double		m = fabs(x) > fabs(y) ? fabs(x) : fabs(y);

	return x == y || fabs(x - y) <= R1_AE_REL_TOL * m;
}

static int
eq_norm(const char *a, const char *b, int depth, actx *cx)
{
	double		x,
				y;
	alist	   *la,
			   *lb;
	int			r = 0;

	if (strcmp(a, b) == 0)
		return 1;
	{
		int			na,
					nb;
		const char *da,
				   *db;

		if (int_literal(a, &na, &da) && int_literal(b, &nb, &db))
			return na == nb && strcmp(da, db) == 0;
	}
	if (num_eval(a, &x) && num_eval(b, &y))
		return values_equal(x, y);
	if (depth >= R1_AE_MAX_DEPTH)
		return 0;
	la = malloc(sizeof(alist));
	lb = malloc(sizeof(alist));
	if (!la || !lb)
		goto done;
	list_of(a, la);
	list_of(b, lb);
	if (la->kind == L_PAREN)
	{
		r = eq_raw(la->item[0], la->len[0], b, strlen(b), depth + 1, cx);
		goto done;
	}
	if (lb->kind == L_PAREN)
	{
		r = eq_raw(a, strlen(a), lb->item[0], lb->len[0], depth + 1, cx);
		goto done;
	}
	if (la->kind == L_NONE || lb->kind == L_NONE || la->n != lb->n)
		goto done;
	if (la->kind == L_TUPLE || lb->kind == L_TUPLE)
	{
		/* in order; two tuples need the same brackets, a set is never a tuple */
		if (la->kind == L_SET || lb->kind == L_SET)
			goto done;
		if (la->kind == L_TUPLE && lb->kind == L_TUPLE &&
			(la->open != lb->open || la->close != lb->close))
			goto done;
		for (int i = 0; i < la->n; i++)
			if (!eq_raw(la->item[i], la->len[i], lb->item[i], lb->len[i], depth + 1, cx))
				goto done;
		r = 1;
	}
	else
	{
		/* sets and bare lists: every element of a matches a distinct one of b */
		unsigned char used[R1_AE_MAX_ITEMS];

		memset(used, 0, sizeof(used));
		for (int i = 0; i < la->n; i++)
		{
			int			found = 0;

			for (int j = 0; j < lb->n && !found; j++)
				if (!used[j] && eq_raw(la->item[i], la->len[i], lb->item[j], lb->len[j], depth + 1, cx))
					used[j] = found = 1;
			if (!found)
				goto done;
		}
		r = 1;
	}
done:
	free(la);
	free(lb);
	return r;
}

static int
eq_raw(const char *a, size_t an, const char *b, size_t bn, int depth, actx *cx)
{
	char	   *na,
			   *nb;
	int			r = 0;

	if (an == bn && memcmp(a, b, an) == 0)
		return 1;
	cx->budget -= (long) (an + bn) + 16;
	if (cx->budget < 0)
		return 0;
	na = r1_answer_normalize(a, an);
	nb = r1_answer_normalize(b, bn);
	if (na && nb)
		r = eq_norm(na, nb, depth, cx);
	free(na);
	free(nb);
	return r;
}

int
r1_answers_equal(const char *a, size_t a_len, const char *b, size_t b_len)
{
	actx		cx = {R1_AE_BUDGET};

	if (a_len > R1_ANSWER_MAX_LEN || b_len > R1_ANSWER_MAX_LEN ||
		memchr(a, '\0', a_len) || memchr(b, '\0', b_len))
		return a_len == b_len && memcmp(a, b, a_len) == 0;
	return eq_raw(a, a_len, b, b_len, 0, &cx);
}
