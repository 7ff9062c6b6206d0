/*
 * fuzz_chat.c - r1_extract_boxed, r1_split_think, r1_chat_prompt and
 * r1_utf8_valid on arbitrary bytes.
 *
 * The text functions take NUL-terminated strings: the input is copied and
 * terminated (an embedded NUL ends the string, as it would in a C caller).
 * Checks: the results are substrings of the input, no longer than it;
 * r1_utf8_valid agrees with an independent strict validator.
 */
#include "chat.h"
#include "fuzz_common.h"

/*
 * The definition of r1_extract_boxed, slowly (quadratic): for every \boxed,
 * spaces and "{", scan forward with a depth count, a backslash escaping the
 * next character; the last one that closes wins.
 */
static char *
boxed_reference(const char *text)
{
	size_t		len = strlen(text),
				best_start = 0,
				best_end = 0;
	bool		have = false;
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
				e++;
			else if (text[e] == '{')
				depth++;
			else if (text[e] == '}' && --depth == 0)
				break;
		}
		if (depth == 0)
		{
			have = true;
			best_start = b + 1;
			best_end = e;
		}
	}
	if (!have)
		return NULL;
	out = malloc(best_end - best_start + 1);
	if (out)
	{
		memcpy(out, text + best_start, best_end - best_start);
		out[best_end - best_start] = '\0';
	}
	return out;
}

static bool
is_substring(const char *hay, const char *needle)
{
	return strstr(hay, needle) != NULL;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *text = malloc(size + 1);
	size_t		tlen;
	char	   *boxed,
			   *think,
			   *answer,
			   *prompt;
	r1_error	err;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	tlen = strlen(text);

	/* UTF-8: the engine's validator against ours, on the raw bytes */
	FUZZ_CHECK(!!r1_utf8_valid((const char *) data, size) == fuzz_utf8_valid(data, size),
			   "r1_utf8_valid says %d on %zu bytes", r1_utf8_valid((const char *) data, size), size);
	for (size_t cut = 0; cut <= size && cut < 8; cut++)
		FUZZ_CHECK(!!r1_utf8_valid((const char *) data, cut) == fuzz_utf8_valid(data, cut),
				   "r1_utf8_valid disagrees on the first %zu bytes", cut);

	boxed = r1_extract_boxed(text);
	if (tlen <= 8192)
	{
		char	   *ref = boxed_reference(text);

		FUZZ_CHECK((boxed == NULL) == (ref == NULL) && (!boxed || !ref || strcmp(boxed, ref) == 0),
				   "r1_extract_boxed gives %s, the definition %s", boxed ? boxed : "NULL", ref ? ref : "NULL");
		free(ref);
	}
	if (boxed)
	{
		FUZZ_CHECK(strlen(boxed) + strlen("\\boxed{}") <= tlen, "boxed content longer than the text");
		FUZZ_CHECK(is_substring(text, boxed), "boxed content is not part of the text");
		free(boxed);
	}

	if (r1_split_think(text, &think, &answer, &err) == 0)
	{
		FUZZ_CHECK(think != NULL, "no think text");
		FUZZ_CHECK(is_substring(text, think), "think is not part of the text");
		if (strstr(text, R1_THINK_CLOSE))
		{
			FUZZ_CHECK(answer != NULL, "</think> but no answer");
			FUZZ_CHECK(is_substring(text, answer), "answer is not part of the text");
			FUZZ_CHECK(strlen(think) + strlen(answer) + strlen(R1_THINK_CLOSE) <= tlen, "lengths");
		}
		else
			FUZZ_CHECK(answer == NULL, "answer without </think>");
		free(think);
		free(answer);
	}

	/* the prompt template around arbitrary text: split it in two at the middle */
	{
		size_t		half = tlen / 2;
		char	   *sys = malloc(half + 1);

		if (sys)
		{
			memcpy(sys, text, half);
			sys[half] = '\0';
			prompt = r1_chat_prompt(sys, text + half, &err);
			if (prompt)
			{
				FUZZ_CHECK(strlen(prompt) == tlen + strlen(R1_BOS_TOKEN) + strlen(R1_USER_TOKEN) +
						   strlen(R1_ASSISTANT_TOKEN) + strlen(R1_THINK_OPEN) + 1, "prompt length");
				free(prompt);
			}
			free(sys);
		}
	}
	free(text);
	return 0;
}
