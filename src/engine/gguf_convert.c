/*
 * gguf_convert.c - a model and its tokenizer.json as a GGUF file, with the
 * tensor names, metadata keys and tokenizer arrays llama.cpp's
 * convert_hf_to_gguf.py writes for Qwen2 and Llama (so files round-trip
 * through llama.cpp-style readers: a Llama's attn_q/attn_k rows permuted for
 * ggml's rope, llama3 rope scaling as the rope_freqs tensor), matrices
 * quantised with quant.c's encoders.
 */
#include "gguf_convert.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "quant.h"
#include "tokenizer.h"

typedef struct conv
{
	r1_gguf_writer *w;
	void	  **bufs;			/* tensor data kept until written */
	int			n_bufs,
				cap_bufs;
	r1_dtype	base;			/* the type asked for */
	int			mix_q4_k_m;
	int			n_layers;
	size_t		counts[R1_DTYPE_OTHER + 1];
} conv;

static int
keep(conv *c, void *p, r1_error *err)
{
	if (c->n_bufs == c->cap_bufs)
	{
		int			cap = c->cap_bufs ? c->cap_bufs * 2 : 64;
		void	  **nb = realloc(c->bufs, sizeof(void *) * cap);

		if (!nb)
		{
			free(p);
			return r1_fail(err, "out of memory");
		}
		c->bufs = nb;
		c->cap_bufs = cap;
	}
	c->bufs[c->n_bufs++] = p;
	return 0;
}

/* the type of a matrix: what was asked for, or the fallback its rows allow */
static r1_dtype
matrix_type(const conv *c, const char *name, int layer, int64_t n_in)
{
	r1_dtype	dt = c->base;

	if (c->mix_q4_k_m)
	{
		int			n = c->n_layers;
		int			more_bits = layer >= 0 &&
		(layer < n / 8 || layer >= 7 * n / 8 || (layer - n / 8) % 3 == 2);

		dt = R1_Q4_K;
		if (strcmp(name, "output.weight") == 0 ||
			(more_bits && (strstr(name, "attn_v.weight") || strstr(name, "ffn_down.weight"))))
			dt = R1_Q6_K;
	}
	if (n_in % r1_dtype_block_elems(dt) != 0)
		dt = n_in % R1_QK8_0 == 0 ? R1_Q8_0 : R1_F16;
	return dt;
}

/* what a tensor of the file is made from, at write time */
typedef struct conv_src
{
	const r1_tensor *t;			/* the model's tensor (mapped, in memory, or
								 * on demand) */
	r1_dtype	dt;				/* the file's type */
	int			head_dim;		/* > 0: a Llama q/k tensor, rows in
								 * llama.cpp's rope order */
	int64_t		rows,
				n_in;
	size_t		row_out;
} conv_src;

/* r1_gguf_fill_fn: the rows of s->t, permuted if asked, quantised to s->dt */
static int
make_tensor(void *ctx, void *buf, size_t nbytes, r1_error *err)
{
	const conv_src *s = ctx;
	int			failed = 0;
	r1_error	first;

	if (s->t->ndim == 1)
	{
		/*
		 * a vector (norm, bias): read whole, permuted element-wise for a
		 * Llama q/k bias
		 */
		float	   *v = r1_malloc(sizeof(float) * s->t->shape[0], err),
				   *o = r1_malloc(sizeof(float) * s->t->shape[0], err);
		int			rc = -1;

		if (v && o && r1_model_rows(s->t, 0, 1, v, err) == 0)
		{
			for (int64_t i = 0; i < s->t->shape[0]; i++)
				o[i] = v[s->head_dim > 0 ? r1_gguf_llama_hf_row(i, s->head_dim) : i];
			rc = r1_quantize_row(s->dt, o, buf, s->t->shape[0]) == 0 ? 0
				: r1_fail(err, "cannot write a vector as %s", r1_dtype_name(s->dt));
		}
		free(v);
		free(o);
		return rc;
	}
	first.msg[0] = 0;
#pragma omp parallel
	{
		float	   *tmp = malloc(sizeof(float) * s->n_in);
		r1_error	e;

#pragma omp for schedule(dynamic, 16)
		for (int64_t r = 0; r < s->rows; r++)
		{
			int64_t		src = s->head_dim > 0 ? r1_gguf_llama_hf_row(r, s->head_dim) : r;
			int			bad = 1;

			if (!tmp)
				snprintf(e.msg, sizeof(e.msg), "out of memory");
			else if (r1_model_rows(s->t, src, 1, tmp, &e) != 0)
				;				/* e says why */
			else if (r1_quantize_row(s->dt, tmp, (uint8_t *) buf + r * s->row_out, s->n_in) != 0)
				snprintf(e.msg, sizeof(e.msg), "cannot write rows of %lld as %s", (long long) s->n_in,
						 r1_dtype_name(s->dt));
			else
				bad = 0;
			if (bad)
			{
#pragma omp critical
				if (!failed)
				{
					failed = 1;
					first = e;
				}
			}
		}
		free(tmp);
	}
	(void) nbytes;
	if (failed)
		return r1_fail(err, "%s", first.msg);
	return 0;
}

/*
 * Add t as name; head_dim > 0 permutes its rows as llama.cpp does a Llama's
 * attn_q/attn_k (output row g is input row r1_gguf_llama_hf_row(g)).  The
 * data is made when the file is written (make_tensor), one tensor at a time.
 */
static int
add_tensor_perm(conv *c, const char *name, int layer, const r1_tensor *t, int head_dim,
				r1_error *err)
{
	int64_t		rows = t->ndim == 2 ? t->shape[0] : 1,
				n_in = t->shape[t->ndim - 1];
	r1_dtype	dt;
	size_t		row_out,
				total;
	conv_src   *s;

	dt = t->ndim == 2 ? matrix_type(c, name, layer, n_in) : R1_F32;
	if (r1_dtype_row_bytes(dt, n_in, &row_out) != 0 || !r1_mul_size(row_out, (size_t) rows, &total))
		return r1_fail(err, "tensor \"%s\": cannot convert rows of %lld", name, (long long) n_in);
	if (t->data)
	{
		size_t		row_in;

		if (r1_dtype_row_bytes(t->dtype, n_in, &row_in) != 0)
			return r1_fail(err, "tensor \"%s\": cannot read rows of %lld %s values", name, (long long) n_in,
						   r1_dtype_name(t->dtype));
	}
	s = r1_malloc(sizeof(*s), err);
	if (!s)
		return -1;
	s->t = t;
	s->dt = dt;
	s->head_dim = head_dim;
	s->rows = rows;
	s->n_in = n_in;
	s->row_out = row_out;
	if (keep(c, s, err) != 0)
		return -1;
	r1_gguf_w_tensor_fn(c->w, name, dt, t->ndim, t->shape, total, make_tensor, s);
	c->counts[dt]++;
	return 0;
}

static int
add_tensor(conv *c, const char *name, int layer, const r1_tensor *t, r1_error *err)
{
	return add_tensor_perm(c, name, layer, t, 0, err);
}

/* llama3 rope scaling as llama.cpp stores it: the divisor of each frequency */
static int
add_rope_freqs(conv *c, const r1_config *cfg, r1_error *err)
{
	int64_t		shape[1] = {cfg->head_dim / 2};
	float	   *f = r1_malloc(sizeof(float) * (size_t) shape[0], err);

	if (!f)
		return -1;
	for (int i = 0; i < shape[0]; i++)
		f[i] = (float) cfg->rope_factor[i];
	if (keep(c, f, err) != 0)
		return -1;
	r1_gguf_w_tensor(c->w, "rope_freqs.weight", R1_F32, 1, shape, f, sizeof(float) * (size_t) shape[0]);
	c->counts[R1_F32]++;
	return 0;
}

/* tokenizer.json's vocabulary, added tokens and merges as llama.cpp's arrays */
/*
 * What llama.cpp and Ollama read from tokenizer_config.json: whether to put
 * BOS (EOS) in front of (after) a prompt, and the chat template.  A file
 * that is not there, or holds no such keys, writes nothing (their
 * defaults apply).
 */
static void
add_tokenizer_config(conv *c, const char *tokdir)
{
	char		path[4096];
	json_t	   *root,
			   *v;

	if (r1_path_join(path, sizeof(path), tokdir, "tokenizer_config.json", NULL) != 0)
		return;
	root = json_load_file(path, 0, NULL);
	if (!root)
		return;
	if (json_is_boolean(v = json_object_get(root, "add_bos_token")))
		r1_gguf_w_bool(c->w, "tokenizer.ggml.add_bos_token", json_is_true(v));
	if (json_is_boolean(v = json_object_get(root, "add_eos_token")))
		r1_gguf_w_bool(c->w, "tokenizer.ggml.add_eos_token", json_is_true(v));
	if (json_is_string(v = json_object_get(root, "chat_template")))
		r1_gguf_w_str(c->w, "tokenizer.chat_template", json_string_value(v));
	json_decref(root);
}

/*
 * BOS/EOS: the tokenizer's (tokenizer_config.json names them), else
 * config.json's ids (a tokenizer that names none still has the model's end
 * of sequence: without it a GGUF reader would never stop).
 */
static void
add_special_ids(conv *c, int bos, int eos)
{
	if (bos >= 0)
		r1_gguf_w_u32(c->w, "tokenizer.ggml.bos_token_id", (uint32_t) bos);
	if (eos >= 0)
		r1_gguf_w_u32(c->w, "tokenizer.ggml.eos_token_id", (uint32_t) eos);
}

static int
add_tokenizer(conv *c, const char *tokdir, const r1_config *cfg, r1_error *err)
{
	char		path[4096];
	json_t	   *root = NULL,
			   *vocab,
			   *merges,
			   *added,
			   *v;
	json_error_t jerr;
	const char *key;
	r1_gguf_str *toks = NULL,
			   *mstr = NULL;
	int32_t    *types = NULL;
	char	  **pads = NULL;
	char	  **mbuf = NULL;
	size_t		i,
				n_merges = 0;
	int			rc = -1;
	r1_tokenizer *tok = NULL;

	int			vocab_size = cfg->vocab_size;
	r1_arch		arch = cfg->arch;

	if (r1_tokenizer_load(&tok, tokdir, err) != 0)	/* validates it, and gives
													 * bos/eos */
		return -1;
	if (r1_tokenizer_n_tokens(tok) > vocab_size)
	{
		r1_fail(err, "%s: the tokenizer has %d tokens but the model's vocabulary is %d", tokdir,
				r1_tokenizer_n_tokens(tok), vocab_size);
		goto out;
	}
	if (r1_path_join(path, sizeof(path), tokdir, "tokenizer.json", err) != 0)
		goto out;
	root = json_load_file(path, 0, &jerr);
	if (!root)
	{
		r1_fail(err, "%s: %s", path, jerr.text);
		goto out;
	}
	vocab = json_object_get(json_object_get(root, "model"), "vocab");
	merges = json_object_get(json_object_get(root, "model"), "merges");
	added = json_object_get(root, "added_tokens");
	toks = calloc(vocab_size, sizeof(r1_gguf_str));
	types = calloc(vocab_size, sizeof(int32_t));
	pads = calloc(vocab_size, sizeof(char *));
	n_merges = json_array_size(merges);
	mstr = calloc(n_merges + 1, sizeof(r1_gguf_str));
	mbuf = calloc(n_merges + 1, sizeof(char *));
	if (!toks || !types || !pads || !mstr || !mbuf)
	{
		r1_fail(err, "out of memory");
		goto out;
	}
	json_object_foreach(vocab, key, v)
	{
		json_int_t	id = json_integer_value(v);

		toks[id].s = key;
		toks[id].len = strlen(key);
		types[id] = 1;			/* normal */
	}
	json_array_foreach(added, i, v)
	{
		json_int_t	id = json_integer_value(json_object_get(v, "id"));
		json_t	   *content = json_object_get(v, "content");

		toks[id].s = json_string_value(content);
		toks[id].len = json_string_length(content);
		types[id] = json_is_true(json_object_get(v, "special")) ? 3 : 4;
	}
	for (int id = 0; id < vocab_size; id++)
		if (!types[id])
		{
			/* padding up to the model's vocabulary, as llama.cpp writes it */
			char		buf[32];

			snprintf(buf, sizeof(buf), "[PAD%d]", id);
			pads[id] = strdup(buf);
			if (!pads[id])
			{
				r1_fail(err, "out of memory");
				goto out;
			}
			toks[id].s = pads[id];
			toks[id].len = strlen(buf);
			types[id] = 5;		/* unused */
		}
	json_array_foreach(merges, i, v)
	{
		if (json_is_string(v))
		{
			mstr[i].s = json_string_value(v);
			mstr[i].len = json_string_length(v);
		}
		else
		{
			json_t	   *a = json_array_get(v, 0),
					   *b = json_array_get(v, 1);
			size_t		la = json_string_length(a),
						lb = json_string_length(b);

			mbuf[i] = malloc(la + lb + 2);
			if (!mbuf[i])
			{
				r1_fail(err, "out of memory");
				goto out;
			}
			memcpy(mbuf[i], json_string_value(a), la);
			mbuf[i][la] = ' ';
			memcpy(mbuf[i] + la + 1, json_string_value(b), lb);
			mstr[i].s = mbuf[i];
			mstr[i].len = la + lb + 1;
		}
	}
	r1_gguf_w_str(c->w, "tokenizer.ggml.model", "gpt2");
	/* llama.cpp's names for the two split regexes */
	r1_gguf_w_str(c->w, "tokenizer.ggml.pre", arch == R1_ARCH_LLAMA ? "llama-bpe" : "deepseek-r1-qwen");
	r1_gguf_w_str_array(c->w, "tokenizer.ggml.tokens", toks, vocab_size);
	r1_gguf_w_i32_array(c->w, "tokenizer.ggml.token_type", types, vocab_size);
	r1_gguf_w_str_array(c->w, "tokenizer.ggml.merges", mstr, n_merges);
	add_special_ids(c, r1_tokenizer_bos_id(tok) >= 0 ? r1_tokenizer_bos_id(tok) : cfg->bos_id,
					r1_tokenizer_eos_id(tok) >= 0 ? r1_tokenizer_eos_id(tok) : cfg->eos_id);
	add_tokenizer_config(c, tokdir);
	/* the writer copied every string: the JSON may go */
	rc = 0;
out:
	if (pads)
		for (int id = 0; id < vocab_size; id++)
			free(pads[id]);
	if (mbuf)
		for (i = 0; i < n_merges; i++)
			free(mbuf[i]);
	free(pads);
	free(mbuf);
	free(toks);
	free(types);
	free(mstr);
	json_decref(root);
	r1_tokenizer_free(tok);
	return rc;
}

/* llama.cpp's LLAMA_FTYPE_* of a conversion type (the K types as their _S mixes, q4_k_m as Q4_K_M) */
static uint32_t
file_type(const char *type)
{
	static const struct
	{
		const char *name;
		uint32_t	ftype;
	}			ft[] = {
		{"f32", 0}, {"f16", 1}, {"q4_0", 2}, {"q8_0", 7}, {"q5_0", 8}, {"q4_k", 14},
		{"q4_k_m", 15}, {"q5_k", 16}, {"q6_k", 18}, {"bf16", 32},
	};

	for (size_t i = 0; i < sizeof(ft) / sizeof(ft[0]); i++)
		if (strcmp(type, ft[i].name) == 0)
			return ft[i].ftype;
	return 0;
}

int
r1_gguf_convert(const r1_model *m, const char *tokdir, const char *path, const char *type,
				r1_error *err)
{
	static const struct
	{
		const char *name;
		r1_dtype	dt;
	}			types[] = {
		{"f32", R1_F32}, {"f16", R1_F16}, {"bf16", R1_BF16}, {"q8_0", R1_Q8_0},
		{"q4_k", R1_Q4_K}, {"q5_k", R1_Q5_K}, {"q6_k", R1_Q6_K}, {"q4_k_m", R1_Q4_K},
		{"q4_0", R1_Q4_0}, {"q5_0", R1_Q5_0},
	};
	const r1_config *cfg = &m->cfg;
	conv		c;
	char		name[128];
	const char *arch;
	int			llama = cfg->arch == R1_ARCH_LLAMA;
	int			rc = -1;

	memset(&c, 0, sizeof(c));
	c.base = R1_DTYPE_OTHER;
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(type, types[i].name) == 0)
		{
			c.base = types[i].dt;
			c.mix_q4_k_m = strcmp(type, "q4_k_m") == 0;
		}
	if (c.base == R1_DTYPE_OTHER)
		return r1_fail(err, "unknown type \"%s\": use f32, f16, bf16, q8_0, q4_0, q5_0, q4_k, q5_k, q6_k or q4_k_m", type);
	c.n_layers = cfg->n_layers;
	c.w = r1_gguf_writer_new();
	if (!c.w)
		return r1_fail(err, "out of memory");

	arch = r1_arch_name(cfg->arch);
	r1_gguf_w_str(c.w, "general.architecture", arch);
	r1_gguf_w_str(c.w, "general.name", m->name);
	r1_gguf_w_u32(c.w, "general.alignment", R1_GGUF_DEFAULT_ALIGNMENT);

	/*
	 * llama.cpp's llama_ftype of the whole file, and ggml's quantisation
	 * format version (2)
	 */
	r1_gguf_w_u32(c.w, "general.file_type", file_type(type));
	r1_gguf_w_u32(c.w, "general.quantization_version", 2);
#define KEY(suffix) (snprintf(name, sizeof(name), "%s.%s", arch, suffix), name)
	r1_gguf_w_u32(c.w, KEY("block_count"), (uint32_t) cfg->n_layers);
	r1_gguf_w_u32(c.w, KEY("context_length"), (uint32_t) cfg->max_position);
	r1_gguf_w_u32(c.w, KEY("embedding_length"), (uint32_t) cfg->hidden_size);
	r1_gguf_w_u32(c.w, KEY("feed_forward_length"), (uint32_t) cfg->intermediate_size);
	r1_gguf_w_u32(c.w, KEY("attention.head_count"), (uint32_t) cfg->n_heads);
	r1_gguf_w_u32(c.w, KEY("attention.head_count_kv"), (uint32_t) cfg->n_kv_heads);
	r1_gguf_w_f32(c.w, KEY("rope.freq_base"), cfg->rope_theta);
	r1_gguf_w_f32(c.w, KEY("attention.layer_norm_rms_epsilon"), cfg->rms_norm_eps);
	if (cfg->head_dim != cfg->hidden_size / cfg->n_heads)
	{
		r1_gguf_w_u32(c.w, KEY("attention.key_length"), (uint32_t) cfg->head_dim);
		r1_gguf_w_u32(c.w, KEY("attention.value_length"), (uint32_t) cfg->head_dim);
	}
	if (cfg->arch == R1_ARCH_LLAMA)
		r1_gguf_w_u32(c.w, KEY("vocab_size"), (uint32_t) cfg->vocab_size);
#undef KEY
	if (tokdir)
	{
		if (add_tokenizer(&c, tokdir, cfg, err) != 0)
			goto out;
	}
	else
		add_special_ids(&c, cfg->bos_id, cfg->eos_id);

	if (add_tensor(&c, "token_embd.weight", -1, &m->embed, err) != 0 ||
		add_tensor(&c, "output_norm.weight", -1, &m->final_norm, err) != 0)
		goto out;
	if (!cfg->tie_embeddings && add_tensor(&c, "output.weight", -1, &m->lm_head, err) != 0)
		goto out;
	if (cfg->rope_scaled && add_rope_freqs(&c, cfg, err) != 0)
		goto out;
	for (int l = 0; l < cfg->n_layers; l++)
	{
		const r1_layer_weights *w = &m->layers[l];
		int			hd = llama ? cfg->head_dim : 0;

#define ADDP(suffix, field, hd) \
		(snprintf(name, sizeof(name), "blk.%d.%s", l, suffix), \
		 add_tensor_perm(&c, name, l, &w->field, (hd), err))
#define ADD(suffix, field) ADDP(suffix, field, 0)
		/* a Llama's q/k rows (and biases) go in llama.cpp's rope order */
#define ADDB(suffix, field, hd) (cfg->attn_bias ? ADDP(suffix, field, hd) : 0)
		if (ADD("attn_norm.weight", attn_norm) ||
			ADDP("attn_q.weight", wq, hd) || ADDB("attn_q.bias", bq, hd) ||
			ADDP("attn_k.weight", wk, hd) || ADDB("attn_k.bias", bk, hd) ||
			ADD("attn_v.weight", wv) || ADDB("attn_v.bias", bv, 0) ||
			ADD("attn_output.weight", wo) || ADD("ffn_norm.weight", ffn_norm) ||
			ADD("ffn_gate.weight", w_gate) || ADD("ffn_up.weight", w_up) ||
			ADD("ffn_down.weight", w_down))
			goto out;
#undef ADD
#undef ADDP
#undef ADDB
	}
	rc = r1_gguf_write(c.w, path, err);
out:
	for (int i = 0; i < c.n_bufs; i++)
		free(c.bufs[i]);
	free(c.bufs);
	r1_gguf_writer_free(c.w);
	return rc;
}
