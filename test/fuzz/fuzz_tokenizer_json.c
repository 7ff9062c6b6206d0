/*
 * fuzz_tokenizer_json.c - arbitrary bytes as tokenizer.json (and, after a
 * separator line, tokenizer_config.json) loaded by r1_tokenizer_load from a
 * private temporary directory.
 *
 * Input: TOKENIZER_JSON [ "\n#tokenizer_config.json\n" CONFIG_JSON ].
 * A tokenizer that loads is then exercised: a few fixed strings encoded and
 * decoded, every id's bytes looked up, a streamed decode of ids 0..n.
 */
#define _GNU_SOURCE				/* memmem */
#include "tokenizer.h"
#include "fuzz_common.h"

static const char sep[] = "\n#tokenizer_config.json\n";

static void
exercise(const r1_tokenizer *tok)
{
	static const char *texts[] = {
		"", "Hello, world!", "  two  spaces\n\nand lines\r\n", "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80",
		"<think>x</think>", "e\xcc\x81", "12345 'll 've", "\xe2\x80\x8b\t\x0b",
	};
	int32_t		n = r1_tokenizer_n_tokens(tok);
	r1_error	err;

	FUZZ_CHECK(n >= 0, "n_tokens %d", n);
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
	{
		int32_t    *ids;
		size_t		n_ids;
		char	   *out;
		size_t		len;

		if (r1_tokenizer_encode(tok, texts[i], strlen(texts[i]), &ids, &n_ids, &err) != 0)
			continue;
		for (size_t k = 0; k < n_ids; k++)
			FUZZ_CHECK(ids[k] >= 0 && ids[k] < n, "encode gave id %d of %d", ids[k], n);
		if (r1_tokenizer_decode(tok, ids, n_ids, &out, &len, &err) == 0)
		{
			FUZZ_CHECK(strlen(out) <= len, "decode length");
			free(out);
		}
		free(ids);
	}
	/* every id (bounded: a fuzzed vocabulary may claim ids up to 2^26) */
	{
		r1_detok	st = {0};
		char	   *buf = NULL;
		size_t		len = 0,
					cap = 0;
		int32_t		lim = n < 4096 ? n : 4096;

		for (int32_t id = -1; id <= lim; id++)
		{
			size_t		blen;
			const char *b = r1_tokenizer_token_bytes(tok, id, &blen);

			if (b)
				FUZZ_CHECK(id >= 0 && id < n, "bytes for id %d of %d", id, n);
			if (r1_detok_push(&st, tok, id, &buf, &len, &cap, &err) != 0)
				FUZZ_CHECK(b == NULL, "detok refused id %d that has bytes", id);
		}
		if (r1_detok_flush(&st, &buf, &len, &cap, &err) == 0)
			FUZZ_CHECK(fuzz_utf8_valid((const uint8_t *) buf, len), "streamed decode is not UTF-8");
		free(buf);
	}
	(void) r1_tokenizer_token_id(tok, "<think>");
	(void) r1_tokenizer_token_id(tok, "");
	(void) r1_tokenizer_bos_id(tok);
	(void) r1_tokenizer_eos_id(tok);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	r1_tokenizer *tok = NULL;
	r1_error	err;
	const uint8_t *cfg = memmem(data, size, sep, sizeof(sep) - 1);
	size_t		json_len = cfg ? (size_t) (cfg - data) : size;

	fuzz_write_file("tokenizer.json", data, json_len);
	if (cfg)
	{
		cfg += sizeof(sep) - 1;
		fuzz_write_file("tokenizer_config.json", cfg, (size_t) (data + size - cfg));
	}
	else
		fuzz_remove_file("tokenizer_config.json");

	err.msg[0] = '\0';
	if (r1_tokenizer_load(&tok, fuzz_tmpdir_get(), &err) != 0)
	{
		FUZZ_CHECK(tok == NULL, "failed load returned a tokenizer");
		FUZZ_CHECK(err.msg[0] != '\0', "failure without a message");
		FUZZ_CHECK(strchr(err.msg, '\n') == NULL, "error is not one line: %s", err.msg);
		return 0;
	}
	exercise(tok);
	r1_tokenizer_free(tok);
	return 0;
}
