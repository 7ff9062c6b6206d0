/*
 * model.c - binding a Qwen2ForCausalLM or LlamaForCausalLM checkpoint's
 * tensors, or generating random weights at any shape.
 */
#include "model.h"
#include "model_fp8.h"
#include "quant.h"

#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SHARDS 1024

/* ---------- finding tensors across shards ---------- */

static const r1_tensor *
find_tensor(const r1_model *m, const char *name)
{
	for (int i = 0; i < m->n_files; i++)
	{
		const r1_tensor *t = r1_st_find(&m->files[i], name);

		if (t)
			return t;
	}
	return NULL;
}

static const char *
base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

/*
 * An FP8 matrix: its scale tensor ("<name>_scale", or "<name>_scale_inv" for
 * block scales) checked, then a bf16 copy owned by the model (model_fp8.c).
 */
static int
bind_fp8(r1_model *m, r1_tensor *out, const r1_tensor *t, const char *name, int64_t d0, int64_t d1,
		 r1_error *err)
{
	char		sname[300];
	const r1_tensor *sc;
	uint16_t   *buf;
	void	  **list;
	int			blocks = m->cfg.fp8 == 2;

	if (t->ndim != 2 || t->shape[0] != d0 || t->shape[1] != d1)
		return r1_fail(err, "%s: tensor \"%s\": shape [%lld, ...], config.json wants [%lld, %lld]",
					   base_name(t->file), name, (long long) t->shape[0], (long long) d0, (long long) d1);
	snprintf(sname, sizeof(sname), "%s%s", name, blocks ? "_scale_inv" : "_scale");
	sc = find_tensor(m, sname);
	if (!sc)
		return r1_fail(err, "%s: tensor \"%s\" is FP8 but its scale \"%s\" is missing", m->path, name, sname);
	list = realloc(m->dequant, sizeof(void *) * (m->n_dequant + 1));
	if (!list)
		return r1_fail(err, "out of memory");
	m->dequant = list;
	buf = r1_malloc((size_t) d0 * d1 * 2, err);
	if (!buf)
		return -1;
	m->dequant[m->n_dequant++] = buf;
	if (r1_fp8_to_bf16(t, sc, blocks ? m->cfg.fp8_block[0] : 0, blocks ? m->cfg.fp8_block[1] : 0, buf,
					   base_name(t->file), name, err) != 0)
		return -1;
	*out = *t;
	out->dtype = R1_BF16;
	out->data = buf;
	out->nbytes = (size_t) d0 * d1 * 2;
	m->weight_bytes += out->nbytes;
	return 0;
}

/* bind name to *out, checking presence, dtype and shape [d0] or [d0, d1] */
static int
bind(r1_model *m, r1_tensor *out, const char *name, int64_t d0, int64_t d1, r1_error *err)
{
	const r1_tensor *t = find_tensor(m, name);
	int			ndim = d1 ? 2 : 1;

	if (!t)
		return r1_fail(err, "%s: tensor \"%s\" is missing from the checkpoint", m->path, name);
	if (t->dtype == R1_F8_E4M3 && ndim == 2 && m->cfg.fp8)
		return bind_fp8(m, out, t, name, d0, d1, err);
	if (t->dtype == R1_F8_E4M3)
		return r1_fail(err, "%s: tensor \"%s\": FP8 weights need a quantization_config in config.json "
					   "(compressed-tensors float-quantized or quant_method fp8) and are read for matrices only",
					   base_name(t->file), name);
	if (t->dtype != R1_F32 && t->dtype != R1_F16 && t->dtype != R1_BF16)
		return r1_fail(err, "%s: tensor \"%s\": dtype %s is not supported (F32, F16 or BF16)",
					   base_name(t->file), name, r1_dtype_name(t->dtype));
	if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1))
	{
		char		got[128] = "";
		size_t		n = 0;

		for (int i = 0; i < t->ndim && n < sizeof(got) - 24; i++)
			n += snprintf(got + n, sizeof(got) - n, "%s%lld", i ? ", " : "", (long long) t->shape[i]);
		if (ndim == 2)
			return r1_fail(err, "%s: tensor \"%s\": shape [%s], config.json wants [%lld, %lld]",
						   base_name(t->file), name, got, (long long) d0, (long long) d1);
		return r1_fail(err, "%s: tensor \"%s\": shape [%s], config.json wants [%lld]",
					   base_name(t->file), name, got, (long long) d0);
	}
	*out = *t;
	m->weight_bytes += t->nbytes;
	return 0;
}

static int
bind_all(r1_model *m, r1_error *err)
{
	const r1_config *c = &m->cfg;
	int64_t		H = c->hidden_size,
				qd = (int64_t) c->n_heads * c->head_dim,
				kvd = (int64_t) c->n_kv_heads * c->head_dim,
				I = c->intermediate_size;
	char		name[256];

	m->layers = r1_calloc(c->n_layers, sizeof(r1_layer_weights), err);
	if (!m->layers)
		return -1;
	if (bind(m, &m->embed, "model.embed_tokens.weight", c->vocab_size, H, err) ||
		bind(m, &m->final_norm, "model.norm.weight", H, 0, err))
		return -1;
	if (find_tensor(m, "lm_head.weight"))
	{
		if (bind(m, &m->lm_head, "lm_head.weight", c->vocab_size, H, err))
			return -1;
	}
	else if (c->tie_embeddings)
		m->lm_head = m->embed;
	else
		return r1_fail(err, "%s: tensor \"lm_head.weight\" is missing and tie_word_embeddings is false", m->path);
	for (int l = 0; l < c->n_layers; l++)
	{
		r1_layer_weights *w = &m->layers[l];

#define BIND(field, suffix, d0, d1) \
		(snprintf(name, sizeof(name), "model.layers.%d.%s", l, suffix), \
		 bind(m, &w->field, name, d0, d1, err))
		if (BIND(attn_norm, "input_layernorm.weight", H, 0) ||
			BIND(wq, "self_attn.q_proj.weight", qd, H) ||
			BIND(wk, "self_attn.k_proj.weight", kvd, H) ||
			BIND(wv, "self_attn.v_proj.weight", kvd, H) ||
			BIND(wo, "self_attn.o_proj.weight", H, qd) ||
			BIND(ffn_norm, "post_attention_layernorm.weight", H, 0) ||
			BIND(w_gate, "mlp.gate_proj.weight", I, H) ||
			BIND(w_up, "mlp.up_proj.weight", I, H) ||
			BIND(w_down, "mlp.down_proj.weight", H, I))
			return -1;
		/* Qwen2's q/k/v biases; a Llama has them only with attention_bias */
		if (c->attn_bias &&
			(BIND(bq, "self_attn.q_proj.bias", qd, 0) ||
			 BIND(bk, "self_attn.k_proj.bias", kvd, 0) ||
			 BIND(bv, "self_attn.v_proj.bias", kvd, 0)))
			return -1;
#undef BIND
	}
	m->dtype = m->embed.dtype;
	return 0;
}

/* ---------- which files hold the weights ---------- */

static int
add_file(r1_model *m, const char *dir, const char *fname, r1_error *err)
{
	char		path[4096];

	for (int i = 0; i < m->n_files; i++)
		if (strcmp(base_name(m->files[i].path), fname) == 0)
			return 0;
	if (strchr(fname, '/') || strcmp(fname, "..") == 0 || fname[0] == '.' || !fname[0])
		return r1_fail(err, "%s/model.safetensors.index.json: shard name \"%s\" is not a plain file name", dir, fname);
	if (m->n_files >= MAX_SHARDS)
		return r1_fail(err, "%s: more than %d weight files", dir, MAX_SHARDS);
	if (r1_path_join(path, sizeof(path), dir, fname, err) != 0)
		return -1;
	if (r1_st_open(&m->files[m->n_files], path, err) != 0)
		return -1;
	m->n_files++;
	return 0;
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static int
open_files(r1_model *m, const char *dir, r1_error *err)
{
	char		path[4096];
	FILE	   *f;

	m->files = r1_calloc(MAX_SHARDS, sizeof(r1_safetensors), err);
	if (!m->files)
		return -1;
	if (r1_path_join(path, sizeof(path), dir, "model.safetensors.index.json", err) != 0)
		return -1;
	if ((f = fopen(path, "r")) != NULL)
	{
		json_error_t jerr;
		json_t	   *root,
				   *map;
		const char *key;
		json_t	   *val;
		int			rc = 0;

		root = json_loadf(f, 0, &jerr);
		fclose(f);
		if (!root)
			return r1_fail(err, "%s: invalid JSON at line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);
		map = json_object_get(root, "weight_map");
		if (!json_is_object(map))
		{
			json_decref(root);
			return r1_fail(err, "%s: no \"weight_map\" object", path);
		}
		json_object_foreach(map, key, val)
		{
			if (!json_is_string(val))
			{
				rc = r1_fail(err, "%s: weight_map[\"%s\"] is not a file name", path, key);
				break;
			}
			if ((rc = add_file(m, dir, json_string_value(val), err)) != 0)
				break;
		}
		json_decref(root);
		return rc;
	}
	if (r1_path_join(path, sizeof(path), dir, "model.safetensors", err) != 0)
		return -1;
	if ((f = fopen(path, "r")) != NULL)
	{
		fclose(f);
		return add_file(m, dir, "model.safetensors", err);
	}
	/* no index and no model.safetensors: every *.safetensors in the directory */
	{
		DIR		   *d = opendir(dir);
		struct dirent *de;
		char	   *names[MAX_SHARDS];
		int			n = 0,
					rc = 0;

		if (!d)
			return r1_fail(err, "%s: cannot open the model directory", dir);
		while ((de = readdir(d)) != NULL && n < MAX_SHARDS)
		{
			size_t		len = strlen(de->d_name);

			if (len > 12 && strcmp(de->d_name + len - 12, ".safetensors") == 0 && de->d_name[0] != '.')
				names[n++] = strdup(de->d_name);
		}
		closedir(d);
		if (n == 0)
			return r1_fail(err, "%s: no model.safetensors, model.safetensors.index.json or *.safetensors file", dir);
		qsort(names, n, sizeof(char *), str_cmp);
		for (int i = 0; i < n; i++)
		{
			if (rc == 0)
				rc = add_file(m, dir, names[i], err);
			free(names[i]);
		}
		return rc;
	}
}

int
r1_model_load(r1_model **out, const char *dir, r1_error *err)
{
	r1_model   *m;
	char		path[4096];
	size_t		len;

	*out = NULL;
	m = r1_calloc(1, sizeof(*m), err);
	if (!m)
		return -1;
	len = strlen(dir);
	while (len > 1 && dir[len - 1] == '/')
		len--;
	if (len >= sizeof(m->path))
	{
		free(m);
		return r1_fail(err, "model path too long");
	}
	memcpy(m->path, dir, len);
	m->path[len] = '\0';
	snprintf(m->name, sizeof(m->name), "%.255s", base_name(m->path));
	{
		struct stat sb;

		if (stat(m->path, &sb) == 0 && S_ISREG(sb.st_mode))
		{
			/* a file, not a checkpoint directory: GGUF */
			if (r1_model_load_gguf(m, err) != 0)
			{
				r1_model_free(m);
				return -1;
			}
			*out = m;
			return 0;
		}
	}
	if (r1_path_join(path, sizeof(path), m->path, "config.json", err) != 0 ||
		r1_config_load(&m->cfg, path, err) != 0 ||
		open_files(m, m->path, err) != 0 ||
		bind_all(m, err) != 0)
	{
		r1_model_free(m);
		return -1;
	}
	*out = m;
	return 0;
}

/* ---------- random weights ---------- */

static inline uint64_t
splitmix64(uint64_t *s)
{
	uint64_t	z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* a 32-bit integer hash (Wellons' lowbias32): cheap and vectorizable */
static inline uint32_t
hash32(uint32_t x)
{
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

#define FILL_CHUNK 4096

/* 24 random bits for element j of a chunk keyed by the 64 bits (khi, klo) */
#define RAND24(j) (hash32(hash32((uint32_t) (j) ^ klo) ^ khi) >> 8)

/*
 * Fill n elements with uniform values of standard deviation std around mean
 * (std 0 gives the constant).  Element j of chunk c (FILL_CHUNK elements) is
 * a hash of j and a 64-bit key(seed, c), so threads fill chunks in parallel, the inner
 * loop vectorizes, and the result does not depend on the thread count.
 */
/* value = lo + RAND24 * scale: uniform with that mean and std (std 0: the mean) */
static inline void
uniform_params(float mean, float std, float *lo, float *scale)
{
	float		half_width = std * 1.7320508f;	/* uniform on [-a, a] has std
												 * a/sqrt(3) */

	*scale = 2.0f * half_width / 16777216.0f;
	*lo = mean - half_width;
}

/* the 64-bit key of chunk c of a tensor filled from seed, as RAND24 takes it */
static inline void
fill_key(uint64_t seed, size_t c, uint32_t *klo, uint32_t *khi)
{
	uint64_t	s = seed ^ ((uint64_t) c * 0xD1B54A32D192ED03ull);
	uint64_t	k = splitmix64(&s);

	*klo = (uint32_t) k;
	*khi = (uint32_t) (k >> 32);
}

static void
fill(void *dst, r1_dtype dt, size_t n, float mean, float std, uint64_t seed)
{
	size_t		chunks = (n + FILL_CHUNK - 1) / FILL_CHUNK;
	float		scale,
				lo;

	uniform_params(mean, std, &lo, &scale);
#pragma omp parallel for schedule(static)
	for (size_t c = 0; c < chunks; c++)
	{
		uint32_t	klo,
					khi;
		size_t		begin = c * FILL_CHUNK;
		int			len = (int) (n - begin < FILL_CHUNK ? n - begin : FILL_CHUNK);

		fill_key(seed, c, &klo, &khi);
		if (dt == R1_F32)
		{
			float	   *out = (float *) dst + begin;

#pragma omp simd
			for (int j = 0; j < len; j++)
				out[j] = lo + (float) RAND24(j) * scale;
		}
		else if (dt == R1_BF16)
		{
			uint16_t   *out = (uint16_t *) dst + begin;

#pragma omp simd
			for (int j = 0; j < len; j++)
			{
				union
				{
					float		f;
					uint32_t	u;
				}			v;

				/* finite values: round to nearest even without the NaN case */
				v.f = lo + (float) RAND24(j) * scale;
				out[j] = (uint16_t) ((v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16);
			}
		}
		else
		{
			uint16_t   *out = (uint16_t *) dst + begin;

			for (int j = 0; j < len; j++)
				out[j] = r1_f32_to_f16(lo + (float) RAND24(j) * scale);
		}
	}
}

/* elements [first, first + count) of what fill(..., R1_F32, ...) writes, serially */
static void
fill_range_f32(float *dst, size_t first, size_t count, float mean, float std, uint64_t seed)
{
	float		scale,
				lo;
	size_t		i = first,
				end = first + count;

	uniform_params(mean, std, &lo, &scale);
	while (i < end)
	{
		size_t		c = i / FILL_CHUNK;
		uint32_t	klo,
					khi;
		size_t		stop = (c + 1) * FILL_CHUNK < end ? (c + 1) * FILL_CHUNK : end;

		fill_key(seed, c, &klo, &khi);
		for (; i < stop; i++)
		{
			int			j = (int) (i - c * FILL_CHUNK);

			*dst++ = lo + (float) RAND24(j) * scale;
		}
	}
}

int
r1_model_rows(const r1_tensor *t, int64_t r0, int64_t nr, float *out, r1_error *err)
{
	int64_t		cols = t->shape[t->ndim - 1];
	int64_t		rows = t->ndim == 2 ? t->shape[0] : 1;
	size_t		row_bytes;

	if (r0 < 0 || nr < 0 || r0 + nr > rows)
		return r1_fail(err, "tensor \"%s\": rows [%lld, %lld) out of %lld", t->name, (long long) r0,
					   (long long) (r0 + nr), (long long) rows);
	if (!t->data)
	{
		fill_range_f32(out, (size_t) r0 * cols, (size_t) nr * cols, t->lazy_mean, t->lazy_std, t->lazy_seed);
		return 0;
	}
	if (r1_dtype_row_bytes(t->dtype, cols, &row_bytes) != 0)
		return r1_fail(err, "tensor \"%s\": rows of %lld %s values cannot be read", t->name, (long long) cols,
					   r1_dtype_name(t->dtype));
	for (int64_t r = 0; r < nr; r++)
		r1_dequantize_row(t->dtype, (const uint8_t *) t->data + (r0 + r) * row_bytes, out + r * cols, cols);
	return 0;
}

static int
random_model(r1_model **out, const r1_config *cfg, r1_dtype dtype, uint64_t seed, int lazy, r1_error *err)
{
	r1_model   *m;
	const r1_config *c = cfg;
	size_t		es = r1_dtype_size(dtype);
	size_t		H = c->hidden_size,
				qd = (size_t) c->n_heads * c->head_dim,
				kvd = (size_t) c->n_kv_heads * c->head_dim,
				I = c->intermediate_size,
				V = c->vocab_size;
	size_t		nb = c->attn_bias ? 1 : 0;	/* q/k/v biases */
	size_t		per_layer = 2 * H + qd * H + qd * nb + 2 * (kvd * H + kvd * nb) + H * qd + 3 * I * H;
	size_t		total = V * H + H + per_layer * c->n_layers + (c->tie_embeddings ? 0 : V * H);
	size_t		bytes;
	char	   *p;
	uint64_t	tensor_no = 0;

	*out = NULL;
	if (dtype != R1_F32 && dtype != R1_F16 && dtype != R1_BF16)
		return r1_fail(err, "random weights must be F32, F16 or BF16");
	if (r1_config_validate(cfg, "random weights", err) != 0)
		return -1;
	if (!r1_mul_size(total, es, &bytes))
		return r1_fail(err, "random weights: size overflows");
	m = r1_calloc(1, sizeof(*m), err);
	if (!m)
		return -1;
	m->cfg = *cfg;
	m->dtype = dtype;
	m->lazy = lazy;
	m->layers = r1_calloc(c->n_layers, sizeof(r1_layer_weights), err);
	m->owned = lazy ? NULL : r1_malloc(bytes, err);
	if (!m->layers || (!lazy && !m->owned))
	{
		r1_model_free(m);
		return -1;
	}
	p = m->owned;

#define NEW(t, d0, d1, mean, std) \
	do { \
		size_t n_ = (size_t) (d0) * ((d1) ? (size_t) (d1) : 1); \
		(t).name = "random"; (t).file = ""; (t).dtype = dtype; \
		(t).ndim = (d1) ? 2 : 1; (t).shape[0] = (d0); (t).shape[1] = (d1); \
		(t).nbytes = n_ * es; \
		(t).lazy_seed = seed * 0x9E3779B97F4A7C15ull + (++tensor_no); \
		(t).lazy_mean = (mean); (t).lazy_std = (std); \
		(t).data = lazy ? NULL : p; \
		if (!lazy) \
			fill(p, dtype, n_, (mean), (std), (t).lazy_seed); \
		p += lazy ? 0 : n_ * es; \
	} while (0)

	NEW(m->embed, V, H, 0.0f, 0.02f);
	NEW(m->final_norm, H, 0, 1.0f, 0.0f);
	for (int l = 0; l < c->n_layers; l++)
	{
		r1_layer_weights *w = &m->layers[l];

		NEW(w->attn_norm, H, 0, 1.0f, 0.0f);
		NEW(w->ffn_norm, H, 0, 1.0f, 0.0f);
		NEW(w->wq, qd, H, 0.0f, 0.02f);
		if (nb)
			NEW(w->bq, qd, 0, 0.0f, 0.02f);
		NEW(w->wk, kvd, H, 0.0f, 0.02f);
		if (nb)
			NEW(w->bk, kvd, 0, 0.0f, 0.02f);
		NEW(w->wv, kvd, H, 0.0f, 0.02f);
		if (nb)
			NEW(w->bv, kvd, 0, 0.0f, 0.02f);
		NEW(w->wo, H, qd, 0.0f, 0.02f);
		NEW(w->w_gate, I, H, 0.0f, 0.02f);
		NEW(w->w_up, I, H, 0.0f, 0.02f);
		NEW(w->w_down, H, I, 0.0f, 0.02f);
	}
	if (c->tie_embeddings)
		m->lm_head = m->embed;
	else
		NEW(m->lm_head, V, H, 0.0f, 0.02f);
#undef NEW
	m->weight_bytes = bytes;
	snprintf(m->name, sizeof(m->name), "random-%dx%d", c->n_layers, c->hidden_size);
	{
		static const char *const presets[] = {"1.5b", "7b", "14b", "32b", "llama-8b", "llama-70b"};

		for (int i = 0; i < 6; i++)
		{
			r1_config	p;

			if (r1_config_preset(&p, presets[i], NULL) == 0 && p.vocab_size == c->vocab_size &&
				p.hidden_size == c->hidden_size && p.intermediate_size == c->intermediate_size &&
				p.n_layers == c->n_layers && p.n_heads == c->n_heads && p.n_kv_heads == c->n_kv_heads &&
				p.head_dim == c->head_dim && p.tie_embeddings == c->tie_embeddings && p.arch == c->arch)
				snprintf(m->name, sizeof(m->name), "random-%s", presets[i]);
		}
	}
	*out = m;
	return 0;
}

int
r1_model_random(r1_model **out, const r1_config *cfg, r1_dtype dtype, uint64_t seed, r1_error *err)
{
	return random_model(out, cfg, dtype, seed, 0, err);
}

int
r1_model_random_lazy(r1_model **out, const r1_config *cfg, uint64_t seed, r1_error *err)
{
	return random_model(out, cfg, R1_F32, seed, 1, err);
}

void
r1_model_free(r1_model *m)
{
	if (!m)
		return;
	if (m->files)
		for (int i = 0; i < m->n_files; i++)
			r1_st_close(&m->files[i]);
	free(m->files);
	r1_model_free_gguf(m);
	free(m->layers);
	free(m->owned);
	for (int i = 0; i < m->n_dequant; i++)
		free(m->dequant[i]);
	free(m->dequant);
	free(m);
}
