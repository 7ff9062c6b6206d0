/*
 * chat.c - prompt template and output shape of the DeepSeek-R1 distilled models.
 */
#include "chat.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
r1_chat_prompt(const char *system, const char *prompt, r1_error *err)
{
	/*
	 * the model card's advice: no system prompt by default; <think>\n opens
	 * the trace
	 */
	const char *sys = system ? system : "";
	size_t		n = strlen(R1_BOS_TOKEN) + strlen(sys) + strlen(R1_USER_TOKEN) + strlen(prompt) +
	strlen(R1_ASSISTANT_TOKEN) + strlen(R1_THINK_OPEN) + 2;
	char	   *out = r1_malloc(n, err);

	if (!out)
		return NULL;
	snprintf(out, n, "%s%s%s%s%s%s\n", R1_BOS_TOKEN, sys, R1_USER_TOKEN, prompt,
			 R1_ASSISTANT_TOKEN, R1_THINK_OPEN);
	return out;
}

static int
is_space(char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static char *
dup_trimmed(const char *s, size_t len, r1_error *err)
{
	char	   *out;

	while (len > 0 && is_space(*s))
		s++, len--;
	while (len > 0 && is_space(s[len - 1]))
		len--;
	out = r1_malloc(len + 1, err);
	if (out)
	{
		memcpy(out, s, len);
		out[len] = '\0';
	}
	return out;
}

int
r1_split_think(const char *text, char **think, char **answer, r1_error *err)
{
	const char *close = strstr(text, R1_THINK_CLOSE);
	const char *start = text;

	*think = *answer = NULL;
	while (is_space(*start))
		start++;
	if (strncmp(start, R1_THINK_OPEN, strlen(R1_THINK_OPEN)) == 0 &&
		(!close || start < close))
		start += strlen(R1_THINK_OPEN);
	if (!close)
	{
		*think = dup_trimmed(start, strlen(start), err);
		return *think ? 0 : -1;
	}
	*think = dup_trimmed(start, (size_t) (close - start), err);
	if (!*think)
		return -1;
	close += strlen(R1_THINK_CLOSE);
	*answer = dup_trimmed(close, strlen(close), err);
	if (!*answer)
	{
		free(*think);
		*think = NULL;
		return -1;
	}
	return 0;
}

/*
 * The last \boxed{...} whose braces close.  A backslash escapes the next
 * character, so \{ and \} are content and \\ is a backslash (LaTeX's line
 * break): in \boxed{a\\} the "}" closes the box.
 *
 * One pass from the end, so the work is linear in the text however many
 * openers it has (the old search went forward from every \boxed, quadratic
 * for a text of 200,000 openers).  Going left, "unclosed" counts the closing
 * braces seen so far that no opener has taken: an opener finds its closer
 * exactly when one is waiting, as a forward scan from it would.  Whether a
 * brace is escaped depends on the run of backslashes just before it (odd:
 * escaped); each backslash is counted for one brace at most.  The first
 * opener with a closer that follows "\boxed" and spaces is the answer; one
 * forward scan then finds its closer.
 *
 * check_interrupts, when not NULL, is called every few megabytes (the SQL
 * function's CHECK_FOR_INTERRUPTS); it may not return.  Nothing is
 * allocated until the content is copied.
 */
static bool
chat_escaped(const char *text, size_t i)
{
	size_t		n = 0;

	while (i > n && text[i - n - 1] == '\\')
		n++;
	return (n & 1) != 0;
}

char *
r1_extract_boxed_len(const char *text, size_t len, void (*check_interrupts) (void))
{
	static const char key[] = "\\boxed";
	const size_t klen = sizeof(key) - 1;
	size_t		unclosed = 0;
	size_t		found = SIZE_MAX;
	size_t		start,
				end;
	int			depth;
	char	   *out;

	for (size_t i = len; i-- > 0;)
	{
		char		c = text[i];

		if (check_interrupts && (i & ((1 << 22) - 1)) == 0)
			check_interrupts();
		if (c != '{' && c != '}')
			continue;
		if (chat_escaped(text, i))
			continue;
		if (c == '}')
		{
			unclosed++;
			continue;
		}
		if (unclosed == 0)
			continue;			/* an opener that never closes */
		unclosed--;
		{
			size_t		k = i;

			while (k > 0 && text[k - 1] == ' ')
				k--;
			if (k >= klen && memcmp(text + k - klen, key, klen) == 0)
			{
				found = i;
				break;
			}
		}
	}
	if (found == SIZE_MAX)
		return NULL;
	start = found + 1;
	for (depth = 1, end = start; end < len; end++)
	{
		if (text[end] == '\\' && end + 1 < len)
		{
			end++;				/* escaped: \{ \} \\ are content */
			continue;
		}
		if (text[end] == '{')
			depth++;
		else if (text[end] == '}' && --depth == 0)
			break;
	}
	out = malloc(end - start + 1);
	if (!out)
		return NULL;
	memcpy(out, text + start, end - start);
	out[end - start] = '\0';
	return out;
}

char *
r1_extract_boxed(const char *text)
{
	return r1_extract_boxed_len(text, strlen(text), NULL);
}

int
r1_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *) str;
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		size_t		n;
		uint32_t	cp;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return 0;
		if (i + n >= len)		/* continuation bytes run past the end */
			return 0;
		for (size_t k = 1; k <= n; k++)
		{
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
			(cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}
