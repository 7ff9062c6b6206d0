/*
 * model_gguf.c - a Qwen2 or Llama model from a GGUF file, as llama.cpp's
 * convert_hf_to_gguf.py writes one (and Ollama stores it): hyper-parameters
 * from the "qwen2.*" / "llama.*" metadata, tensors by llama.cpp's names, in
 * the file's types (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K), memory-mapped.
 *
 * A Llama's attn_q/attn_k rows are stored permuted for ggml's rope; they are
 * copied back into Hugging Face's order here (a private copy of those two
 * matrices per layer), so every backend runs one rope.  llama3 rope scaling
 * comes as the rope_freqs tensor.
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant.h"

static const char *
base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

static int
config_from_gguf(r1_config *c, const r1_gguf *g, const char *file, r1_error *err)
{
	r1_gguf_str arch;
	int64_t		v;
	double		f;
	const r1_tensor *embd;

	char		key[96];
	const char *a;
	const r1_tensor *rf;

	memset(c, 0, sizeof(*c));
	if (r1_gguf_get_str(g, "general.architecture", &arch, 1, err) != 0)
		return -1;
	if (arch.len == 5 && memcmp(arch.s, "qwen2", 5) == 0)
		c->arch = R1_ARCH_QWEN2;
	else if (arch.len == 5 && memcmp(arch.s, "llama", 5) == 0)
		c->arch = R1_ARCH_LLAMA;
	else
		return r1_fail(err, "%s: architecture \"%.*s\" is not supported: only \"qwen2\" and \"llama\" (DeepSeek-R1-Distill-Qwen and -Llama)",
					   file, (int) (arch.len > 64 ? 64 : arch.len), arch.s);
	a = r1_arch_name(c->arch);
#define KEY(suffix) (snprintf(key, sizeof(key), "%s.%s", a, suffix), key)
#define GET_INT(suffix, field, lo, hi) \
	do { if (r1_gguf_get_int(g, KEY(suffix), lo, hi, &v, 1, err) != 0) return -1; (field) = (int) v; } while (0)
	GET_INT("block_count", c->n_layers, 1, 4096);
	GET_INT("embedding_length", c->hidden_size, 1, 1 << 20);
	GET_INT("feed_forward_length", c->intermediate_size, 1, 1 << 22);
	GET_INT("attention.head_count", c->n_heads, 1, 4096);
	GET_INT("context_length", c->max_position, 1, 1 << 24);
#undef GET_INT
	c->n_kv_heads = c->n_heads;
	if (r1_gguf_get_int(g, KEY("attention.head_count_kv"), 1, 4096, &v, 0, err) < 0)
		return -1;
	else if (r1_gguf_find_kv(g, KEY("attention.head_count_kv")))
		c->n_kv_heads = (int) v;
	if (r1_gguf_get_float(g, KEY("attention.layer_norm_rms_epsilon"), &f, 1, err) != 0)
		return -1;
	c->rms_norm_eps = (float) f;
	c->rope_theta = 10000.0f;
	switch (r1_gguf_get_float(g, KEY("rope.freq_base"), &f, 0, err))
	{
		case -1:
			return -1;
		case 0:
			c->rope_theta = (float) f;
			break;
	}
	c->head_dim = c->hidden_size / c->n_heads;
	if (r1_gguf_find_kv(g, KEY("attention.key_length")))
	{
		if (r1_gguf_get_int(g, KEY("attention.key_length"), 2, R1_MAX_HEAD_DIM, &v, 1, err) != 0)
			return -1;
		c->head_dim = (int) v;
	}
#undef KEY
	/* Qwen2 has q/k/v biases; a Llama may (llama.cpp reads them if present) */
	c->attn_bias = c->arch == R1_ARCH_QWEN2 || r1_gguf_find(g, "blk.0.attn_q.bias") != NULL;
	rf = r1_gguf_find(g, "rope_freqs.weight");
	if (rf && (c->head_dim < 2 || c->head_dim > R1_MAX_HEAD_DIM))
		return r1_fail(err, "%s: head_dim %d (embedding_length / head_count) is outside 2..%d; a file with rope_freqs.weight must give a head_dim in range",
					   file, c->head_dim, R1_MAX_HEAD_DIM);
	if (rf)
	{
		if (rf->ndim != 1 || rf->shape[0] != c->head_dim / 2 || r1_dtype_is_quant(rf->dtype))
			return r1_fail(err, "%s: tensor \"rope_freqs.weight\" must be a vector of %d F32/F16/BF16 values (head_dim / 2)",
						   file, c->head_dim / 2);
		for (int i = 0; i < c->head_dim / 2; i++)
			c->rope_factor[i] = r1_tensor_get_f32(rf, (size_t) i);
		c->rope_scaled = 1;
	}
	embd = r1_gguf_find(g, "token_embd.weight");
	if (!embd || embd->ndim != 2)
		return r1_fail(err, "%s: tensor \"token_embd.weight\" is missing or not a matrix", file);
	if (embd->shape[0] > (1 << 24))
		return r1_fail(err, "%s: vocabulary of %lld tokens is too large", file, (long long) embd->shape[0]);
	c->vocab_size = (int) embd->shape[0];
	c->tie_embeddings = r1_gguf_find(g, "output.weight") == NULL;
	c->bos_id = -1;
	c->eos_id = -1;
	if (r1_gguf_get_int(g, "tokenizer.ggml.bos_token_id", 0, c->vocab_size - 1, &v, 0, err) < 0)
		return -1;
	if (r1_gguf_find_kv(g, "tokenizer.ggml.bos_token_id"))
		c->bos_id = (int) v;
	if (r1_gguf_get_int(g, "tokenizer.ggml.eos_token_id", 0, c->vocab_size - 1, &v, 0, err) < 0)
		return -1;
	if (r1_gguf_find_kv(g, "tokenizer.ggml.eos_token_id"))
		c->eos_id = (int) v;
	return r1_config_validate(c, file, err);
}

/* bind name to *out, checking presence, type and shape [d0] or [d0, d1] */
static int
bind(r1_model *m, r1_tensor *out, const char *name, int64_t d0, int64_t d1, r1_error *err)
{
	const r1_tensor *t = r1_gguf_find(m->gguf, name);
	const char *file = base_name(m->path);
	int			ndim = d1 ? 2 : 1;

	if (!t)
		return r1_fail(err, "%s: tensor \"%s\" is missing", file, name);
	if (ndim == 1 && r1_dtype_is_quant(t->dtype))
		return r1_fail(err, "%s: tensor \"%s\": a vector in %s (F32, F16 or BF16 expected)",
					   file, name, r1_dtype_name(t->dtype));
	if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1))
	{
		if (ndim == 2)
			return r1_fail(err, "%s: tensor \"%s\": shape [%lld%s%lld], the metadata wants [%lld, %lld] (HF order: out, in)",
						   file, name, (long long) t->shape[0], t->ndim > 1 ? ", " : " / ",
						   (long long) (t->ndim > 1 ? t->shape[1] : t->ndim), (long long) d0, (long long) d1);
		return r1_fail(err, "%s: tensor \"%s\": %d-dimensional with %lld rows, the metadata wants [%lld]",
					   file, name, t->ndim, (long long) t->shape[0], (long long) d0);
	}
	*out = *t;
	if (r1_dtype_is_quant(t->dtype))
		m->quantized = 1;
	m->weight_bytes += t->nbytes;
	return 0;
}

/* copy t's rows (or a vector's elements) from llama.cpp's rope order into HF's, at dst */
static void
unpermute(r1_tensor *t, char *dst, int head_dim)
{
	int64_t		rows = t->shape[0];
	size_t		row_bytes = t->nbytes / (size_t) rows;

	for (int64_t g = 0; g < rows; g++)
		memcpy(dst + (size_t) r1_gguf_llama_hf_row(g, head_dim) * row_bytes,
			   (const char *) t->data + (size_t) g * row_bytes, row_bytes);
	t->data = dst;
}

/* A Llama's attn_q/attn_k (and their biases) back in HF's order, in m->owned. */
static int
unpermute_qk(r1_model *m, r1_error *err)
{
	size_t		total = 0;
	char	   *p;

	for (int l = 0; l < m->cfg.n_layers; l++)
	{
		r1_layer_weights *w = &m->layers[l];

		total += w->wq.nbytes + w->wk.nbytes + w->bq.nbytes + w->bk.nbytes;
	}
	m->owned = p = r1_malloc(total, err);
	if (!p)
		return -1;
	for (int l = 0; l < m->cfg.n_layers; l++)
	{
		r1_layer_weights *w = &m->layers[l];
		r1_tensor  *t[4] = {&w->wq, &w->wk, &w->bq, &w->bk};

		for (int i = 0; i < 4; i++)
			if (t[i]->data)
			{
				unpermute(t[i], p, m->cfg.head_dim);
				p += t[i]->nbytes;
			}
	}
	return 0;
}

int
r1_model_load_gguf(r1_model *m, r1_error *err)
{
	const r1_config *c = &m->cfg;
	int64_t		H,
				qd,
				kvd,
				I;
	char		name[128];
	size_t		len = strlen(m->name);

	m->gguf = r1_calloc(1, sizeof(r1_gguf), err);
	if (!m->gguf)
		return -1;
	if (r1_gguf_open(m->gguf, m->path, err) != 0)
	{
		free(m->gguf);
		m->gguf = NULL;
		return -1;
	}
	if (len > 5 && strcmp(m->name + len - 5, ".gguf") == 0)
		m->name[len - 5] = '\0';
	if (config_from_gguf(&m->cfg, m->gguf, base_name(m->path), err) != 0)
		return -1;
	H = c->hidden_size;
	qd = (int64_t) c->n_heads * c->head_dim;
	kvd = (int64_t) c->n_kv_heads * c->head_dim;
	I = c->intermediate_size;
	m->layers = r1_calloc(c->n_layers, sizeof(r1_layer_weights), err);
	if (!m->layers)
		return -1;
	if (bind(m, &m->embed, "token_embd.weight", c->vocab_size, H, err) ||
		bind(m, &m->final_norm, "output_norm.weight", H, 0, err))
		return -1;
	if (c->tie_embeddings)
		m->lm_head = m->embed;
	else if (bind(m, &m->lm_head, "output.weight", c->vocab_size, H, err))
		return -1;
	for (int l = 0; l < c->n_layers; l++)
	{
		r1_layer_weights *w = &m->layers[l];

#define BIND(field, suffix, d0, d1) \
		(snprintf(name, sizeof(name), "blk.%d.%s", l, suffix), \
		 bind(m, &w->field, name, d0, d1, err))
		if (BIND(attn_norm, "attn_norm.weight", H, 0) ||
			BIND(wq, "attn_q.weight", qd, H) ||
			BIND(wk, "attn_k.weight", kvd, H) ||
			BIND(wv, "attn_v.weight", kvd, H) ||
			(c->attn_bias &&
			 (BIND(bq, "attn_q.bias", qd, 0) ||
			  BIND(bk, "attn_k.bias", kvd, 0) ||
			  BIND(bv, "attn_v.bias", kvd, 0))) ||
			BIND(wo, "attn_output.weight", H, qd) ||
			BIND(ffn_norm, "ffn_norm.weight", H, 0) ||
			BIND(w_gate, "ffn_gate.weight", I, H) ||
			BIND(w_up, "ffn_up.weight", I, H) ||
			BIND(w_down, "ffn_down.weight", H, I))
			return -1;
#undef BIND
	}
	if (c->arch == R1_ARCH_LLAMA && unpermute_qk(m, err) != 0)
		return -1;
	m->dtype = m->layers[0].w_gate.dtype;
	snprintf(m->cfg.torch_dtype, sizeof(m->cfg.torch_dtype), "%s", r1_dtype_name(m->dtype));
	return 0;
}

void
r1_model_free_gguf(r1_model *m)
{
	if (m->gguf)
	{
		r1_gguf_close(m->gguf);
		free(m->gguf);
		m->gguf = NULL;
	}
}
