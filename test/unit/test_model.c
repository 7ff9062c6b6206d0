/*
 * test_model.c - safetensors, config.json and checkpoint loading: the golden
 * fixture in every layout a checkpoint comes in (single file, shards with an
 * index, bf16, rope_parameters, tied embeddings), random weights, and one
 * test per malformed input, each expecting the clear one-line error.
 */
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
	}
	else
		diag("%s", err.msg);

	/* bf16 file */
	d = new_dir(NULL, NULL, "model-bf16.safetensors");
	if (ok(r1_model_load(&m, d, &err) == 0, "bf16 checkpoint loads"))
	{
		is_int(m->dtype, R1_BF16, "dtype BF16");
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
			free(kept);
		}
	}

	/* config.json problems */
	d = new_dir("\"hidden_size\": 64", "\"hidden_size\": 128", "model.safetensors");
	expect_fail(d, "shape [512, 64], config.json wants [512, 128]", "shape mismatch names file, tensor and shapes");
	d = new_dir("Qwen2ForCausalLM", "LlamaForCausalLM", "model.safetensors");
	expect_fail(d, "unknown architecture LlamaForCausalLM", "unknown architecture");
	d = new_dir("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", "model.safetensors");
	expect_fail(d, "not a multiple", "heads that do not divide");
	d = new_dir("\"vocab_size\": 512", "\"vocab_size\": 512,,", "model.safetensors");
	expect_fail(d, "config.json: invalid JSON at line", "config.json with bad JSON");
	d = new_dir("\"rope_scaling\": null", "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}", "model.safetensors");
	expect_fail(d, "rope_scaling is not supported", "rope scaling rejected");
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

	/* presets and random weights */
	ok(r1_config_preset(&cfg, "1.5B", &err) == 0 && cfg.hidden_size == 1536 && cfg.n_layers == 28 &&
	   cfg.n_kv_heads == 2 && cfg.intermediate_size == 8960 && cfg.vocab_size == 151936, "1.5b preset");
	ok(r1_config_preset(&cfg, "7b", &err) == 0 && cfg.hidden_size == 3584 && cfg.n_heads == 28 &&
	   cfg.vocab_size == 152064, "7b preset");
	ok(r1_config_preset(&cfg, "14b", &err) == 0 && cfg.n_layers == 48 && cfg.n_kv_heads == 8, "14b preset");
	ok(r1_config_preset(&cfg, "32b", &err) == 0 && cfg.n_layers == 64 && cfg.intermediate_size == 27648, "32b preset");
	fails_with(r1_config_preset(&cfg, "3b", &err), err, "3b", "unknown preset is read as a path and fails");
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
		ok(r1_tensor_get_f32(&a->final_norm, 3) == 1.0f, "norm weights are 1");
		r1_model_free(a);
		r1_model_free(b);
		r1_model_free(c);
	}

	/* the demo model rejects chains it cannot spell */
	{
		int32_t		rep[] = {5, 6, 5, 7};
		int32_t		out[] = {5, 600};

		d = new_dir(NULL, NULL, NULL);
		fails_with(r1_demo_model_write(d, rep, 4, 512, 1, 2, &err), err, "occurs twice", "demo chain with a repeat");
		fails_with(r1_demo_model_write(d, out, 2, 512, 1, 2, &err), err, "out of range", "demo chain id out of range");
		ok(r1_demo_model_write(d, (int32_t[]) {5, 6, 7, 2}, 4, 512, 1, 2, &err) == 0, "demo model written");
		if (ok(r1_model_load(&m, d, &err) == 0, "demo model loads back"))
			r1_model_free(m);
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
