/*
 * chat.c - prompt template and output shape of the DeepSeek-R1 distilled models.
 */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
r1_chat_prompt(const char *system, const char *prompt, r1_error *err)
{
	/* the model card's advice: no system prompt by default; <think>\n opens the trace */
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

char *
r1_extract_boxed(const char *text)
{
	static const char key[] = "\\boxed";
	const char *found = NULL;
	const char *p = text;
	const char *q;
	int			depth;
	char	   *out;

	/* find the last \boxed whose content is closed */
	while ((q = strstr(p, key)) != NULL)
	{
		const char *b = q + strlen(key);

		while (*b == ' ')
			b++;
		if (*b == '{')
		{
			const char *e = b + 1;

			for (depth = 1; *e && depth > 0; e++)
			{
				if (*e == '\\' && e[1] && (e[1] == '{' || e[1] == '}'))
				{
					e++;		/* escaped brace: \{ or \} is content */
					continue;
				}
				if (*e == '{')
					depth++;
				else if (*e == '}')
					depth--;
			}
			if (depth == 0)
				found = b;
		}
		p = q + 1;
	}
	if (!found)
		return NULL;
	q = found + 1;
	for (depth = 1, p = q; *p; p++)
	{
		if (*p == '\\' && p[1] && (p[1] == '{' || p[1] == '}'))
		{
			p++;
			continue;
		}
		if (*p == '{')
			depth++;
		else if (*p == '}' && --depth == 0)
			break;
	}
	out = malloc((size_t) (p - q) + 1);
	if (!out)
		return NULL;
	memcpy(out, q, (size_t) (p - q));
	out[p - q] = '\0';
	return out;
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
		if (i + n >= len)	/* continuation bytes run past the end */
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
