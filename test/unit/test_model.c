/*
 * test_model.c - safetensors, config.json and checkpoint loading: the golden
 * fixture in every layout a checkpoint comes in (single file, shards with an
 * index, bf16, rope_parameters, tied embeddings), random weights, and one
 * test per malformed input, each expecting the clear one-line error.
 */
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "demo_model.h"
#include "model.h"
#include "tap.h"

static char fixture[4096];		/* test/fixtures/qwen2-tiny, absolute */
static char tmp[64];
static int	dir_no;

static void
write_text(const char *path, const char *text)
{
	FILE	   *f = fopen(path, "w");

	if (f)
	{
		fputs(text, f);
		fclose(f);
	}
}

static char *
read_all(const char *path, size_t *len)
{
	char	   *buf;
	r1_error	err;

	if (r1_read_file(path, &buf, len, &err) != 0)
		return NULL;
	return buf;
}

static void
write_bytes(const char *path, const char *data, size_t len)
{
	FILE	   *f = fopen(path, "wb");

	if (f)
	{
		fwrite(data, 1, len, f);
		fclose(f);
	}
}

/* a fresh checkpoint dir with the fixture's config (edited by sed-like replace) and weights */
static const char *
new_dir(const char *config_from, const char *config_to, const char *weights)
{
	static char dir[128];
	char		path[256],
				src[4200];
	size_t		len;
	char	   *cfg;

	snprintf(dir, sizeof(dir), "%s/m%d", tmp, dir_no++);
	mkdir(dir, 0755);
	snprintf(src, sizeof(src), "%s/config.json", fixture);
	cfg = read_all(src, &len);
	if (cfg && config_from)
	{
		char	   *at = strstr(cfg, config_from);

		if (at)
		{
			size_t		out_len = len - strlen(config_from) + strlen(config_to);
			char	   *out = malloc(out_len + 1);

			memcpy(out, cfg, at - cfg);
			strcpy(out + (at - cfg), config_to);
			strcat(out, at + strlen(config_from));
			free(cfg);
			cfg = out;
		}
	}
	snprintf(path, sizeof(path), "%s/config.json", dir);
	write_text(path, cfg ? cfg : "");
	free(cfg);
	if (weights)
	{
		snprintf(src, sizeof(src), "%s/%s", fixture, weights);
		snprintf(path, sizeof(path), "%s/model.safetensors", dir);
		symlink(src, path);
	}
	return dir;
}

static int
same_weights(const r1_model *a, const r1_model *b)
{
	const r1_tensor *ta[] = {&a->embed, &a->final_norm, &a->lm_head, &a->layers[1].w_down, &a->layers[0].bq};
	const r1_tensor *tb[] = {&b->embed, &b->final_norm, &b->lm_head, &b->layers[1].w_down, &b->layers[0].bq};

	for (int i = 0; i < 5; i++)
		if (ta[i]->nbytes != tb[i]->nbytes || memcmp(ta[i]->data, tb[i]->data, ta[i]->nbytes) != 0)
			return 0;
	return 1;
}

static void
expect_fail(const char *dir, const char *frag, const char *name)
{
	r1_model   *m = NULL;
	r1_error	err = {""};
	int			rc = r1_model_load(&m, dir, &err);

	fails_with(rc, err, frag, "%s", name);
	ok(m == NULL && strchr(err.msg, '\n') == NULL, "%s: no model, one-line message", name);
	r1_model_free(m);
}

int
main(void)
{
	const char *fx = getenv("R1_FIXTURES") ? getenv("R1_FIXTURES") : "test/fixtures";
	char		cwd[2048],
				path[4300];
	r1_model   *ref = NULL,
			   *m = NULL;
	r1_error	err;
	r1_config	cfg;
	const char *d;

	if (fx[0] == '/')
		snprintf(fixture, sizeof(fixture), "%s/qwen2-tiny", fx);
	else
		snprintf(fixture, sizeof(fixture), "%.2000s/%.1000s/qwen2-tiny", getcwd(cwd, sizeof(cwd)) ? cwd : ".", fx);
	snprintf(tmp, sizeof(tmp), "/tmp/r1-model-XXXXXX");
	if (!mkdtemp(tmp))
		return 1;

	/* the fixture as published: config + one float32 file */
	if (ok(r1_model_load(&ref, fixture, &err) == 0, "fixture loads"))
	{
		is_int(ref->cfg.vocab_size, 512, "vocab");
		is_int(ref->cfg.hidden_size, 64, "hidden");
		is_int(ref->cfg.n_layers, 2, "layers");
		is_int(ref->cfg.n_kv_heads, 2, "kv heads");
		is_int(ref->cfg.head_dim, 16, "head_dim");
		ok(ref->cfg.rope_theta == 10000.0f && ref->cfg.rms_norm_eps == 1e-6f, "rope_theta and eps");
		is_int(ref->dtype, R1_F32, "dtype F32");
		is_int(ref->layers[1].w_gate.shape[0], 160, "gate_proj rows");
		ok(ref->lm_head.data != ref->embed.data, "untied lm_head");
		is_str(ref->name, "qwen2-tiny", "name is the directory");
		is_str(ref->cfg.torch_dtype, "float32", "torch_dtype");
		ok(ref->cfg.bos_id == 1 && ref->cfg.eos_id == 2 && !ref->cfg.tie_embeddings, "bos, eos, untied");
		is_int(ref->cfg.max_position, 512, "max_position_embeddings");
		/* values read with Python from the file */
		ok(r1_tensor_get_f32(&ref->embed, 0) == 2.509744167327881f &&
		   r1_tensor_get_f32(&ref->lm_head, 1) == -0.20153209567070007f &&
		   r1_tensor_get_f32(&ref->final_norm, 7) == 1.0669691562652588f &&
		   r1_tensor_get_f32(&ref->layers[1].bk, 31) == 0.039030950516462326f &&
		   r1_tensor_get_f32(&ref->layers[0].w_down, 7) == 0.07700114697217941f, "weight values");
		is_int(ref->weight_bytes, 611256 - 8 - 2736, "weight_bytes: every tensor of the file");
		ok(ref->layers[0].wq.shape[0] == 64 && ref->layers[0].wk.shape[0] == 32 &&
		   ref->layers[0].bv.shape[0] == 32 && ref->layers[0].wo.shape[1] == 64 &&
		   ref->layers[0].w_down.shape[1] == 160, "attention and MLP shapes");
	}
	else
		diag("%s", err.msg);

	/* bf16 file */
	d = new_dir(NULL, NULL, "model-bf16.safetensors");
	if (ok(r1_model_load(&m, d, &err) == 0, "bf16 checkpoint loads"))
	{
		is_int(m->dtype, R1_BF16, "dtype BF16");
		ok(r1_tensor_get_f32(&m->embed, 0) == 2.515625f && r1_tensor_get_f32(&m->final_norm, 7) == 1.0703125f &&
		   r1_tensor_get_f32(&m->layers[1].bk, 31) == 0.0390625f, "bf16 weight values");
		is_int(m->weight_bytes, 307024 - 8 - 2760, "bf16 weight_bytes");
		ok(ref && fabsf(r1_tensor_get_f32(&m->embed, 100) - r1_tensor_get_f32(&ref->embed, 100)) <=
		   fabsf(r1_tensor_get_f32(&ref->embed, 100)) / 128, "bf16 value is the rounded f32 value");
		r1_model_free(m);
	}

	/* rope_parameters instead of a top-level rope_theta */
	d = new_dir("\"rope_theta\": 10000.0,", "\"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 500.0},", "model.safetensors");
	if (ok(r1_model_load(&m, d, &err) == 0, "rope_parameters config loads"))
	{
		ok(m->cfg.rope_theta == 500.0f, "rope_theta from rope_parameters");
		r1_model_free(m);
	}

	/* shards with an index, written with our writer from the fixture's tensors */
	if (ref)
	{
		r1_safetensors *src = &ref->files[0];
		int			half = src->n_tensors / 2;
		char		idx[65536];
		size_t		n = 0;

		d = new_dir(NULL, NULL, NULL);
		snprintf(path, sizeof(path), "%s/model-00001-of-00002.safetensors", d);
		ok(r1_st_write(path, src->tensors, half, &err) == 0, "write shard 1");
		snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", d);
		ok(r1_st_write(path, src->tensors + half, src->n_tensors - half, &err) == 0, "write shard 2");
		n += snprintf(idx + n, sizeof(idx) - n, "{\"metadata\": {}, \"weight_map\": {");
		for (int i = 0; i < src->n_tensors; i++)
			n += snprintf(idx + n, sizeof(idx) - n, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
						  i ? ", " : "", src->tensors[i].name, i < half ? 1 : 2);
		snprintf(idx + n, sizeof(idx) - n, "}}");
		snprintf(path, sizeof(path), "%s/model.safetensors.index.json", d);
		write_text(path, idx);
		if (ok(r1_model_load(&m, d, &err) == 0, "sharded checkpoint loads"))
		{
			is_int(m->n_files, 2, "two shard files");
			ok(same_weights(ref, m), "sharded weights equal the single-file ones");
			r1_model_free(m);
		}
		else
			diag("%s", err.msg);
		/* the index names a shard that is not there */
		snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", d);
		unlink(path);
		expect_fail(d, "model-00002-of-00002.safetensors", "index names a missing shard");
		snprintf(path, sizeof(path), "%s/model.safetensors.index.json", d);
		write_text(path, "{\"weight_map\": {\"model.norm.weight\": \"../../etc/passwd\"}}");
		expect_fail(d, "not a plain file name", "index with a path outside the directory");
		write_text(path, "{\"weight_map\": {\"model.norm.weight\": \"..\"}}");
		expect_fail(d, "not a plain file name", "index naming ..");
		write_text(path, "{\"weight_map\": {\"model.norm.weight\": ");
		expect_fail(d, "model.safetensors.index.json: invalid JSON", "index.json with bad JSON");
		write_text(path, "{\"metadata\": {}}");
		expect_fail(d, "no \"weight_map\"", "index.json without weight_map");
		/* no index and no model.safetensors: every *.safetensors, sorted */
		unlink(path);
		snprintf(path, sizeof(path), "%s/b-second.safetensors", d);
		r1_st_write(path, src->tensors + half, src->n_tensors - half, &err);
		snprintf(path, sizeof(path), "%s/a-first.safetensors", d);
		r1_st_write(path, src->tensors, half, &err);
		snprintf(path, sizeof(path), "%s/model-00001-of-00002.safetensors", d);
		unlink(path);
		if (ok(r1_model_load(&m, d, &err) == 0, "directory of *.safetensors without an index loads"))
		{
			ok(m->n_files == 2 && strstr(m->files[0].path, "a-first") && strstr(m->files[1].path, "b-second"),
			   "files opened in sorted order");
			ok(same_weights(ref, m), "same weights");
			r1_model_free(m);
		}
		else
			diag("%s", err.msg);

		/* tied embeddings: no lm_head tensor */
		d = new_dir("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true", NULL);
		{
			r1_tensor  *kept = malloc(sizeof(r1_tensor) * src->n_tensors);
			int			k = 0;

			for (int i = 0; i < src->n_tensors; i++)
				if (strcmp(src->tensors[i].name, "lm_head.weight") != 0)
					kept[k++] = src->tensors[i];
			snprintf(path, sizeof(path), "%s/model.safetensors", d);
			r1_st_write(path, kept, k, &err);
			if (ok(r1_model_load(&m, d, &err) == 0, "tied checkpoint loads"))
			{
				ok(m->lm_head.data == m->embed.data, "lm_head is the embedding");
				r1_model_free(m);
			}
			/* the same file without tying is an error naming lm_head */
			d = new_dir(NULL, NULL, NULL);
			snprintf(path, sizeof(path), "%s/model.safetensors", d);
			r1_st_write(path, kept, k, &err);
			expect_fail(d, "lm_head.weight", "missing lm_head without tie_word_embeddings");
			/* a missing layer tensor */
			k = 0;
			for (int i = 0; i < src->n_tensors; i++)
				if (strcmp(src->tensors[i].name, "model.layers.1.mlp.up_proj.weight") != 0)
					kept[k++] = src->tensors[i];
			d = new_dir(NULL, NULL, NULL);
			snprintf(path, sizeof(path), "%s/model.safetensors", d);
			r1_st_write(path, kept, k, &err);
			expect_fail(d, "model.layers.1.mlp.up_proj.weight", "missing tensor named");
			/* a required weight in a dtype we do not compute with */
			for (int i = 0; i < src->n_tensors; i++)
			{
				kept[i] = src->tensors[i];
				if (strcmp(kept[i].name, "model.norm.weight") == 0)
					kept[i].dtype = R1_I32;	/* same byte size as F32 */
			}
			d = new_dir(NULL, NULL, NULL);
			snprintf(path, sizeof(path), "%s/model.safetensors", d);
			r1_st_write(path, kept, src->n_tensors, &err);
			expect_fail(d, "model.norm.weight\": dtype I32", "wrong dtype named");
			/* F64: write it as I64 (same size) and rename the dtype in the header */
			for (int i = 0; i < src->n_tensors; i++)
				kept[i] = src->tensors[i];
			{
				float	   *w = malloc(sizeof(double) * 64);
				size_t		len;
				char	   *bytes;
				char	   *at;

				for (int i = 0; i < src->n_tensors; i++)
					if (strcmp(kept[i].name, "model.layers.0.input_layernorm.weight") == 0)
					{
						kept[i].dtype = R1_I64;
						kept[i].data = w;
						kept[i].nbytes = sizeof(double) * 64;
					}
				memset(w, 0, sizeof(double) * 64);
				d = new_dir(NULL, NULL, NULL);
				snprintf(path, sizeof(path), "%s/model.safetensors", d);
				r1_st_write(path, kept, src->n_tensors, &err);
				bytes = read_all(path, &len);
				if (bytes && (at = strstr(bytes + 8, "\"I64\"")) != NULL)
				{
					at[1] = 'F';
					write_bytes(path, bytes, len);
				}
				free(bytes);
				free(w);
				expect_fail(d, "model.safetensors: tensor \"model.layers.0.input_layernorm.weight\": dtype other",
							"F64 weight named, with its file");
			}
			free(kept);
		}
	}

	/* config.json problems */
	d = new_dir("\"hidden_size\": 64", "\"hidden_size\": 128", "model.safetensors");
	expect_fail(d, "shape [512, 64], config.json wants [512, 128]", "shape mismatch names file, tensor and shapes");
	d = new_dir("Qwen2ForCausalLM", "MistralForCausalLM", "model.safetensors");
	expect_fail(d, "unknown architecture MistralForCausalLM", "unknown architecture");
	d = new_dir("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", "model.safetensors");
	expect_fail(d, "not a multiple", "heads that do not divide");
	d = new_dir("\"vocab_size\": 512", "\"vocab_size\": 512,,", "model.safetensors");
	expect_fail(d, "config.json: invalid JSON at line", "config.json with bad JSON");
	d = new_dir("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}", "model.safetensors");
	expect_fail(d, "rope scaling type \"yarn\" is not supported", "rope scaling rejected");
	snprintf(path, sizeof(path), "%s/nowhere", tmp);
	expect_fail(path, "config.json: cannot open", "missing directory");
	d = new_dir(NULL, NULL, NULL);
	expect_fail(d, "no model.safetensors", "directory without weights");

	/* malformed safetensors files */
	{
		size_t		len;
		char		src[4200];
		char	   *data;

		snprintf(src, sizeof(src), "%s/model.safetensors", fixture);
		data = read_all(src, &len);
		if (data)
		{
			size_t		cuts[] = {0, 4, 8, 100, len / 2, len - 1};
			uint64_t	hlen;

			memcpy(&hlen, data, 8);
			for (int i = 0; i < 6; i++)
			{
				char		name[64];

				d = new_dir(NULL, NULL, NULL);
				snprintf(path, sizeof(path), "%s/model.safetensors", d);
				write_bytes(path, data, cuts[i]);
				snprintf(name, sizeof(name), "file truncated at %zu of %zu bytes", cuts[i], len);
				expect_fail(d, "model.safetensors", name);
				if (cuts[i] > 8 + hlen)
				{
					ok(r1_model_load(&m, d, &err) != 0 && strstr(err.msg, "model.safetensors: tensor \"") &&
					   strstr(err.msg, "file truncated?"), "%s: names the tensor", name);
				}
			}
			/* a header length beyond the file */
			d = new_dir(NULL, NULL, NULL);
			snprintf(path, sizeof(path), "%s/model.safetensors", d);
			{
				char	   *copy = malloc(len);
				uint64_t	big = len;

				memcpy(copy, data, len);
				memcpy(copy, &big, 8);
				write_bytes(path, copy, len);
				expect_fail(d, "header length", "header length larger than the file");
				/* header not JSON */
				memcpy(copy, &hlen, 8);
				memset(copy + 8, '#', 16);
				write_bytes(path, copy, len);
				expect_fail(d, "header is not a JSON object", "header not JSON");
				free(copy);
			}
			free(data);
		}
		/* offsets that do not match shape x dtype, and offsets out of range */
		d = new_dir(NULL, NULL, NULL);
		snprintf(path, sizeof(path), "%s/model.safetensors", d);
		{
			const char *h1 = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,12]}}";
			const char *h2 = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,160]}}";
			const char *h3 = "{\"x\":{\"dtype\":\"Q9\",\"shape\":[4],\"data_offsets\":[0,16]}}";
			const char *hs[] = {h1, h2, h3};
			const char *frags[] = {"hold 12 bytes, shape and dtype need 16", "exceed the file's 16 data bytes",
			"unknown dtype \"Q9\""};
			r1_safetensors st;

			for (int i = 0; i < 3; i++)
			{
				char		buf[256];
				uint64_t	hl = strlen(hs[i]);

				memcpy(buf, &hl, 8);
				memcpy(buf + 8, hs[i], hl);
				memset(buf + 8 + hl, 0, 16);
				write_bytes(path, buf, 8 + hl + 16);
				fails_with(r1_st_open(&st, path, &err), err, frags[i], "safetensors: %s", frags[i]);
				ok(strstr(err.msg, "tensor \"x\"") != NULL, "safetensors: the message names the tensor");
			}
		}
	}

	/* golden file: I64 tensors parse */
	{
		r1_safetensors st;
		const r1_tensor *t;

		snprintf(path, sizeof(path), "%s/golden.safetensors", fixture);
		if (ok(r1_st_open(&st, path, &err) == 0, "golden.safetensors opens"))
		{
			t = r1_st_find(&st, "case1.input_ids");
			ok(t && t->dtype == R1_I64 && t->shape[0] == 5 && ((const int64_t *) t->data)[0] == 290,
			   "I64 input ids read");
			r1_st_close(&st);
		}
	}

	/* config.json variants, parsed directly */
	{
#define BASE "\"vocab_size\": 1000, \"hidden_size\": 256, \"intermediate_size\": 512, " \
			 "\"num_hidden_layers\": 2, \"num_attention_heads\": 8"
		const char *j;

		j = "{\"model_type\": \"qwen2\", " BASE ", \"eos_token_id\": [151643, 151645], \"dtype\": \"bfloat16\"}";
		if (ok(r1_config_parse(&cfg, j, strlen(j), "c.json", &err) == 0, "model_type qwen2 without architectures"))
		{
			ok(cfg.n_kv_heads == 8 && cfg.head_dim == 32, "kv heads default to heads, head_dim = hidden/heads");
			ok(cfg.rope_theta == 10000.0f && cfg.rms_norm_eps == 1e-6f, "rope_theta and eps defaults");
			ok(cfg.eos_id == 151643 && cfg.bos_id == -1, "eos from a list, bos absent");
			is_str(cfg.torch_dtype, "bfloat16", "\"dtype\" read when torch_dtype is absent");
			ok(!cfg.tie_embeddings, "untied by default");
		}
		else
			diag("%s", err.msg);
		j = "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE ", \"head_dim\": 64, \"num_key_value_heads\": 2, "
			"\"rope_parameters\": {\"rope_theta\": 1000000.0, \"rope_type\": \"default\"}, "
			"\"rope_scaling\": {\"type\": \"default\"}, \"tie_word_embeddings\": true, \"rms_norm_eps\": 1e-5}";
		if (ok(r1_config_parse(&cfg, j, strlen(j), "c.json", &err) == 0, "rope_parameters, head_dim, default rope_scaling"))
			ok(cfg.head_dim == 64 && cfg.rope_theta == 1e6f && cfg.tie_embeddings && cfg.rms_norm_eps == 1e-5f,
			   "head_dim, rope_theta, tied, eps read");
		else
			diag("%s", err.msg);
		j = "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE ", \"rope_scaling\": {\"rope_type\": \"yarn\"}}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err,
				   "c.json: rope scaling type \"yarn\" is not supported (default and llama3 are)",
				   "yarn rope_scaling rejected");
		j = "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE ", \"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 5e5}}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err,
				   "c.json: rope_scaling needs a positive number \"factor\"",
				   "llama3 rope_parameters without its factors rejected");
		/* Llama: no biases unless attention_bias, llama3 rope scaling */
		j = "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_theta\": 500000.0, "
			"\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
			"\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}}";
		if (ok(r1_config_parse(&cfg, j, strlen(j), "c.json", &err) == 0, "LlamaForCausalLM with llama3 rope scaling"))
		{
			/* head_dim 32: wavelengths 2 pi 500000^(2i/32) for i = 0..15 */
			int			hi = 0,
						mid = 0,
						lo = 0;

			ok(cfg.arch == R1_ARCH_LLAMA && !cfg.attn_bias && cfg.rope_scaled, "llama, no biases, scaled");
			is_str(r1_arch_name(cfg.arch), "llama", "arch name");
			for (int i = 0; i < 16; i++)
			{
				double		wl = 2 * M_PI * pow(500000.0, i / 16.0);

				if (wl < 2048)
					hi += cfg.rope_factor[i] == 1.0;
				else if (wl > 8192)
					lo += cfg.rope_factor[i] == 8.0;
				else
					mid += cfg.rope_factor[i] > 1.0 && cfg.rope_factor[i] < 8.0;
			}
			/* i < 7: wl < 2048 (i = 6: 2 pi 500000^0.375 = 860); i = 7: 1950; i = 8: 4443 (smoothed); i >= 9 */
			ok(hi == 8 && mid == 1 && lo == 7, "llama3: 8 frequencies kept, 1 smoothed, 7 divided by 8 (%d %d %d)", hi, mid, lo);
			{
				double		wl = 2 * M_PI * pow(500000.0, 0.5);
				double		smooth = (8192 / wl - 1.0) / 3.0;
				double		want = (1 - smooth) / 8.0 / pow(500000.0, 0.5) + smooth / pow(500000.0, 0.5);

				ok(fabs(r1_rope_inv_freq(&cfg, 8) - want) < 1e-15 * want,
				   "the smoothed frequency is transformers' (%.17g vs %.17g)", r1_rope_inv_freq(&cfg, 8), want);
			}
			ok(r1_rope_inv_freq(&cfg, 0) == 1.0 && fabs(r1_rope_inv_freq(&cfg, 15) - pow(500000.0, -15 / 16.0) / 8) < 1e-20,
			   "kept and divided frequencies");
		}
		else
			diag("%s", err.msg);
		j = "{\"model_type\": \"llama\", " BASE ", \"attention_bias\": true}";
		if (ok(r1_config_parse(&cfg, j, strlen(j), "c.json", &err) == 0, "model_type llama with attention_bias"))
			ok(cfg.arch == R1_ARCH_LLAMA && cfg.attn_bias && !cfg.rope_scaled, "llama with biases, unscaled");
		j = "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE "}";
		if (ok(r1_config_parse(&cfg, j, strlen(j), "c.json", &err) == 0, "qwen2"))
			ok(cfg.arch == R1_ARCH_QWEN2 && cfg.attn_bias && !cfg.rope_scaled, "qwen2 always has biases");
		j = "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"mlp_bias\": true}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err, "mlp_bias is not supported", "mlp_bias rejected");
		j = "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"hidden_act\": \"gelu\"}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err, "hidden_act \"gelu\" is not supported",
				   "gelu rejected");
		j = "{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", "
			"\"factor\": 8.0, \"low_freq_factor\": 4.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192}}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err, "high_freq_factor 4 must exceed low_freq_factor 4",
				   "llama3 with equal factors rejected");
		j = "{\"architectures\": [\"MistralForCausalLM\"], \"model_type\": \"mistral\", " BASE "}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err,
				   "unknown architecture MistralForCausalLM: r1_pg supports Qwen2ForCausalLM and LlamaForCausalLM",
				   "unknown architecture message");
		j = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"vocab_size\": 1000, \"hidden_size\": 256, "
			"\"num_hidden_layers\": 2, \"num_attention_heads\": 8}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err, "c.json: missing \"intermediate_size\"",
				   "missing size");
		j = "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE ", \"num_hidden_layers\": 0}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err, "num_hidden_layers 0", "zero layers");
		j = "{\"architectures\": [\"Qwen2ForCausalLM\"], \"vocab_size\": 1000, \"hidden_size\": 131072, "
			"\"intermediate_size\": 512, \"num_hidden_layers\": 2, \"num_attention_heads\": 8}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err, "hidden_size 131072 out of range",
				   "hidden size too large");
		j = "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE ", \"vocab_size\": 99999999}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err, "vocab_size 99999999", "vocab too large");
		j = "{\"architectures\": [\"Qwen2ForCausalLM\"], " BASE ", \"hidden_size\": \"256\"}";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err, "\"hidden_size\" must be an integer",
				   "size as a string");
		j = "[1]";
		fails_with(r1_config_parse(&cfg, j, strlen(j), "c.json", &err), err, "not a JSON object", "config not an object");
#undef BASE
	}

	/* presets and random weights */
	ok(r1_config_preset(&cfg, "1.5B", &err) == 0 && cfg.hidden_size == 1536 && cfg.n_layers == 28 &&
	   cfg.n_kv_heads == 2 && cfg.intermediate_size == 8960 && cfg.vocab_size == 151936, "1.5b preset");
	ok(r1_config_preset(&cfg, "7b", &err) == 0 && cfg.hidden_size == 3584 && cfg.n_heads == 28 &&
	   cfg.vocab_size == 152064, "7b preset");
	ok(r1_config_preset(&cfg, "14b", &err) == 0 && cfg.n_layers == 48 && cfg.n_kv_heads == 8, "14b preset");
	ok(r1_config_preset(&cfg, "32b", &err) == 0 && cfg.n_layers == 64 && cfg.intermediate_size == 27648, "32b preset");
	fails_with(r1_config_preset(&cfg, "3b", &err), err, "3b", "unknown preset is read as a path and fails");
	ok(r1_config_preset(&cfg, "1.5b", &err) == 0 && cfg.head_dim == 128 && cfg.n_heads == 12 &&
	   cfg.rope_theta == 10000.0f && cfg.rms_norm_eps == 1e-6f && cfg.max_position == 131072 &&
	   !cfg.tie_embeddings && cfg.bos_id == 151646 && cfg.eos_id == 151643, "1.5b preset details");
	ok(r1_config_preset(&cfg, "32B", &err) == 0 && cfg.hidden_size == 5120, "presets are case-insensitive");
	snprintf(path, sizeof(path), "%s/config.json", fixture);
	ok(r1_config_preset(&cfg, path, &err) == 0 && cfg.hidden_size == 64, "a preset name that is a config.json path");
	if (ref)
	{
		r1_model   *a,
				   *b,
				   *c;

		ok(r1_model_random(&a, &ref->cfg, R1_BF16, 5, &err) == 0 &&
		   r1_model_random(&b, &ref->cfg, R1_BF16, 5, &err) == 0 &&
		   r1_model_random(&c, &ref->cfg, R1_BF16, 6, &err) == 0, "random weights");
		ok(a->weight_bytes == b->weight_bytes && memcmp(a->owned, b->owned, a->weight_bytes) == 0,
		   "same seed, same weights");
		ok(memcmp(a->owned, c->owned, a->weight_bytes) != 0, "another seed, other weights");
		is_int(a->layers[1].w_up.shape[1], 64, "random weights have the config's shapes");
		ok(r1_tensor_get_f32(&a->final_norm, 3) == 1.0f && r1_tensor_get_f32(&a->layers[1].attn_norm, 63) == 1.0f,
		   "norm weights are 1");
		is_str(a->name, "random-2x64", "random model name");
		is_int(a->dtype, R1_BF16, "random dtype");
		ok(a->lm_head.data != a->embed.data, "untied random lm_head");
		{
			double		sum = 0,
						sq = 0,
						big = 0;
			size_t		n = (size_t) r1_tensor_numel(&a->layers[0].w_gate);

			for (size_t i = 0; i < n; i++)
			{
				double		v = r1_tensor_get_f32(&a->layers[0].w_gate, i);

				sum += v;
				sq += v * v;
				big = fmax(big, fabs(v));
			}
			ok(fabs(sum / n) < 0.002 && fabs(sqrt(sq / n) - 0.02) < 0.002 && big < 0.0351,
			   "matrix values uniform, mean 0, std 0.02 (mean %.4f, std %.4f, max %.4f)", sum / n, sqrt(sq / n), big);
			ok(fabs(r1_tensor_get_f32(&a->layers[0].bq, 0)) < 0.0351, "biases small");
		}
		{
			size_t		total = 0;
			const r1_tensor *ts[] = {&a->embed, &a->final_norm, &a->lm_head};

			for (int i = 0; i < 3; i++)
				total += ts[i]->nbytes;
			for (int l = 0; l < a->cfg.n_layers; l++)
			{
				const r1_layer_weights *w = &a->layers[l];

				total += w->attn_norm.nbytes + w->wq.nbytes + w->bq.nbytes + w->wk.nbytes + w->bk.nbytes +
					w->wv.nbytes + w->bv.nbytes + w->wo.nbytes + w->ffn_norm.nbytes + w->w_gate.nbytes +
					w->w_up.nbytes + w->w_down.nbytes;
			}
			is_int(a->weight_bytes, total, "random weight_bytes is the sum of the tensors");
			is_int(a->weight_bytes, ref->weight_bytes / 2, "random bf16 weights: half the f32 fixture's bytes");
		}
		r1_model_free(a);
		r1_model_free(b);
		r1_model_free(c);
		cfg = ref->cfg;
		cfg.tie_embeddings = 1;
		if (ok(r1_model_random(&a, &cfg, R1_F32, 1, &err) == 0, "random f32 tied weights"))
		{
			ok(a->lm_head.data == a->embed.data && a->dtype == R1_F32 && a->embed.nbytes == 512 * 64 * 4,
			   "tied, f32");
			ok(fabsf(r1_tensor_get_f32(&a->embed, 77)) < 0.0351f && r1_tensor_get_f32(&a->final_norm, 0) == 1.0f,
			   "f32 values");
			r1_model_free(a);
		}
		if (ok(r1_model_random(&a, &ref->cfg, R1_F16, 1, &err) == 0, "random f16 weights"))
		{
			ok(a->dtype == R1_F16 && fabsf(r1_tensor_get_f32(&a->embed, 77)) < 0.0351f &&
			   r1_tensor_get_f32(&a->final_norm, 0) == 1.0f, "f16 values");
			r1_model_free(a);
		}
		fails_with(r1_model_random(&a, &ref->cfg, R1_I64, 1, &err), err, "F32, F16 or BF16", "random I64 rejected");
		cfg = ref->cfg;
		cfg.n_kv_heads = 3;
		fails_with(r1_model_random(&a, &cfg, R1_BF16, 1, &err), err, "not a multiple", "random: config validated");
	}

	/* the demo model rejects chains it cannot spell */
	{
		int32_t		rep[] = {5, 6, 5, 7};
		int32_t		out[] = {5, 600};

		d = new_dir(NULL, NULL, NULL);
		fails_with(r1_demo_model_write(d, rep, 4, 512, 1, 2, &err), err, "occurs twice", "demo chain with a repeat");
		fails_with(r1_demo_model_write(d, out, 2, 512, 1, 2, &err), err, "out of range", "demo chain id out of range");
		fails_with(r1_demo_model_write(d, out, 1, 512, 1, 2, &err), err, "at least 2", "demo chain of 1 token");
		ok(r1_demo_model_write(d, (int32_t[]) {5, 6, 7, 2}, 4, 512, 1, 2, &err) == 0, "demo model written");
		if (ok(r1_model_load(&m, d, &err) == 0, "demo model loads back"))
			r1_model_free(m);
		else
			diag("%s", err.msg);
		/* a longer chain at the real vocabulary: follow it with embed -> RMSNorm -> lm_head */
		{
			enum
			{
			N = 70, V = 151936
			};
			int32_t		chain[N];
			int			follows = 1;
			double		margin = 1e9;

			for (int i = 0; i < N; i++)
				chain[i] = (i * 7919 + 100) % V;
			chain[N - 1] = chain[3];	/* the last token may repeat an earlier one */
			if (ok(r1_demo_model_write(d, chain, N, V, 151646, 151643, &err) == 0, "demo model of 70 tokens") &&
				ok(r1_model_load(&m, d, &err) == 0, "it loads"))
			{
				int			H = m->cfg.hidden_size;
				float	   *x = malloc(sizeof(float) * H);

				is_int(H, 128, "hidden size: multiple of 64 above the chain");
				ok(m->dtype == R1_BF16 && m->cfg.n_layers == 1 && m->cfg.vocab_size == V && m->cfg.bos_id == 151646 &&
				   m->cfg.eos_id == 151643, "bf16, one layer, the ids given");
				for (int i = 0; i + 1 < N; i++)
				{
					double		ss = 0,
								best = -1e30,
								second = -1e30;
					int			arg = -1;

					for (int h = 0; h < H; h++)
					{
						x[h] = r1_tensor_get_f32(&m->embed, (size_t) chain[i] * H + h);
						ss += (double) x[h] * x[h];
					}
					for (int h = 0; h < H; h++)
						x[h] = x[h] / sqrt(ss / H + m->cfg.rms_norm_eps) * r1_tensor_get_f32(&m->final_norm, h);
					for (int v = 0; v < V; v++)
					{
						double		logit = 0;

						for (int h = 0; h < H; h++)
							if (x[h] != 0)	/* x is one-hot: skip the zeros */
								logit += x[h] * r1_tensor_get_f32(&m->lm_head, (size_t) v * H + h);
						if (logit > best)
						{
							second = best;
							best = logit;
							arg = v;
						}
						else if (logit > second)
							second = logit;
					}
					if (arg != chain[i + 1])
						follows = 0;
					margin = fmin(margin, best - second);
				}
				ok(follows, "greedy decoding follows the chain");
				ok(margin >= 50, "winning margin %.1f >= 50", margin);
				free(x);
				r1_model_free(m);
			}
			else
				diag("%s", err.msg);
		}
	}

	r1_model_free(ref);
	{
		char		cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
		if (system(cmd) != 0)
			diag("could not remove %s", tmp);
	}
	return done_testing();
}
