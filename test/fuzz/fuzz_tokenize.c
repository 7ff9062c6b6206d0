/*
 * fuzz_tokenize.c - the real tokenizer (test/fixtures/tokenizer, or
 * $R1_FUZZ_TOKENIZER) on arbitrary bytes.
 *
 * - encode accepts exactly the valid UTF-8 inputs (checked against an
 *   independent validator and r1_utf8_valid);
 * - every id it produces is in range, and decoding them gives back the text
 *   when the text is already in NFC (the tokenizer normalises to NFC);
 * - with parse_special = 0 (text from users) the same holds, and no id is
 *   an added token of the fixture (ids 151643 and up);
 * - the input read as a sequence of 16-bit ids and streamed through
 *   r1_detok_push/flush gives valid UTF-8, equal to r1_tokenizer_decode's
 *   output whenever that is valid UTF-8.
 */
#include "chat.h"
#include "tokenizer.h"
#include "fuzz_common.h"

#include <utf8proc.h>

static r1_tokenizer *tok;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = getenv("R1_FUZZ_TOKENIZER");
	r1_error	err;

	if (!dir || !*dir)
		dir = "test/fixtures/tokenizer";
	if (r1_tokenizer_load(&tok, dir, &err) != 0)
	{
		fprintf(stderr, "fuzz_tokenize: %s (run from the repository root or set R1_FUZZ_TOKENIZER)\n",
				err.msg);
		exit(1);
	}
	return 0;
}

/* true unless the (valid UTF-8) text is already in NFC */
static bool
needs_nfc_change(const uint8_t *data, size_t size)
{
	utf8proc_uint8_t *nfc = NULL;
	utf8proc_ssize_t n;
	bool		change;

	if (size == 0)
		return false;
	n = utf8proc_map(data, (utf8proc_ssize_t) size, &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
	change = n < 0 || (size_t) n != size || memcmp(nfc, data, size) != 0;
	free(nfc);
	return change;
}

static void
check_encode(const uint8_t *data, size_t size)
{
	int32_t    *ids = NULL;
	size_t		n_ids = 0;
	r1_error	err;
	bool		valid = fuzz_utf8_valid(data, size);
	int			rc = r1_tokenizer_encode(tok, (const char *) data, size, &ids, &n_ids, &err);
	int32_t		n = r1_tokenizer_n_tokens(tok);

	FUZZ_CHECK(!!r1_utf8_valid((const char *) data, size) == valid, "r1_utf8_valid disagrees");
	FUZZ_CHECK((rc == 0) == valid, "encode %s %s UTF-8: %s", rc == 0 ? "accepted" : "rejected",
			   valid ? "valid" : "invalid", rc == 0 ? "" : err.msg);
	if (rc != 0)
	{
		FUZZ_CHECK(ids == NULL, "failed encode returned ids");
		return;
	}
	for (size_t i = 0; i < n_ids; i++)
		FUZZ_CHECK(ids[i] >= 0 && ids[i] < n, "id %d out of range", ids[i]);
	{
		char	   *out;
		size_t		len;
		utf8proc_uint8_t *nfc = NULL;
		utf8proc_ssize_t nfc_len = size ? utf8proc_map(data, (utf8proc_ssize_t) size, &nfc,
													   UTF8PROC_STABLE | UTF8PROC_COMPOSE) : 0;

		/*
		 * Every token covers at least one byte of the normalised text, which
		 * NFC can make longer than the input (U+0344 -> U+0308 U+0301).
		 */
		FUZZ_CHECK(n_ids <= size || (nfc_len >= 0 && n_ids <= (size_t) nfc_len),
				   "%zu ids for %zu bytes (%zd after NFC)", n_ids, size, (ssize_t) nfc_len);
		FUZZ_CHECK(r1_tokenizer_decode(tok, ids, n_ids, &out, &len, &err) == 0, "decode: %s", err.msg);
		if (nfc_len >= 0 && (size_t) nfc_len == size &&
			(size == 0 || memcmp(nfc, data, size) == 0))
			FUZZ_CHECK(len == size && memcmp(out, data, size) == 0,
					   "decode(encode(x)) != x for NFC text of %zu bytes (got %zu bytes)", size, len);
		free(nfc);
		free(out);
	}
	free(ids);
}

static void
check_encode_as_text(const uint8_t *data, size_t size)
{
	r1_encode_opts opts = {.parse_special = 0};
	int32_t    *ids = NULL;
	size_t		n_ids = 0;
	r1_error	err;
	bool		valid = fuzz_utf8_valid(data, size);
	int			rc = r1_tokenizer_encode_opts(tok, (const char *) data, size, &opts, &ids, &n_ids, &err);

	FUZZ_CHECK((rc == 0) == valid, "encode as text %s %s UTF-8: %s", rc == 0 ? "accepted" : "rejected",
			   valid ? "valid" : "invalid", rc == 0 ? "" : err.msg);
	if (rc != 0)
		return;
	for (size_t i = 0; i < n_ids; i++)
		FUZZ_CHECK(ids[i] >= 0 && (r1_tokenizer_n_tokens(tok) != 151665 || ids[i] < 151643),
				   "id %d in text encoded without parse_special", ids[i]);
	if (!needs_nfc_change(data, size))
	{
		char	   *out;
		size_t		len;

		FUZZ_CHECK(r1_tokenizer_decode(tok, ids, n_ids, &out, &len, &err) == 0, "decode: %s", err.msg);
		FUZZ_CHECK(len == size && memcmp(out, data, size) == 0,
				   "decode(encode as text(x)) != x for NFC text of %zu bytes", size);
		free(out);
	}
	free(ids);
}

static void
check_detok(const uint8_t *data, size_t size)
{
	size_t		n_ids = size / 2;
	int32_t    *ids = malloc(sizeof(int32_t) * (n_ids + 1));
	int32_t		n = r1_tokenizer_n_tokens(tok);
	r1_detok	st = {0};
	char	   *buf = NULL,
			   *whole = NULL;
	size_t		len = 0,
				cap = 0,
				whole_len = 0,
				k = 0;
	r1_error	err;

	if (!ids)
		return;
	/*
	 * 16-bit ids cover the low ranks (single bytes, pieces of characters);
	 * the top bit of the second byte selects the added tokens and out-of-range
	 * ids instead.
	 */
	for (size_t i = 0; i < n_ids; i++)
	{
		uint32_t	v = data[2 * i] | (uint32_t) data[2 * i + 1] << 8;
		int32_t		id = (v & 0x8000) ? n - 32 + (int32_t) (v & 0x3f) : (int32_t) (v & 0x7fff);

		if (r1_detok_push(&st, tok, id, &buf, &len, &cap, &err) != 0)
		{
			FUZZ_CHECK(r1_tokenizer_token_bytes(tok, id, NULL) == NULL, "push refused id %d", id);
			continue;
		}
		ids[k++] = id;
		FUZZ_CHECK(buf && strlen(buf) <= len, "buffer");
		FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *) buf, len), "streamed text is not UTF-8 after %zu ids", k);
	}
	FUZZ_CHECK(r1_detok_flush(&st, &buf, &len, &cap, &err) == 0, "flush: %s", err.msg);
	FUZZ_CHECK(buf != NULL && fuzz_utf8_valid((const uint8_t *) buf, len), "flushed text is not UTF-8");
	FUZZ_CHECK(r1_tokenizer_decode(tok, ids, k, &whole, &whole_len, &err) == 0, "decode: %s", err.msg);
	if (fuzz_utf8_valid((const uint8_t *) whole, whole_len))
		FUZZ_CHECK(whole_len == len && memcmp(whole, buf, len) == 0,
				   "streamed decode differs from decode (%zu vs %zu bytes)", len, whole_len);
	free(whole);
	free(buf);
	free(ids);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_encode(data, size);
	check_encode_as_text(data, size);
	check_detok(data, size);
	return 0;
}
