/*
 * tokenizer_gguf.c - the tokenizer stored in a GGUF file's metadata, as
 * llama.cpp's converter writes it for Qwen2 and Llama 3 models:
 *
 *   tokenizer.ggml.model       "gpt2" (byte-level BPE)
 *   tokenizer.ggml.pre         "deepseek-r1-qwen" or "qwen2" (the Qwen2 split
 *                              regex, NFC; absent: the same), "llama-bpe" or
 *                              "llama3" (the Llama 3 regex, no normalizer,
 *                              ignore_merges as Llama 3's tokenizer.json)
 *   tokenizer.ggml.tokens      [string] token i's byte-level string
 *   tokenizer.ggml.token_type  [int32] 1 normal, 2 unknown, 3 control (a
 *                              special added token), 4 user-defined (an added
 *                              token), 5 unused (padding: no token), 6 byte
 *   tokenizer.ggml.merges      [string] "a b", in rank order
 *   tokenizer.ggml.bos_token_id / eos_token_id
 *
 * Built through r1_tokenizer_create, like tokenizer.json.  Added tokens are
 * matched in the raw text (normalized = false), which is what the
 * DeepSeek-R1-Distill-Qwen tokenizer.json says for all of them.
 */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "gguf.h"

#define TT_NORMAL 1
#define TT_CONTROL 3
#define TT_USER_DEFINED 4
#define TT_UNUSED 5

static const char *
base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

int
r1_tokenizer_load_gguf(r1_tokenizer **out, const char *path, r1_error *err)
{
	r1_gguf		g;
	const char *file = base_name(path);
	r1_gguf_str model,
				pre;
	const r1_gguf_kv *tokens_kv,
			   *types_kv = NULL,
			   *merges_kv = NULL;
	r1_gguf_str *tokens = NULL,
			   *merges = NULL;
	r1_tok_str *vocab = NULL,
			   *ma = NULL,
			   *mb = NULL;
	r1_tok_added *added = NULL;
	r1_tok_def	def;
	const char *split[1] = {r1_qwen2_split_regex};
	int			llama3 = 0;
	int64_t		v;
	int			rc = -1;

	*out = NULL;
	if (r1_gguf_open(&g, path, err) != 0)
		return -1;
	memset(&def, 0, sizeof(def));
	def.what = file;
	def.bos_id = def.eos_id = -1;
	if (!r1_gguf_find_kv(&g, "tokenizer.ggml.tokens"))
	{
		r1_fail(err, "%s: the file holds no tokenizer (no tokenizer.ggml.tokens): give one with --tokenizer DIR", file);
		goto out;
	}
	if (r1_gguf_get_str(&g, "tokenizer.ggml.model", &model, 1, err) != 0)
		goto out;
	if (model.len != 4 || memcmp(model.s, "gpt2", 4) != 0)
	{
		r1_fail(err, "%s: tokenizer.ggml.model \"%.*s\" is not supported (only \"gpt2\", byte-level BPE)",
				file, (int) (model.len > 64 ? 64 : model.len), model.s);
		goto out;
	}
	switch (r1_gguf_get_str(&g, "tokenizer.ggml.pre", &pre, 0, err))
	{
		case -1:
			goto out;
		case 0:
#define PRE_IS(lit) (pre.len == sizeof(lit) - 1 && memcmp(pre.s, lit, sizeof(lit) - 1) == 0)
			if (PRE_IS("llama-bpe") || PRE_IS("llama3"))
				llama3 = 1;
			else if (!(PRE_IS("deepseek-r1-qwen") || PRE_IS("qwen2")))
			{
				r1_fail(err, "%s: tokenizer.ggml.pre \"%.*s\" is not supported (\"deepseek-r1-qwen\", \"qwen2\" or \"llama-bpe\")",
						file, (int) (pre.len > 64 ? 64 : pre.len), pre.s);
				goto out;
			}
#undef PRE_IS
			break;
	}
	if (r1_gguf_get_array(&g, "tokenizer.ggml.tokens", R1_GGUF_STRING, &tokens_kv, 1, err) != 0 ||
		r1_gguf_get_array(&g, "tokenizer.ggml.token_type", R1_GGUF_INT64, &types_kv, 0, err) < 0 ||
		r1_gguf_get_array(&g, "tokenizer.ggml.merges", R1_GGUF_STRING, &merges_kv, 1, err) != 0)
		goto out;
	if (tokens_kv->n >= (1u << 26))
	{
		r1_fail(err, "%s: %llu tokens is too many", file, (unsigned long long) tokens_kv->n);
		goto out;
	}
	if (types_kv && types_kv->n != tokens_kv->n)
	{
		r1_fail(err, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens", file,
				(unsigned long long) types_kv->n, (unsigned long long) tokens_kv->n);
		goto out;
	}
	if (r1_gguf_array_strings(&g, tokens_kv, &tokens, err) != 0 ||
		r1_gguf_array_strings(&g, merges_kv, &merges, err) != 0)
		goto out;
	vocab = r1_malloc(sizeof(r1_tok_str) * (tokens_kv->n + 1), err);
	added = r1_calloc(tokens_kv->n + 1, sizeof(r1_tok_added), err);
	ma = r1_malloc(sizeof(r1_tok_str) * (merges_kv->n + 1), err);
	mb = r1_malloc(sizeof(r1_tok_str) * (merges_kv->n + 1), err);
	if (!vocab || !added || !ma || !mb)
		goto out;
	for (uint64_t i = 0; i < tokens_kv->n; i++)
	{
		int64_t		type = types_kv ? r1_gguf_array_int(types_kv, i) : TT_NORMAL;

		if (type < 1 || type > 6)
		{
			r1_fail(err, "%s: token %llu has unknown token type %lld", file, (unsigned long long) i,
					(long long) type);
			goto out;
		}
		if (type == TT_UNUSED)
			continue;
		if (type == TT_CONTROL || type == TT_USER_DEFINED)
		{
			r1_tok_added *a = &added[def.n_added++];

			a->content = tokens[i].s;
			a->len = tokens[i].len;
			a->id = (int32_t) i;
			a->special = type == TT_CONTROL;
		}
		else
		{
			r1_tok_str *t = &vocab[def.n_vocab++];

			t->s = tokens[i].s;
			t->len = tokens[i].len;
			t->id = (int32_t) i;
		}
	}
	for (uint64_t i = 0; i < merges_kv->n; i++)
	{
		const char *sp = memchr(merges[i].s, ' ', merges[i].len);

		if (!sp || sp == merges[i].s || memchr(sp + 1, ' ', merges[i].len - (size_t) (sp - merges[i].s) - 1))
		{
			r1_fail(err, "%s: merge %llu is malformed (want \"a b\")", file, (unsigned long long) i);
			goto out;
		}
		ma[i].s = merges[i].s;
		ma[i].len = (size_t) (sp - merges[i].s);
		mb[i].s = sp + 1;
		mb[i].len = merges[i].len - ma[i].len - 1;
	}
	def.vocab = vocab;
	def.added = added;
	def.merge_a = ma;
	def.merge_b = mb;
	def.n_merges = (size_t) merges_kv->n;
	def.nfc = !llama3;
	def.ignore_merges = llama3;
	if (llama3)
		split[0] = r1_llama3_split_regex;
	def.split_regex = split;
	def.n_split = 1;
	if (r1_gguf_get_int(&g, "tokenizer.ggml.bos_token_id", 0, (int64_t) tokens_kv->n - 1, &v, 0, err) < 0)
		goto out;
	if (r1_gguf_find_kv(&g, "tokenizer.ggml.bos_token_id"))
		def.bos_id = (int32_t) v;
	if (r1_gguf_get_int(&g, "tokenizer.ggml.eos_token_id", 0, (int64_t) tokens_kv->n - 1, &v, 0, err) < 0)
		goto out;
	if (r1_gguf_find_kv(&g, "tokenizer.ggml.eos_token_id"))
		def.eos_id = (int32_t) v;
	rc = r1_tokenizer_create(out, &def, err);
out:
	free(tokens);
	free(merges);
	free(vocab);
	free(added);
	free(ma);
	free(mb);
	r1_gguf_close(&g);
	return rc;
}
