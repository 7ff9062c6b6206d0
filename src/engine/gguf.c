/*
 * gguf.c - a bounded, validating reader of GGUF files, and a small writer.
 *
 * The reader walks the header with a cursor that never steps past the end of
 * the mapping; counts are checked against the bytes left before anything is
 * allocated, so an absurd count is an error, not an allocation.  Tensors are
 * exposed as r1_tensors pointing into the mapping, in Hugging Face shape
 * order ([out, in] for a linear layer: GGUF's ne[] reversed).
 */
#include "gguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "quant.h"

#define MAX_NAME_BYTES 255
#define MAX_KEY_BYTES 4096
#define MAX_DIMS 4				/* GGML_MAX_DIMS */
#define MIN_KV_BYTES (8 + 1 + 4)	/* key length, a 1-byte key, the type */
#define MIN_TENSOR_BYTES (8 + 1 + 4 + 8 + 4 + 8)

static const size_t scalar_size[R1_GGUF_N_TYPES] = {
	1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8
};

static const char *const value_type_names[R1_GGUF_N_TYPES] = {
	"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool",
	"string", "array", "uint64", "int64", "float64"
};

static const char *
base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

const char *
r1_gguf_type_name(uint32_t t)
{
	static const char *const names[] = {
		"F32", "F16", "Q4_0", "Q4_1", "(4)", "(5)", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
		"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
		"IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
		"IQ1_M", "BF16"
	};

	return t < sizeof(names) / sizeof(names[0]) ? names[t] : NULL;
}

static int
dtype_of_ggml(uint32_t t, r1_dtype *dt)
{
	switch (t)
	{
		case R1_GGML_F32:
			*dt = R1_F32;
			return 0;
		case R1_GGML_F16:
			*dt = R1_F16;
			return 0;
		case R1_GGML_BF16:
			*dt = R1_BF16;
			return 0;
		case R1_GGML_Q8_0:
			*dt = R1_Q8_0;
			return 0;
		case R1_GGML_Q4_0:
			*dt = R1_Q4_0;
			return 0;
		case R1_GGML_Q5_0:
			*dt = R1_Q5_0;
			return 0;
		case R1_GGML_Q4_K:
			*dt = R1_Q4_K;
			return 0;
		case R1_GGML_Q5_K:
			*dt = R1_Q5_K;
			return 0;
		case R1_GGML_Q6_K:
			*dt = R1_Q6_K;
			return 0;
		default:
			return -1;
	}
}

static uint32_t
ggml_of_dtype(r1_dtype dt)
{
	switch (dt)
	{
		case R1_F16:
			return R1_GGML_F16;
		case R1_BF16:
			return R1_GGML_BF16;
		case R1_Q8_0:
			return R1_GGML_Q8_0;
		case R1_Q4_0:
			return R1_GGML_Q4_0;
		case R1_Q5_0:
			return R1_GGML_Q5_0;
		case R1_Q4_K:
			return R1_GGML_Q4_K;
		case R1_Q5_K:
			return R1_GGML_Q5_K;
		case R1_Q6_K:
			return R1_GGML_Q6_K;
		default:
			return R1_GGML_F32;
	}
}

/* ---------- the cursor ---------- */

typedef struct cursor
{
	const uint8_t *base;
	size_t		pos;
	size_t		size;
} cursor;

static inline size_t
left(const cursor *c)
{
	return c->size - c->pos;
}

static int
rd(cursor *c, void *out, size_t n)
{
	if (left(c) < n)
		return -1;
	memcpy(out, c->base + c->pos, n);
	c->pos += n;
	return 0;
}

static int
rd_u32(cursor *c, uint32_t *v)
{
	return rd(c, v, 4);
}

static int
rd_u64(cursor *c, uint64_t *v)
{
	return rd(c, v, 8);
}

/* a string: u64 length + bytes; *s points into the mapping */
static int
rd_str(cursor *c, const uint8_t **s, uint64_t *len)
{
	if (rd_u64(c, len) != 0 || *len > left(c))
		return -1;
	*s = c->base + c->pos;
	c->pos += (size_t) *len;
	return 0;
}

/* ---------- opening ---------- */

static int
parse_kv(r1_gguf *g, cursor *c, int i, char **names_pos, size_t names_left, r1_error *err)
{
	const char *file = base_name(g->path);
	r1_gguf_kv *kv = &g->kv[i];
	const uint8_t *key;
	uint64_t	klen;

	if (rd_str(c, &key, &klen) != 0)
		return r1_fail(err, "%s: metadata entry %d: key runs past the end of the file (truncated?)", file, i);
	if (klen == 0 || klen > MAX_KEY_BYTES || memchr(key, '\0', (size_t) klen) || klen + 1 > names_left)
		return r1_fail(err, "%s: metadata entry %d: key of %llu bytes is empty, too long or holds a NUL byte",
					   file, i, (unsigned long long) klen);
	memcpy(*names_pos, key, (size_t) klen);
	(*names_pos)[klen] = '\0';
	kv->key = *names_pos;
	*names_pos += klen + 1;
	for (int j = 0; j < i; j++)
		if (strcmp(g->kv[j].key, kv->key) == 0)
			return r1_fail(err, "%s: metadata key \"%s\" appears twice", file, kv->key);
	if (rd_u32(c, &kv->type) != 0)
		return r1_fail(err, "%s: metadata \"%s\": value type past the end of the file (truncated?)", file, kv->key);
	if (kv->type >= R1_GGUF_N_TYPES)
		return r1_fail(err, "%s: metadata \"%s\": unknown value type %u", file, kv->key, kv->type);
	kv->n = 1;
	if (kv->type == R1_GGUF_STRING)
	{
		if (rd_str(c, &kv->data, &kv->len) != 0)
			return r1_fail(err, "%s: metadata \"%s\": string runs past the end of the file (truncated?)",
						   file, kv->key);
	}
	else if (kv->type == R1_GGUF_ARRAY)
	{
		if (rd_u32(c, &kv->arr_type) != 0 || rd_u64(c, &kv->n) != 0)
			return r1_fail(err, "%s: metadata \"%s\": array header past the end of the file (truncated?)",
						   file, kv->key);
		if (kv->arr_type >= R1_GGUF_N_TYPES || kv->arr_type == R1_GGUF_ARRAY)
			return r1_fail(err, "%s: metadata \"%s\": array of unsupported element type %u",
						   file, kv->key, kv->arr_type);
		kv->data = c->base + c->pos;
		if (kv->arr_type == R1_GGUF_STRING)
		{
			/* each string needs at least its 8-byte length */
			if (kv->n > left(c) / 8)
				return r1_fail(err, "%s: metadata \"%s\": %llu strings cannot fit in the file (truncated or corrupt)",
							   file, kv->key, (unsigned long long) kv->n);
			for (uint64_t k = 0; k < kv->n; k++)
			{
				const uint8_t *s;
				uint64_t	len;

				if (rd_str(c, &s, &len) != 0)
					return r1_fail(err, "%s: metadata \"%s\": string %llu runs past the end of the file (truncated?)",
								   file, kv->key, (unsigned long long) k);
			}
		}
		else
		{
			size_t		es = scalar_size[kv->arr_type];

			if (kv->n > left(c) / es)
				return r1_fail(err, "%s: metadata \"%s\": array of %llu %s values runs past the end of the file",
							   file, kv->key, (unsigned long long) kv->n, value_type_names[kv->arr_type]);
			c->pos += (size_t) kv->n * es;
		}
		kv->len = (uint64_t) (c->base + c->pos - kv->data);
	}
	else
	{
		size_t		es = scalar_size[kv->type];

		if (left(c) < es)
			return r1_fail(err, "%s: metadata \"%s\": value past the end of the file (truncated?)", file, kv->key);
		kv->data = c->base + c->pos;
		kv->len = es;
		c->pos += es;
	}
	return 0;
}

static int
parse_tensor(r1_gguf *g, cursor *c, int i, char **names_pos, size_t names_left,
			 uint64_t *offset, r1_error *err)
{
	const char *file = base_name(g->path);
	r1_tensor  *t = &g->tensors[i];
	const uint8_t *name;
	uint64_t	nlen,
				ne[MAX_DIMS];
	uint32_t	ndim,
				type;
	int64_t		numel = 1;
	size_t		nbytes;

	if (rd_str(c, &name, &nlen) != 0)
		return r1_fail(err, "%s: tensor info %d: name runs past the end of the file (truncated?)", file, i);
	if (nlen == 0 || nlen > MAX_NAME_BYTES || memchr(name, '\0', (size_t) nlen) || nlen + 1 > names_left)
		return r1_fail(err, "%s: tensor info %d: name of %llu bytes (1..%d allowed, no NUL)",
					   file, i, (unsigned long long) nlen, MAX_NAME_BYTES);
	memcpy(*names_pos, name, (size_t) nlen);
	(*names_pos)[nlen] = '\0';
	t->name = *names_pos;
	*names_pos += nlen + 1;
	for (int j = 0; j < i; j++)
		if (strcmp(g->tensors[j].name, t->name) == 0)
			return r1_fail(err, "%s: tensor \"%s\" appears twice", file, t->name);
	if (rd_u32(c, &ndim) != 0)
		return r1_fail(err, "%s: tensor \"%s\": info runs past the end of the file (truncated?)", file, t->name);
	if (ndim < 1 || ndim > MAX_DIMS)
		return r1_fail(err, "%s: tensor \"%s\": %u dimensions (1..%d allowed)", file, t->name, ndim, MAX_DIMS);
	for (uint32_t d = 0; d < ndim; d++)
	{
		if (rd_u64(c, &ne[d]) != 0)
			return r1_fail(err, "%s: tensor \"%s\": info runs past the end of the file (truncated?)", file, t->name);
		if (ne[d] == 0 || ne[d] > (uint64_t) INT64_MAX || __builtin_mul_overflow(numel, (int64_t) ne[d], &numel))
			return r1_fail(err, "%s: tensor \"%s\": dimension %u of %llu is zero or overflows",
						   file, t->name, d, (unsigned long long) ne[d]);
	}
	if (rd_u32(c, &type) != 0 || rd_u64(c, offset) != 0)
		return r1_fail(err, "%s: tensor \"%s\": info runs past the end of the file (truncated?)", file, t->name);
	if (dtype_of_ggml(type, &t->dtype) != 0)
	{
		if (r1_gguf_type_name(type))
			return r1_fail(err, "%s: tensor \"%s\": type %s is not supported (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K)",
						   file, t->name, r1_gguf_type_name(type));
		return r1_fail(err, "%s: tensor \"%s\": unknown tensor type %u", file, t->name, type);
	}
	if (ne[0] % (uint64_t) r1_dtype_block_elems(t->dtype) != 0)
		return r1_fail(err, "%s: tensor \"%s\": rows of %llu weights are not whole %s blocks of %d",
					   file, t->name, (unsigned long long) ne[0], r1_dtype_name(t->dtype),
					   r1_dtype_block_elems(t->dtype));
	if (r1_dtype_row_bytes(t->dtype, numel, &nbytes) != 0)
		return r1_fail(err, "%s: tensor \"%s\": size overflows", file, t->name);
	t->ndim = (int) ndim;
	for (uint32_t d = 0; d < ndim; d++)
		t->shape[d] = (int64_t) ne[ndim - 1 - d];
	t->nbytes = nbytes;
	t->file = g->path;
	return 0;
}

int
r1_gguf_open(r1_gguf *g, const char *path, r1_error *err)
{
	const char *file = base_name(path);
	cursor		c;
	uint8_t		magic[4];
	uint64_t	n_tensors,
				n_kv;
	uint64_t   *offsets = NULL;
	char	   *names_pos;
	size_t		names_cap;

	memset(g, 0, sizeof(*g));
	g->path = r1_strdup(path, err);
	if (!g->path)
		return -1;
	if (r1_map_file(path, &g->map, err) != 0)
		goto fail;
	c.base = g->map.data;
	c.pos = 0;
	c.size = g->map.size;
	if (rd(&c, magic, 4) != 0 || rd_u32(&c, &g->version) != 0 ||
		rd_u64(&c, &n_tensors) != 0 || rd_u64(&c, &n_kv) != 0)
	{
		if (c.size >= 4 && memcmp(c.base, "GGUF", 4) != 0)
			r1_fail(err, "%s: not a GGUF file (bad magic)", file);
		else
			r1_fail(err, "%s: %zu bytes is too short for a GGUF header (truncated?)", file, g->map.size);
		goto fail;
	}
	if (memcmp(magic, "GGUF", 4) != 0)
	{
		r1_fail(err, "%s: not a GGUF file (bad magic)", file);
		goto fail;
	}
	if (g->version != 2 && g->version != 3)
	{
		r1_fail(err, "%s: GGUF version %u is not supported (2 or 3; a big-endian file reads as a huge version)",
				file, g->version);
		goto fail;
	}
	if (n_kv > left(&c) / MIN_KV_BYTES)
	{
		r1_fail(err, "%s: %llu metadata entries cannot fit in the file (corrupt header)", file,
				(unsigned long long) n_kv);
		goto fail;
	}
	if (n_tensors > left(&c) / MIN_TENSOR_BYTES)
	{
		r1_fail(err, "%s: %llu tensors cannot fit in the file (corrupt header)", file,
				(unsigned long long) n_tensors);
		goto fail;
	}

	/*
	 * Keys and names are copied with a NUL each: never more than the file,
	 * nor than the longest keys and names allowed (a 40 GB file must not ask
	 * for 40 GB here).
	 */
	names_cap = (size_t) n_kv * (MAX_KEY_BYTES + 1) + (size_t) n_tensors * (MAX_NAME_BYTES + 1);
	if (names_cap > g->map.size)
		names_cap = g->map.size;
	names_cap += 1;
	g->kv = r1_calloc((size_t) n_kv + 1, sizeof(r1_gguf_kv), err);
	g->tensors = r1_calloc((size_t) n_tensors + 1, sizeof(r1_tensor), err);
	offsets = r1_calloc((size_t) n_tensors + 1, sizeof(uint64_t), err);
	g->names = r1_malloc(names_cap, err);
	if (!g->kv || !g->tensors || !offsets || !g->names)
		goto fail;
	names_pos = g->names;
	for (uint64_t i = 0; i < n_kv; i++)
	{
		if (parse_kv(g, &c, (int) i, &names_pos, names_cap - (size_t) (names_pos - g->names), err) != 0)
			goto fail;
		g->n_kv++;
	}
	g->alignment = R1_GGUF_DEFAULT_ALIGNMENT;
	{
		const r1_gguf_kv *a = r1_gguf_find_kv(g, "general.alignment");

		if (a)
		{
			uint32_t	v;

			if (a->type != R1_GGUF_UINT32)
			{
				r1_fail(err, "%s: metadata \"general.alignment\" is a %s, not a uint32", file,
						value_type_names[a->type]);
				goto fail;
			}
			memcpy(&v, a->data, 4);
			if (v == 0 || (v & (v - 1)) != 0 || v > (1u << 24))
			{
				r1_fail(err, "%s: metadata \"general.alignment\" = %u is not a power of two (at most 2^24)",
						file, v);
				goto fail;
			}
			g->alignment = v;
		}
	}
	for (uint64_t i = 0; i < n_tensors; i++)
	{
		if (parse_tensor(g, &c, (int) i, &names_pos, names_cap - (size_t) (names_pos - g->names),
						 &offsets[i], err) != 0)
			goto fail;
		g->n_tensors++;
	}
	/* the data section starts at the next multiple of the alignment */
	g->data_offset = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
	if (g->data_offset > g->map.size && n_tensors > 0)
	{
		r1_fail(err, "%s: the data section starts at byte %zu, past the end of the %zu-byte file (truncated?)",
				file, g->data_offset, g->map.size);
		goto fail;
	}
	for (int i = 0; i < g->n_tensors; i++)
	{
		r1_tensor  *t = &g->tensors[i];
		size_t		data_size = g->map.size - g->data_offset;

		if (offsets[i] % g->alignment != 0)
		{
			r1_fail(err, "%s: tensor \"%s\": offset %llu is not a multiple of the alignment %zu",
					file, t->name, (unsigned long long) offsets[i], g->alignment);
			goto fail;
		}
		if (offsets[i] > data_size || t->nbytes > data_size - offsets[i])
		{
			r1_fail(err, "%s: tensor \"%s\": %zu bytes at data offset %llu exceed the file's %zu data bytes (truncated?)",
					file, t->name, t->nbytes, (unsigned long long) offsets[i], data_size);
			goto fail;
		}
		t->data = (const uint8_t *) g->map.data + g->data_offset + offsets[i];
	}
	free(offsets);
	return 0;

fail:
	free(offsets);
	r1_gguf_close(g);
	return -1;
}

void
r1_gguf_close(r1_gguf *g)
{
	r1_unmap_file(&g->map);
	free(g->kv);
	free(g->tensors);
	free(g->names);
	free(g->path);
	memset(g, 0, sizeof(*g));
}

int64_t
r1_gguf_llama_hf_row(int64_t g, int head_dim)
{
	int64_t		head = g / head_dim,
				r = g % head_dim;

	return head * head_dim + (r % 2) * (head_dim / 2) + r / 2;
}

const r1_tensor *
r1_gguf_find(const r1_gguf *g, const char *name)
{
	for (int i = 0; i < g->n_tensors; i++)
		if (strcmp(g->tensors[i].name, name) == 0)
			return &g->tensors[i];
	return NULL;
}

const r1_gguf_kv *
r1_gguf_find_kv(const r1_gguf *g, const char *key)
{
	for (int i = 0; i < g->n_kv; i++)
		if (strcmp(g->kv[i].key, key) == 0)
			return &g->kv[i];
	return NULL;
}

int
r1_gguf_is_gguf(const char *path)
{
	FILE	   *f = fopen(path, "rb");
	char		m[4];
	int			yes;

	if (!f)
		return 0;
	yes = fread(m, 1, 4, f) == 4 && memcmp(m, "GGUF", 4) == 0;
	fclose(f);
	return yes;
}

/* ---------- metadata getters ---------- */

static int
is_int_type(uint32_t t)
{
	return t <= R1_GGUF_INT32 || t == R1_GGUF_UINT64 || t == R1_GGUF_INT64;
}

/* an integer element at p of type t; *neg_big set for a uint64 above INT64_MAX */
static int64_t
int_at(const uint8_t *p, uint32_t t, int *too_big)
{
	*too_big = 0;
	switch (t)
	{
		case R1_GGUF_UINT8:
			return p[0];
		case R1_GGUF_INT8:
			return (int8_t) p[0];
		case R1_GGUF_UINT16:
			{
				uint16_t	v;

				memcpy(&v, p, 2);
				return v;
			}
		case R1_GGUF_INT16:
			{
				int16_t		v;

				memcpy(&v, p, 2);
				return v;
			}
		case R1_GGUF_UINT32:
			{
				uint32_t	v;

				memcpy(&v, p, 4);
				return v;
			}
		case R1_GGUF_INT32:
			{
				int32_t		v;

				memcpy(&v, p, 4);
				return v;
			}
		case R1_GGUF_UINT64:
			{
				uint64_t	v;

				memcpy(&v, p, 8);
				*too_big = v > (uint64_t) INT64_MAX;
				return (int64_t) v;
			}
		case R1_GGUF_INT64:
			{
				int64_t		v;

				memcpy(&v, p, 8);
				return v;
			}
		default:
			return 0;
	}
}

static const r1_gguf_kv *
lookup(const r1_gguf *g, const char *key, int required, int *rc, r1_error *err)
{
	const r1_gguf_kv *kv = r1_gguf_find_kv(g, key);

	*rc = 0;
	if (!kv)
		*rc = required ? r1_fail(err, "%s: required metadata \"%s\" is missing", base_name(g->path), key) : 1;
	return kv;
}

int
r1_gguf_get_int(const r1_gguf *g, const char *key, int64_t lo, int64_t hi, int64_t *out,
				int required, r1_error *err)
{
	int			rc,
				too_big;
	const r1_gguf_kv *kv = lookup(g, key, required, &rc, err);
	int64_t		v;

	if (!kv)
		return rc;
	if (!is_int_type(kv->type))
		return r1_fail(err, "%s: metadata \"%s\" is a %s, not an integer", base_name(g->path), key,
					   value_type_names[kv->type]);
	v = int_at(kv->data, kv->type, &too_big);
	if (too_big || v < lo || v > hi)
		return r1_fail(err, "%s: metadata \"%s\" = %lld is out of range [%lld, %lld]", base_name(g->path),
					   key, (long long) v, (long long) lo, (long long) hi);
	*out = v;
	return 0;
}

int
r1_gguf_get_float(const r1_gguf *g, const char *key, double *out, int required, r1_error *err)
{
	int			rc,
				too_big;
	const r1_gguf_kv *kv = lookup(g, key, required, &rc, err);

	if (!kv)
		return rc;
	if (kv->type == R1_GGUF_FLOAT32)
	{
		float		f;

		memcpy(&f, kv->data, 4);
		*out = f;
	}
	else if (kv->type == R1_GGUF_FLOAT64)
		memcpy(out, kv->data, 8);
	else if (is_int_type(kv->type))
		*out = (double) int_at(kv->data, kv->type, &too_big);
	else
		return r1_fail(err, "%s: metadata \"%s\" is a %s, not a number", base_name(g->path), key,
					   value_type_names[kv->type]);
	return 0;
}

int
r1_gguf_get_str(const r1_gguf *g, const char *key, r1_gguf_str *out, int required, r1_error *err)
{
	int			rc;
	const r1_gguf_kv *kv = lookup(g, key, required, &rc, err);

	if (!kv)
		return rc;
	if (kv->type != R1_GGUF_STRING)
		return r1_fail(err, "%s: metadata \"%s\" is a %s, not a string", base_name(g->path), key,
					   value_type_names[kv->type]);
	out->s = (const char *) kv->data;
	out->len = (size_t) kv->len;
	return 0;
}

int
r1_gguf_get_array(const r1_gguf *g, const char *key, uint32_t elem_type, const r1_gguf_kv **out,
				  int required, r1_error *err)
{
	int			rc;
	const r1_gguf_kv *kv = lookup(g, key, required, &rc, err);

	if (!kv)
		return rc;
	if (kv->type != R1_GGUF_ARRAY ||
		(elem_type == R1_GGUF_INT64 ? !is_int_type(kv->arr_type) : kv->arr_type != elem_type))
		return r1_fail(err, "%s: metadata \"%s\" is not an array of %s", base_name(g->path), key,
					   elem_type == R1_GGUF_INT64 ? "integers" : value_type_names[elem_type]);
	*out = kv;
	return 0;
}

int
r1_gguf_array_strings(const r1_gguf *g, const r1_gguf_kv *kv, r1_gguf_str **out, r1_error *err)
{
	cursor		c;
	r1_gguf_str *s;

	*out = NULL;
	if (kv->type != R1_GGUF_ARRAY || kv->arr_type != R1_GGUF_STRING)
		return r1_fail(err, "%s: metadata \"%s\" is not an array of strings", base_name(g->path), kv->key);
	s = r1_malloc(sizeof(r1_gguf_str) * ((size_t) kv->n + 1), err);
	if (!s)
		return -1;
	/* bounds were checked at open; the cursor checks them again */
	c.base = kv->data;
	c.pos = 0;
	c.size = (size_t) kv->len;
	for (uint64_t i = 0; i < kv->n; i++)
	{
		const uint8_t *p;
		uint64_t	len;

		if (rd_str(&c, &p, &len) != 0)
		{
			free(s);
			return r1_fail(err, "%s: metadata \"%s\": string %llu is out of bounds", base_name(g->path),
						   kv->key, (unsigned long long) i);
		}
		s[i].s = (const char *) p;
		s[i].len = (size_t) len;
	}
	*out = s;
	return 0;
}

int64_t
r1_gguf_array_int(const r1_gguf_kv *kv, uint64_t i)
{
	int			too_big;

	if (kv->type != R1_GGUF_ARRAY || !is_int_type(kv->arr_type) || i >= kv->n)
		return 0;
	return int_at(kv->data + i * scalar_size[kv->arr_type], kv->arr_type, &too_big);
}

/* ---------- writing ---------- */

typedef struct w_tensor
{
	char	   *name;
	r1_dtype	dt;
	int			ndim;
	int64_t		shape[R1_MAX_DIMS];
	const void *data;
	size_t		nbytes;
	r1_gguf_fill_fn fill;		/* data made at write time (data NULL) */
	void	   *fill_ctx;
} w_tensor;

struct r1_gguf_writer
{
	uint8_t    *kv;				/* serialised metadata */
	size_t		kv_len,
				kv_cap;
	uint64_t	n_kv;
	w_tensor   *t;
	int			n_t,
				cap_t;
	int			oom;
};

r1_gguf_writer *
r1_gguf_writer_new(void)
{
	return calloc(1, sizeof(r1_gguf_writer));
}

void
r1_gguf_writer_free(r1_gguf_writer *w)
{
	if (!w)
		return;
	for (int i = 0; i < w->n_t; i++)
		free(w->t[i].name);
	free(w->t);
	free(w->kv);
	free(w);
}

static void
put(r1_gguf_writer *w, const void *p, size_t n)
{
	if (w->oom)
		return;
	if (w->kv_len + n > w->kv_cap)
	{
		size_t		cap = w->kv_cap ? w->kv_cap : 4096;
		uint8_t    *nb;

		while (cap < w->kv_len + n)
			cap *= 2;
		nb = realloc(w->kv, cap);
		if (!nb)
		{
			w->oom = 1;
			return;
		}
		w->kv = nb;
		w->kv_cap = cap;
	}
	memcpy(w->kv + w->kv_len, p, n);
	w->kv_len += n;
}

static void
put_u32(r1_gguf_writer *w, uint32_t v)
{
	put(w, &v, 4);
}

static void
put_str(r1_gguf_writer *w, const char *s, size_t len)
{
	uint64_t	n = len;

	put(w, &n, 8);
	put(w, s, len);
}

static void
put_key(r1_gguf_writer *w, const char *key, uint32_t type)
{
	put_str(w, key, strlen(key));
	put_u32(w, type);
	w->n_kv++;
}

void
r1_gguf_w_u32(r1_gguf_writer *w, const char *key, uint32_t v)
{
	put_key(w, key, R1_GGUF_UINT32);
	put_u32(w, v);
}

void
r1_gguf_w_i32(r1_gguf_writer *w, const char *key, int32_t v)
{
	put_key(w, key, R1_GGUF_INT32);
	put(w, &v, 4);
}

void
r1_gguf_w_f32(r1_gguf_writer *w, const char *key, float v)
{
	put_key(w, key, R1_GGUF_FLOAT32);
	put(w, &v, 4);
}

void
r1_gguf_w_bool(r1_gguf_writer *w, const char *key, int v)
{
	uint8_t		b = v ? 1 : 0;

	put_key(w, key, R1_GGUF_BOOL);
	put(w, &b, 1);
}

void
r1_gguf_w_str(r1_gguf_writer *w, const char *key, const char *s)
{
	put_key(w, key, R1_GGUF_STRING);
	put_str(w, s, strlen(s));
}

void
r1_gguf_w_str_array(r1_gguf_writer *w, const char *key, const r1_gguf_str *s, size_t n)
{
	uint64_t	n64 = n;

	put_key(w, key, R1_GGUF_ARRAY);
	put_u32(w, R1_GGUF_STRING);
	put(w, &n64, 8);
	for (size_t i = 0; i < n; i++)
		put_str(w, s[i].s, s[i].len);
}

void
r1_gguf_w_i32_array(r1_gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
	uint64_t	n64 = n;

	put_key(w, key, R1_GGUF_ARRAY);
	put_u32(w, R1_GGUF_INT32);
	put(w, &n64, 8);
	put(w, v, n * 4);
}

void
r1_gguf_w_tensor(r1_gguf_writer *w, const char *name, r1_dtype dt, int ndim, const int64_t *shape,
				 const void *data, size_t nbytes)
{
	w_tensor   *t;

	if (w->oom)
		return;
	if (w->n_t == w->cap_t)
	{
		int			cap = w->cap_t ? w->cap_t * 2 : 64;
		w_tensor   *nt = realloc(w->t, sizeof(w_tensor) * cap);

		if (!nt)
		{
			w->oom = 1;
			return;
		}
		w->t = nt;
		w->cap_t = cap;
	}
	t = &w->t[w->n_t];
	t->name = strdup(name);
	if (!t->name || ndim < 1 || ndim > MAX_DIMS)
	{
		free(t->name);
		w->oom = 1;
		return;
	}
	t->dt = dt;
	t->ndim = ndim;
	memcpy(t->shape, shape, sizeof(int64_t) * ndim);
	t->data = data;
	t->nbytes = nbytes;
	t->fill = NULL;
	t->fill_ctx = NULL;
	w->n_t++;
}

void
r1_gguf_w_tensor_fn(r1_gguf_writer *w, const char *name, r1_dtype dt, int ndim, const int64_t *shape,
					size_t nbytes, r1_gguf_fill_fn fill, void *ctx)
{
	r1_gguf_w_tensor(w, name, dt, ndim, shape, NULL, nbytes);
	if (!w->oom)
	{
		w->t[w->n_t - 1].fill = fill;
		w->t[w->n_t - 1].fill_ctx = ctx;
	}
}

int
r1_gguf_write(r1_gguf_writer *w, const char *path, r1_error *err)
{
	FILE	   *f;
	uint32_t	version = 3;
	uint64_t	nt = (uint64_t) w->n_t,
				off = 0;
	size_t		pos;
	static const uint8_t zeros[R1_GGUF_DEFAULT_ALIGNMENT];
	int			bad = 0;

	if (w->oom)
		return r1_fail(err, "%s: out of memory (or a bad tensor) building the file", path);
	f = fopen(path, "wb");
	if (!f)
		return r1_fail(err, "%s: cannot create: %s", path, strerror(errno));
	bad |= fwrite("GGUF", 1, 4, f) != 4;
	bad |= fwrite(&version, 4, 1, f) != 1;
	bad |= fwrite(&nt, 8, 1, f) != 1;
	bad |= fwrite(&w->n_kv, 8, 1, f) != 1;
	bad |= w->kv_len && fwrite(w->kv, 1, w->kv_len, f) != w->kv_len;
	pos = 24 + w->kv_len;
	for (int i = 0; i < w->n_t; i++)
	{
		w_tensor   *t = &w->t[i];
		uint64_t	len = strlen(t->name);
		uint32_t	nd = (uint32_t) t->ndim,
					type = ggml_of_dtype(t->dt);

		bad |= fwrite(&len, 8, 1, f) != 1;
		bad |= fwrite(t->name, 1, len, f) != len;
		bad |= fwrite(&nd, 4, 1, f) != 1;
		for (int d = t->ndim - 1; d >= 0; d--)
		{
			uint64_t	ne = (uint64_t) t->shape[d];

			bad |= fwrite(&ne, 8, 1, f) != 1;
		}
		bad |= fwrite(&type, 4, 1, f) != 1;
		bad |= fwrite(&off, 8, 1, f) != 1;
		pos += 8 + len + 4 + 8 * nd + 4 + 8;
		off += (t->nbytes + R1_GGUF_DEFAULT_ALIGNMENT - 1) / R1_GGUF_DEFAULT_ALIGNMENT * R1_GGUF_DEFAULT_ALIGNMENT;
	}
	bad |= fwrite(zeros, 1, (R1_GGUF_DEFAULT_ALIGNMENT - pos % R1_GGUF_DEFAULT_ALIGNMENT) % R1_GGUF_DEFAULT_ALIGNMENT, f) !=
		(R1_GGUF_DEFAULT_ALIGNMENT - pos % R1_GGUF_DEFAULT_ALIGNMENT) % R1_GGUF_DEFAULT_ALIGNMENT;
	for (int i = 0; i < w->n_t; i++)
	{
		w_tensor   *t = &w->t[i];
		size_t		pad = (R1_GGUF_DEFAULT_ALIGNMENT - t->nbytes % R1_GGUF_DEFAULT_ALIGNMENT) % R1_GGUF_DEFAULT_ALIGNMENT;

		if (t->fill && t->nbytes && !bad)
		{
			void	   *buf = malloc(t->nbytes);

			if (!buf || t->fill(t->fill_ctx, buf, t->nbytes, err) != 0)
			{
				if (!buf)
					r1_fail(err, "%s: out of memory making tensor \"%s\" (%zu bytes)", path, t->name, t->nbytes);
				free(buf);
				fclose(f);
				unlink(path);
				return -1;
			}
			bad |= fwrite(buf, 1, t->nbytes, f) != t->nbytes;
			free(buf);
		}
		else
			bad |= t->nbytes && fwrite(t->data, 1, t->nbytes, f) != t->nbytes;
		bad |= fwrite(zeros, 1, pad, f) != pad;
	}
	if (fclose(f) != 0)
		bad = 1;
	if (bad)
	{
		unlink(path);
		return r1_fail(err, "%s: write failed", path);
	}
	return 0;
}
