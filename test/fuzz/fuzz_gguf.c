/*
 * fuzz_gguf.c - arbitrary bytes as a .gguf file.
 *
 * r1_gguf_open must either fail with a one-line error or expose only
 * metadata and tensors that lie inside the mapping: every tensor's bytes are
 * read end to end and decoded by its type, every string array is indexed,
 * and the model and tokenizer loaders run on whatever opened.
 */
#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "tokenizer.h"
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	r1_gguf		g;
	r1_error	err;
	const char *path = fuzz_write_file("model.gguf", data, size);
	const uint8_t *base;
	volatile float sink = 0;

	err.msg[0] = '\0';
	if (r1_gguf_open(&g, path, &err) != 0)
	{
		FUZZ_CHECK(err.msg[0] != '\0', "failure without a message");
		FUZZ_CHECK(strchr(err.msg, '\n') == NULL, "error is not one line: %s", err.msg);
		FUZZ_CHECK(g.tensors == NULL && g.kv == NULL && g.path == NULL && g.map.data == NULL,
				   "failed open left state behind");
		return 0;
	}
	base = g.map.data;
	FUZZ_CHECK(g.map.size == size && size >= 24, "opened a %zu-byte file", size);
	for (int i = 0; i < g.n_kv; i++)
	{
		const r1_gguf_kv *kv = &g.kv[i];

		FUZZ_CHECK(kv->key && kv->key[0], "key %d empty", i);
		FUZZ_CHECK(kv->len == 0 || (kv->data >= base && kv->len <= (size_t) (base + size - kv->data)),
				   "metadata \"%s\" outside the file", kv->key);
		for (uint64_t k = 0; k < kv->len; k++)
			sink += kv->data[k];
		if (kv->type == R1_GGUF_ARRAY && kv->arr_type == R1_GGUF_STRING)
		{
			r1_gguf_str *s;

			FUZZ_CHECK(r1_gguf_array_strings(&g, kv, &s, &err) == 0, "indexing \"%s\": %s", kv->key, err.msg);
			for (uint64_t k = 0; k < kv->n; k++)
				FUZZ_CHECK(s[k].len == 0 || ((const uint8_t *) s[k].s >= kv->data &&
											 s[k].len <= (size_t) (kv->data + kv->len - (const uint8_t *) s[k].s)),
						   "string %llu of \"%s\" outside its array", (unsigned long long) k, kv->key);
			free(s);
		}
	}
	for (int i = 0; i < g.n_tensors; i++)
	{
		const r1_tensor *t = &g.tensors[i];
		const uint8_t *p = t->data;
		size_t		want;
		int64_t		numel = r1_tensor_numel(t);

		FUZZ_CHECK(t->name && t->name[0] && r1_gguf_find(&g, t->name) != NULL, "tensor %d name", i);
		FUZZ_CHECK(t->nbytes == 0 || (p >= base + g.data_offset && t->nbytes <= (size_t) (base + size - p)),
				   "tensor \"%s\": %zu bytes at offset %td outside the data section", t->name, t->nbytes, p - base);
		FUZZ_CHECK((uintptr_t) (p - base - g.data_offset) % g.alignment == 0, "tensor \"%s\" misaligned", t->name);
		FUZZ_CHECK(r1_dtype_row_bytes(t->dtype, numel, &want) == 0 && want == t->nbytes,
				   "tensor \"%s\": size %zu, expected %zu", t->name, t->nbytes, want);
		for (size_t k = 0; k < t->nbytes; k++)
			sink += p[k];
		/* decode the first rows by type */
		{
			int64_t		row = t->shape[t->ndim - 1];
			float		buf[1024];

			if (row <= 1024)
				for (int64_t r = 0; r < numel / row && r < 4; r++)
				{
					size_t		rb;

					r1_dtype_row_bytes(t->dtype, row, &rb);
					r1_dequantize_row(t->dtype, p + r * rb, buf, row);
					sink += buf[0];
				}
		}
	}
	r1_gguf_close(&g);
	/* the loaders on top: errors must be clean, successes must be usable */
	{
		r1_model   *m;
		r1_tokenizer *tok;

		err.msg[0] = '\0';
		if (r1_model_load(&m, path, &err) == 0)
			r1_model_free(m);
		else
			FUZZ_CHECK(err.msg[0] && !strchr(err.msg, '\n'), "model error: %s", err.msg);
		err.msg[0] = '\0';
		if (r1_tokenizer_load_gguf(&tok, path, &err) == 0)
		{
			int32_t    *ids;
			size_t		n;

			if (r1_tokenizer_encode(tok, "Hello, world 42!", 16, &ids, &n, &err) == 0)
				free(ids);
			r1_tokenizer_free(tok);
		}
		else
			FUZZ_CHECK(err.msg[0] && !strchr(err.msg, '\n'), "tokenizer error: %s", err.msg);
	}
	(void) sink;
	return 0;
}
