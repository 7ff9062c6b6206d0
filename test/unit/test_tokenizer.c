/*
 * test_tokenizer.c - the BPE tokenizer against Hugging Face `tokenizers`
 * output (test/fixtures/tokenizer/tokenizer_golden.json), plus added-token
 * handling, streaming decode and error paths.
 *
 * Run from the repository root, or set R1_FIXTURES to the fixtures folder.
 */
#include "tokenizer.h"
#include "tap.h"

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char fixtures[1024];
static char tokdir[1100];
static char tmpdir[256];

/* a strict UTF-8 check, independent of the code under test */
static bool
valid_utf8(const char *p, size_t len)
{
	const unsigned char *s = (const unsigned char *) p;
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		uint32_t	cp;
		size_t		n;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		else if (c >= 0xc2 && c <= 0xdf)
			n = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 4, cp = c & 0x07;
		else
			return false;
		if (i + n > len)
			return false;
		for (size_t k = 1; k < n; k++)
		{
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
			(cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

/* A one-line label for a test case: control characters escaped, cut at 40 bytes. */
static const char *
label(const char *text, char *buf, size_t size)
{
	size_t		o = 0;

	for (const char *p = text; *p && o + 5 < size &&
		 (p - text < 40 || ((unsigned char) *p & 0xc0) == 0x80); p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '\n' || c == '\r' || c == '\t')
		{
			buf[o++] = '\\';
			buf[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		}
		else if (c < 0x20)
			buf[o++] = '?';
		else
			buf[o++] = (char) c;
	}
	buf[o] = '\0';
	return buf;
}

static bool
ids_equal(const int32_t *got, size_t n, json_t *want)
{
	if (n != json_array_size(want))
		return false;
	for (size_t i = 0; i < n; i++)
		if (got[i] != json_integer_value(json_array_get(want, i)))
			return false;
	return true;
}

static void
diag_ids(const char *label, const int32_t *ids, size_t n)
{
	char		line[4096];
	size_t		off = 0;

	for (size_t i = 0; i < n && off < sizeof(line) - 16; i++)
		off += snprintf(line + off, sizeof(line) - off, "%s%d", i ? " " : "", ids[i]);
	line[off] = '\0';
	diag("  %s: [%s]", label, line);
}

static int
write_file(const char *dir, const char *name, const char *text)
{
	char		path[PATH_MAX];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static void
make_dir(char *out, const char *name)
{
	snprintf(out, PATH_MAX, "%s/%s", tmpdir, name);
	if (mkdir(out, 0700) != 0)
		diag("cannot create %s", out);
}

/* Encode text and compare with the expected ids (n_want of them). */
static void
check_encode(const r1_tokenizer *tok, const char *text, const int32_t *want, size_t n_want,
			 const char *what)
{
	r1_error	err = {{0}};
	int32_t    *ids = NULL;
	size_t		n = 0;
	int			rc = r1_tokenizer_encode(tok, text, strlen(text), &ids, &n, &err);
	bool		same = rc == 0 && n == n_want &&
		(n == 0 || memcmp(ids, want, n * sizeof(int32_t)) == 0);

	if (!ok(same, "%s", what))
	{
		if (rc != 0)
			diag("  error: %s", err.msg);
		else
		{
			diag_ids("got", ids, n);
			diag_ids("want", want, n_want);
		}
	}
	free(ids);
}

static void
test_golden(const r1_tokenizer *tok)
{
	char		path[PATH_MAX];
	json_error_t jerr;
	json_t	   *root,
			   *cases,
			   *c;
	size_t		i;

	snprintf(path, sizeof(path), "%s/tokenizer_golden.json", tokdir);
	root = json_load_file(path, 0, &jerr);
	if (!ok(root != NULL, "golden file loads"))
	{
		diag("  %s: %s", path, jerr.text);
		return;
	}
	cases = json_object_get(root, "cases");
	ok(json_array_size(cases) >= 20, "golden file has %zu cases", json_array_size(cases));
	json_array_foreach(cases, i, c)
	{
		json_t	   *jtext = json_object_get(c, "text");
		const char *text = json_string_value(jtext);
		size_t		tlen = json_string_length(jtext);
		const char *decoded = json_string_value(json_object_get(c, "decoded"));
		r1_error	err = {{0}};
		int32_t    *ids = NULL;
		size_t		n = 0;
		char	   *out = NULL;
		size_t		olen = 0;
		char		lbl[64];
		int			rc;

		rc = r1_tokenizer_encode(tok, text, tlen, &ids, &n, &err);
		if (!ok(rc == 0 && ids_equal(ids, n, json_object_get(c, "ids")),
				"golden %zu encodes exactly: \"%s\"", i, label(text, lbl, sizeof(lbl))))
		{
			if (rc != 0)
				diag("  error: %s", err.msg);
			else
				diag_ids("got", ids, n);
		}
		if (rc == 0)
		{
			rc = r1_tokenizer_decode(tok, ids, n, &out, &olen, &err);
			ok(rc == 0 && olen == strlen(decoded) && strcmp(out, decoded) == 0,
			   "golden %zu decodes to \"decoded\"", i);
			free(out);
		}
		free(ids);
	}
	json_decref(root);
}

static void
test_chat_and_lookups(const r1_tokenizer *tok)
{
	static const int32_t want[] = {151646, 151644, 3838, 374, 220, 16, 10, 16, 30,
	151645, 151648, 198};
	static const int32_t want_end[] = {151649, 785, 4226, 374, 151643};

	is_int(r1_tokenizer_n_tokens(tok), 151665, "n_tokens is vocabulary plus added tokens");
	is_int(r1_tokenizer_bos_id(tok), 151646, "bos id from tokenizer_config.json");
	is_int(r1_tokenizer_eos_id(tok), 151643, "eos id from tokenizer_config.json");
	is_int(r1_tokenizer_token_id(tok, "<｜begin▁of▁sentence｜>"), 151646, "token_id of bos");
	is_int(r1_tokenizer_token_id(tok, "<｜User｜>"), 151644, "token_id of <｜User｜>");
	is_int(r1_tokenizer_token_id(tok, "<｜Assistant｜>"), 151645, "token_id of <｜Assistant｜>");
	is_int(r1_tokenizer_token_id(tok, "<think>"), 151648, "token_id of <think>");
	is_int(r1_tokenizer_token_id(tok, "</think>"), 151649, "token_id of </think>");
	is_int(r1_tokenizer_token_id(tok, "Hello"), 9707, "token_id of a vocabulary token");
	is_int(r1_tokenizer_token_id(tok, "Ġworld"), 1879, "token_id uses the byte-level form");
	is_int(r1_tokenizer_token_id(tok, "Ċ"), 198, "token_id of newline's byte-level form");
	is_int(r1_tokenizer_token_id(tok, "no such token here"), -1, "token_id of an unknown string");

	check_encode(tok, "<｜begin▁of▁sentence｜><｜User｜>What is 1+1?<｜Assistant｜><think>\n",
				 want, sizeof(want) / sizeof(want[0]),
				 "chat prompt: special tokens are single ids, then \\n = 198");
	check_encode(tok, "</think>The answer is<｜end▁of▁sentence｜>", want_end,
				 sizeof(want_end) / sizeof(want_end[0]), "</think> and eos inside text");

	{
		size_t		len = 0;
		const char *b = r1_tokenizer_token_bytes(tok, 1879, &len);

		ok(b && len == 6 && memcmp(b, " world", 6) == 0, "token_bytes maps Ġ back to a space");
		b = r1_tokenizer_token_bytes(tok, 151648, &len);
		ok(b && len == 7 && memcmp(b, "<think>", 7) == 0, "token_bytes of an added token is its content");
		b = r1_tokenizer_token_bytes(tok, 151644, &len);
		ok(b && len == strlen("<｜User｜>") && memcmp(b, "<｜User｜>", len) == 0,
		   "token_bytes of <｜User｜> is its content");
		ok(r1_tokenizer_token_bytes(tok, 151665, &len) == NULL && len == 0,
		   "token_bytes past the last id is NULL");
		ok(r1_tokenizer_token_bytes(tok, -1, NULL) == NULL, "token_bytes of -1 is NULL");
	}
}

static void
test_errors(const r1_tokenizer *tok)
{
	r1_error	err = {{0}};
	int32_t    *ids = NULL;
	size_t		n = 0;
	char	   *text = NULL;
	size_t		len = 0;
	int32_t		bad[] = {9707, 151665};
	int32_t		neg[] = {-5};
	char		dir[PATH_MAX];
	r1_tokenizer *t2 = NULL;

	fails_with(r1_tokenizer_encode(tok, "ab\xff" "cd", 5, &ids, &n, &err), err,
			   "invalid UTF-8 at byte 2", "invalid byte 0xff is rejected with its offset");
	ok(ids == NULL && n == 0, "no ids after an error");
	fails_with(r1_tokenizer_encode(tok, "x\xe6\x95", 3, &ids, &n, &err), err,
			   "invalid UTF-8 at byte 1", "truncated character at the end is rejected");
	fails_with(r1_tokenizer_encode(tok, "\xc0\xaf", 2, &ids, &n, &err), err,
			   "invalid UTF-8 at byte 0", "overlong encoding is rejected");
	fails_with(r1_tokenizer_encode(tok, "ok \xed\xa0\x80", 6, &ids, &n, &err), err,
			   "invalid UTF-8 at byte 3", "UTF-8 encoded surrogate is rejected");

	fails_with(r1_tokenizer_decode(tok, bad, 2, &text, &len, &err), err,
			   "out of range", "decode of an id past the end fails");
	ok(text == NULL, "no text after a decode error");
	fails_with(r1_tokenizer_decode(tok, neg, 1, &text, &len, &err), err,
			   "token id -5 out of range", "decode of a negative id fails");
	{
		r1_detok	st = {{0}, 0};
		char	   *buf = NULL;
		size_t		bl = 0,
					bc = 0;

		fails_with(r1_detok_push(&st, tok, 200000, &buf, &bl, &bc, &err), err,
				   "out of range", "streaming decode of a bad id fails");
		free(buf);
	}

	/* missing tokenizer.json */
	make_dir(dir, "empty");
	fails_with(r1_tokenizer_load(&t2, dir, &err), err, "tokenizer.json",
			   "missing tokenizer.json: message names the file");
	ok(t2 == NULL && strstr(err.msg, dir) != NULL && strstr(err.msg, "cannot open") != NULL,
	   "missing tokenizer.json: message has the path and the reason");

	/* malformed tokenizer.json */
	make_dir(dir, "badjson");
	write_file(dir, "tokenizer.json", "{\n  \"model\": {\"vocab\": {\"a\": 0,}}\n}\n");
	fails_with(r1_tokenizer_load(&t2, dir, &err), err, "invalid JSON at line 2",
			   "malformed tokenizer.json: message has the line");
	ok(strstr(err.msg, "tokenizer.json") != NULL && strstr(err.msg, "column") != NULL,
	   "malformed tokenizer.json: message names the file and column");

	/* well-formed but not a BPE tokenizer */
	make_dir(dir, "nomodel");
	write_file(dir, "tokenizer.json", "{\"model\": {\"type\": \"BPE\"}}");
	fails_with(r1_tokenizer_load(&t2, dir, &err), err, "no BPE model",
			   "tokenizer.json without vocab/merges is rejected");

	/* a merge whose parts are not in the vocabulary */
	make_dir(dir, "badmerge");
	write_file(dir, "tokenizer.json",
			   "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}");
	fails_with(r1_tokenizer_load(&t2, dir, &err), err, "merge 0",
			   "a merge producing an unknown token is rejected");
}

/*
 * A tiny tokenizer: both merge formats, ignore_merges, and the added-token
 * flags lstrip / rstrip / single_word.  No pre-tokenizer regex, so a stretch
 * of plain text is one BPE word.
 */
static const char *tiny_fmt =
"{\"normalizer\": {\"type\": \"NFC\"},"
" \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false},"
" \"decoder\": {\"type\": \"ByteLevel\"},"
" \"added_tokens\": ["
"  {\"id\": 9, \"content\": \"<x>\", \"lstrip\": true, \"rstrip\": true, \"single_word\": false, \"normalized\": false, \"special\": true},"
"  {\"id\": 10, \"content\": \"xy\", \"lstrip\": false, \"rstrip\": false, \"single_word\": true, \"normalized\": false, \"special\": false},"
"  {\"id\": 11, \"content\": \"\\u00e9!\", \"lstrip\": false, \"rstrip\": false, \"single_word\": false, \"normalized\": true, \"special\": false}],"
" \"model\": {\"type\": \"BPE\", \"ignore_merges\": %s,"
"  \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"abc\": 5, \"x\": 6, \"y\": 7, \".\": 8},"
"  \"merges\": %s}}";

static r1_tokenizer *
load_tiny(const char *name, const char *ignore, const char *merges)
{
	char		dir[PATH_MAX];
	char		json[4096];
	r1_error	err = {{0}};
	r1_tokenizer *t = NULL;

	make_dir(dir, name);
	snprintf(json, sizeof(json), tiny_fmt, ignore, merges);
	write_file(dir, "tokenizer.json", json);
	write_file(dir, "tokenizer_config.json",
			   "{\"bos_token\": {\"content\": \"<x>\", \"lstrip\": false}, \"eos_token\": null}");
	if (!ok(r1_tokenizer_load(&t, dir, &err) == 0, "tiny tokenizer %s loads", name))
		diag("  %s", err.msg);
	return t;
}

static void
test_tiny(void)
{
	r1_tokenizer *t;

	t = load_tiny("tiny-str", "false", "[\"a b\", \"ab c\"]");
	if (t)
	{
		static const int32_t abc[] = {5};
		static const int32_t strip[] = {0, 9, 1};
		static const int32_t sw[] = {10, 3, 0, 6, 7, 3, 10, 8};
		static const int32_t norm[] = {0, 11, 1};

		is_int(r1_tokenizer_n_tokens(t), 12, "tiny: n_tokens");
		is_int(r1_tokenizer_bos_id(t), 9, "tiny: bos_token given as an object");
		is_int(r1_tokenizer_eos_id(t), -1, "tiny: null eos_token is -1");
		check_encode(t, "abc", abc, 1, "tiny: merges as \"a b\" strings");
		check_encode(t, "a <x> b", strip, 3, "tiny: lstrip/rstrip take the spaces around <x>");
		check_encode(t, "xy axy xy.", sw, 8, "tiny: single_word matches only between non-word chars");
		/* e + combining acute, NFC-composed, then matched as a normalized added token */
		check_encode(t, "ae\xcc\x81!b", norm, 3, "tiny: normalized added token matches after NFC");
		r1_tokenizer_free(t);
	}
	t = load_tiny("tiny-pairs", "false", "[[\"a\", \"b\"]]");
	if (t)
	{
		static const int32_t want[] = {4, 2};

		check_encode(t, "abc", want, 2, "tiny: merges as [a, b] pairs, no ignore_merges");
		r1_tokenizer_free(t);
	}
	t = load_tiny("tiny-ignore", "true", "[[\"a\", \"b\"]]");
	if (t)
	{
		static const int32_t want[] = {5};

		check_encode(t, "abc", want, 1, "tiny: ignore_merges maps a whole vocab word directly");
		r1_tokenizer_free(t);
	}
}

/*
 * Llama 3's pre-tokenizer (DeepSeek-R1-Distill-Llama's tokenizer.json):
 * Sequence of a Split on the Llama 3 regex (digits in groups of up to three)
 * and ByteLevel without its regex; no normalizer.
 */
static const char *llama3_fmt =
"{\"normalizer\": null,"
" \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
"  {\"type\": \"Split\", \"pattern\": {\"Regex\": %s}, \"behavior\": \"Isolated\", \"invert\": false},"
"  {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},"
" \"decoder\": {\"type\": \"ByteLevel\"}, \"added_tokens\": [],"
" \"model\": {\"type\": \"BPE\", \"ignore_merges\": true,"
"  \"vocab\": {\"0\": 0, \"1\": 1, \"2\": 2, \"3\": 3, \"4\": 4, \"5\": 5, \"6\": 6, \"7\": 7, \"8\": 8,"
"   \"9\": 9, \"12\": 10, \"123\": 11, \"45\": 12, \"\u0120\": 13, \"e\": 14, \"\u00cc\": 15, \"\u0123\": 16,"
"   \"\u00c3\": 17, \"\u00a9\": 18},"
"  \"merges\": [\"1 2\", \"12 3\", \"4 5\"]}}";

static void
test_llama3(void)
{
	char		dir[PATH_MAX],
				json[4096],
				re[512];
	r1_error	err = {{0}};
	r1_tokenizer *t = NULL;
	json_t	   *js = json_string(r1_llama3_split_regex);
	char	   *quoted = json_dumps(js, JSON_ENCODE_ANY);

	snprintf(re, sizeof(re), "%s", quoted);
	free(quoted);
	json_decref(js);
	make_dir(dir, "llama3");
	snprintf(json, sizeof(json), llama3_fmt, re);
	write_file(dir, "tokenizer.json", json);
	write_file(dir, "tokenizer_config.json", "{}");
	if (!ok(r1_tokenizer_load(&t, dir, &err) == 0, "a Llama 3 tokenizer.json loads"))
	{
		diag("  %s", err.msg);
		return;
	}
	{
		/* "12345": Llama 3 splits "123" | "45" (Qwen2 would split every digit) */
		static const int32_t digits[] = {11, 12};
		/* "1234 5": "123" | "4" | " " | "5" */
		static const int32_t spaced[] = {11, 4, 13, 5};
		/* no normalizer: e + U+0301 stays decomposed (e, 0xCC, 0x81) */
		static const int32_t decomposed[] = {14, 15, 16};
		/* and a composed e-acute stays composed (0xC3 0xA9) */
		static const int32_t composed[] = {17, 18};

		check_encode(t, "12345", digits, 2, "llama3: digits in groups of three");
		check_encode(t, "1234 5", spaced, 4, "llama3: a group of three, then one");
		check_encode(t, "e\xcc\x81", decomposed, 3, "llama3: no NFC normalizer");
		check_encode(t, "\xc3\xa9", composed, 2, "llama3: composed stays composed");
	}
	r1_tokenizer_free(t);
}

static void
test_stream(const r1_tokenizer *tok)
{
	const char *text = "数学是科学的皇后。🤔🧠 🏳️‍🌈 家族 👨‍👩‍👧‍👦 Ωμέγα ok";
	r1_error	err = {{0}};
	int32_t    *ids = NULL;
	size_t		n = 0;
	r1_detok	st = {{0}, 0};
	char	   *buf = NULL;
	size_t		len = 0,
				cap = 0;
	bool		all_valid = true;
	int			split_chars = 0;

	if (!ok(r1_tokenizer_encode(tok, text, strlen(text), &ids, &n, &err) == 0,
			"stream: text encodes"))
		return;
	for (size_t i = 0; i < n; i++)
	{
		size_t		before = len,
					tl;
		const char *tb = r1_tokenizer_token_bytes(tok, ids[i], &tl);

		if (tb && !valid_utf8(tb, tl))
			split_chars++;
		if (r1_detok_push(&st, tok, ids[i], &buf, &len, &cap, &err) != 0)
		{
			diag("  push failed: %s", err.msg);
			all_valid = false;
			break;
		}
		if (!valid_utf8(buf + before, len - before) || strlen(buf) != len)
			all_valid = false;
	}
	ok(split_chars > 0, "stream: some ids hold a partial character (%d)", split_chars);
	ok(all_valid, "stream: every push emits only whole characters");
	is_int(st.n_pending, 0, "stream: nothing held at the end");
	ok(r1_detok_flush(&st, &buf, &len, &cap, &err) == 0, "stream: flush");
	is_str(buf, text, "stream: token-by-token output reassembles the text");
	free(ids);
	free(buf);

	/* bytes that can never form a character become U+FFFD */
	{
		int32_t		lead = r1_tokenizer_token_id(tok, "æ");	/* the byte 0xe6 */
		int32_t		lead2 = r1_tokenizer_token_id(tok, "ķ");	/* the byte 0x95 */
		int32_t		a = r1_tokenizer_token_id(tok, "A");

		memset(&st, 0, sizeof(st));
		buf = NULL;
		len = cap = 0;
		ok(lead >= 0 && lead2 >= 0 && a >= 0, "stream: single-byte tokens exist");
		r1_detok_push(&st, tok, lead, &buf, &len, &cap, &err);
		is_int(len, 0, "stream: a lead byte alone is held");
		r1_detok_push(&st, tok, lead2, &buf, &len, &cap, &err);
		is_int(len, 0, "stream: lead + one continuation byte is still held");
		r1_detok_push(&st, tok, a, &buf, &len, &cap, &err);
		is_str(buf, "\xef\xbf\xbd" "A", "stream: an interrupted character becomes one U+FFFD");
		r1_detok_push(&st, tok, lead2, &buf, &len, &cap, &err);
		is_str(buf, "\xef\xbf\xbd" "A\xef\xbf\xbd", "stream: a stray continuation byte becomes U+FFFD");
		r1_detok_push(&st, tok, lead, &buf, &len, &cap, &err);
		r1_detok_flush(&st, &buf, &len, &cap, &err);
		is_str(buf, "\xef\xbf\xbd" "A\xef\xbf\xbd\xef\xbf\xbd",
			   "stream: flush turns an unfinished tail into U+FFFD");
		is_int(st.n_pending, 0, "stream: flush empties the state");
		free(buf);
	}
}

typedef struct thread_arg
{
	const r1_tokenizer *tok;
	const char *text;
	size_t		want_n;
	int32_t    *want;
	int			failures;
} thread_arg;

static void *
encode_loop(void *p)
{
	thread_arg *a = p;

	for (int k = 0; k < 200; k++)
	{
		r1_error	err;
		int32_t    *ids = NULL;
		size_t		n = 0;

		if (r1_tokenizer_encode(a->tok, a->text, strlen(a->text), &ids, &n, &err) != 0 ||
			n != a->want_n || memcmp(ids, a->want, n * sizeof(int32_t)) != 0)
			a->failures++;
		free(ids);
	}
	return NULL;
}

static void
test_threads(const r1_tokenizer *tok)
{
	const char *text = "<｜User｜>Prove that √2 is irrational. 证明根号二是无理数。 x_1 + x_2 = 42\n\n";
	r1_error	err;
	thread_arg	args[4];
	pthread_t	th[4];
	int32_t    *want = NULL;
	size_t		n = 0;
	int			failures = 0;

	if (r1_tokenizer_encode(tok, text, strlen(text), &want, &n, &err) != 0)
	{
		ok(0, "threads: reference encode");
		return;
	}
	for (int i = 0; i < 4; i++)
	{
		args[i] = (thread_arg) {tok, text, n, want, 0};
		pthread_create(&th[i], NULL, encode_loop, &args[i]);
	}
	for (int i = 0; i < 4; i++)
	{
		pthread_join(th[i], NULL);
		failures += args[i].failures;
	}
	is_int(failures, 0, "threads: concurrent encodes on one tokenizer agree");
	free(want);
}

static void
test_large(const r1_tokenizer *tok)
{
	/* long runs hit the regex's backtracking and BPE's heap hard */
	size_t		len = 1 << 20;
	char	   *text = malloc(len + 1);
	r1_error	err = {{0}};
	int32_t    *ids = NULL;
	size_t		n = 0;
	double		t0;
	int			rc;

	memset(text, ' ', len);
	text[len - 1] = 'x';
	text[len] = '\0';
	t0 = r1_now_ms();
	rc = r1_tokenizer_encode(tok, text, len, &ids, &n, &err);
	if (!ok(rc == 0 && n > 0, "1 MiB of spaces encodes"))
		diag("  %s", err.msg);
	diag("1 MiB of spaces: %zu ids in %.1f ms", n, r1_now_ms() - t0);
	free(ids);
	ids = NULL;
	memset(text, '=', len);
	t0 = r1_now_ms();
	rc = r1_tokenizer_encode(tok, text, len, &ids, &n, &err);
	if (!ok(rc == 0 && n > 0, "1 MiB of punctuation (one pre-token) encodes"))
		diag("  %s", err.msg);
	diag("1 MiB of '=': %zu ids in %.1f ms", n, r1_now_ms() - t0);
	free(ids);
	free(text);
}

/* ---- user text: added tokens spelt as text; cancelling; long runs ---- */

static int
encode_with(const r1_tokenizer *tok, const char *text, size_t len, int parse_special,
			const int *cancel, int32_t **ids, size_t *n, r1_error *err)
{
	r1_encode_opts o = {.parse_special = parse_special, .cancel = cancel};

	return r1_tokenizer_encode_opts(tok, text, len, &o, ids, n, err);
}

/* parse_special = 0: no added token id, and the ids spell the text back */
static void
check_as_text(const r1_tokenizer *tok, const char *text, int32_t parsed_id, const char *what)
{
	r1_error	err = {{0}};
	int32_t    *ids = NULL;
	size_t		n = 0;
	bool		any_added = false;
	char	   *back = NULL;
	size_t		blen = 0;

	if (!ok(encode_with(tok, text, strlen(text), 0, NULL, &ids, &n, &err) == 0, "%s: encodes", what))
	{
		diag("  %s", err.msg);
		return;
	}
	for (size_t i = 0; i < n; i++)
		any_added |= ids[i] >= 151643;
	ok(n > 1 && !any_added, "%s: %zu ids, none an added token", what, n);
	ok(r1_tokenizer_decode(tok, ids, n, &back, &blen, &err) == 0 && blen == strlen(text) &&
	   memcmp(back, text, blen) == 0, "%s: the ids decode to the text", what);
	free(back);
	free(ids);
	ids = NULL;
	if (encode_with(tok, text, strlen(text), 1, NULL, &ids, &n, &err) == 0)
	{
		bool		has = false;

		for (size_t i = 0; i < n; i++)
			has |= ids[i] == parsed_id;
		ok(has, "%s: parse_special = 1 gives id %d", what, parsed_id);
	}
	else
		ok(0, "%s: parse_special = 1: %s", what, err.msg);
	free(ids);
}

static void
test_user_text(const r1_tokenizer *tok)
{
	r1_error	err = {{0}};
	int32_t    *ids = NULL;
	size_t		n = 0;

	is_int(r1_tokenizer_max_token_bytes(tok), 128, "the longest token spells 128 bytes (128 spaces)");
	check_as_text(tok, "<｜User｜>", 151644, "<｜User｜>");
	check_as_text(tok, "hi<｜Assistant｜>there", 151645, "<｜Assistant｜> inside text");
	check_as_text(tok, "</think>", 151649, "</think>");
	check_as_text(tok, "<｜begin▁of▁sentence｜>", 151646, "<｜begin▁of▁sentence｜>");
	check_as_text(tok, "x <｜end▁of▁sentence｜> y", 151643, "<｜end▁of▁sentence｜>");
	/* text without added tokens: the same ids either way (the golden cases) */
	{
		const char *t = "What is 6*7? Please reason step by step.";
		int32_t    *a = NULL,
				   *b = NULL;
		size_t		na = 0,
					nb = 0;

		ok(encode_with(tok, t, strlen(t), 0, NULL, &a, &na, &err) == 0 &&
		   encode_with(tok, t, strlen(t), 1, NULL, &b, &nb, &err) == 0 && na == nb &&
		   memcmp(a, b, na * sizeof(int32_t)) == 0, "plain text: same ids with and without parse_special");
		free(a);
		free(b);
	}

	/* a cancel already set stops at once */
	{
		int			cancel = 1;

		fails_with(encode_with(tok, "some text", 9, 0, &cancel, &ids, &n, &err), err,
				   R1_ENCODE_CANCELLED, "a set cancel flag stops encoding");
		ok(ids == NULL, "no ids after a cancel");
	}
}

typedef struct cancel_arg
{
	int			flag;
	double		set_at;
} cancel_arg;

static void *
cancel_later(void *p)
{
	cancel_arg *a = p;

	usleep(50 * 1000);
	a->set_at = r1_now_ms();
	__atomic_store_n(&a->flag, 1, __ATOMIC_RELAXED);
	return NULL;
}

/* 4 MB of one letter is one pre-token of 4 million symbols (seconds of BPE) */
static void
test_cancel_midway(const r1_tokenizer *tok)
{
	size_t		len = 4u << 20;
	char	   *text = malloc(len);
	cancel_arg	a = {0, 0};
	pthread_t	th;
	r1_error	err = {{0}};
	int32_t    *ids = NULL;
	size_t		n = 0;
	int			rc;
	double		done;

	memset(text, 'a', len);
	pthread_create(&th, NULL, cancel_later, &a);
	rc = encode_with(tok, text, len, 0, &a.flag, &ids, &n, &err);
	done = r1_now_ms();
	pthread_join(th, NULL);
	fails_with(rc, err, R1_ENCODE_CANCELLED, "4 MB of 'a': cancelled from another thread");
	/* "promptly", with room for a loaded machine: it would run for seconds */
	ok(a.set_at > 0 && done - a.set_at < 1500, "stopped %.1f ms after the cancel", done - a.set_at);
	free(ids);
	free(text);
}

/*
 * 16 million spaces under the Qwen2 split regex: PCRE2's default match limit
 * failed this ("match limit exceeded").  A tokenizer without merges keeps
 * the BPE trivial, so only the split is exercised: one id per space.
 */
static void
test_long_whitespace(void)
{
	static const char *const split[] = {r1_qwen2_split_regex};
	r1_tok_str	vocab[] = {{"\xc4\xa0", 2, 0}, {"\xc4\x8a", 2, 1}, {"x", 1, 2}};	/* " ", "\n", "x" */
	r1_tok_def	def = {.what = "spaces", .vocab = vocab, .n_vocab = 3, .split_regex = split,
	.n_split = 1, .bos_id = -1, .eos_id = -1};
	r1_tokenizer *t = NULL;
	r1_error	err = {{0}};
	size_t		len = 16000000;
	char	   *text = malloc(len + 2);
	int32_t    *ids = NULL;
	size_t		n = 0;
	int			rc;

	if (!ok(r1_tokenizer_create(&t, &def, &err) == 0, "a tokenizer of spaces"))
	{
		diag("  %s", err.msg);
		free(text);
		return;
	}
	memset(text, ' ', len);
	rc = encode_with(t, text, len, 0, NULL, &ids, &n, &err);
	if (!ok(rc == 0 && n == len, "16 million spaces: %zu ids", n))
		diag("  %s", err.msg);
	free(ids);
	text[len] = 'x';
	rc = encode_with(t, text, len + 1, 0, NULL, &ids, &n, &err);
	ok(rc == 0 && n == len + 1 && ids[len] == 2, "16 million spaces then x");
	free(ids);
	memset(text, '\n', len / 2);
	rc = encode_with(t, text, len + 1, 0, NULL, &ids, &n, &err);
	ok(rc == 0 && n == len + 1 && ids[0] == 1 && ids[len - 1] == 0, "8 million newlines, 8 million spaces, x");
	free(ids);
	free(text);
	r1_tokenizer_free(t);
}

int
main(void)
{
	const char *env = getenv("R1_FIXTURES");
	r1_tokenizer *tok = NULL;
	r1_error	err = {{0}};
	double		t0;
	char		cmd[PATH_MAX + 16];

	snprintf(fixtures, sizeof(fixtures), "%s", env && *env ? env : "test/fixtures");
	snprintf(tokdir, sizeof(tokdir), "%s/tokenizer", fixtures);
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/r1_tok_test.XXXXXX");
	if (!mkdtemp(tmpdir))
	{
		ok(0, "mkdtemp");
		return done_testing();
	}

	t0 = r1_now_ms();
	if (!ok(r1_tokenizer_load(&tok, tokdir, &err) == 0, "load %s", tokdir))
	{
		diag("  %s", err.msg);
		return done_testing();
	}
	diag("tokenizer load: %.1f ms", r1_now_ms() - t0);

	test_golden(tok);
	test_chat_and_lookups(tok);
	test_errors(tok);
	test_user_text(tok);
	test_cancel_midway(tok);
	test_long_whitespace();
	test_tiny();
	test_llama3();
	test_stream(tok);
	test_threads(tok);
	test_large(tok);

	r1_tokenizer_free(tok);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return done_testing();
}
