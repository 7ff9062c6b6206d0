/*
 * gguf.h - a bounded, validating reader (and a small writer) of GGUF files,
 * the format of llama.cpp and Ollama (versions 2 and 3, little-endian).
 *
 * Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count; the
 * metadata (key: u64 length + bytes; u32 value type; value: a scalar, a
 * string (u64 length + bytes) or an array (u32 element type, u64 count,
 * elements)); the tensor infos (name, u32 n_dims, u64 ne[n_dims] with ne[0]
 * the contiguous dimension, u32 ggml type, u64 offset); padding to the
 * alignment (general.alignment, default 32); the data section.
 *
 * Nothing is trusted: every length, count, type, dimension and offset is
 * checked against the mapped file before anything is exposed, so a bad file
 * is a one-line error naming the file and the key or tensor.
 */
#ifndef R1_GGUF_H
#define R1_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"
#include "util.h"

/* metadata value types */
enum
{
	R1_GGUF_UINT8 = 0,
	R1_GGUF_INT8 = 1,
	R1_GGUF_UINT16 = 2,
	R1_GGUF_INT16 = 3,
	R1_GGUF_UINT32 = 4,
	R1_GGUF_INT32 = 5,
	R1_GGUF_FLOAT32 = 6,
	R1_GGUF_BOOL = 7,
	R1_GGUF_STRING = 8,
	R1_GGUF_ARRAY = 9,
	R1_GGUF_UINT64 = 10,
	R1_GGUF_INT64 = 11,
	R1_GGUF_FLOAT64 = 12,
	R1_GGUF_N_TYPES
};

/* ggml tensor types the engine reads */
enum
{
	R1_GGML_F32 = 0,
	R1_GGML_F16 = 1,
	R1_GGML_Q4_0 = 2,
	R1_GGML_Q5_0 = 6,
	R1_GGML_Q8_0 = 8,
	R1_GGML_Q4_K = 12,
	R1_GGML_Q5_K = 13,
	R1_GGML_Q6_K = 14,
	R1_GGML_BF16 = 30
};

#define R1_GGUF_DEFAULT_ALIGNMENT 32

typedef struct r1_gguf_kv
{
	const char *key;			/* NUL-terminated copy */
	uint32_t	type;			/* R1_GGUF_* */
	uint32_t	arr_type;		/* element type of an array */
	uint64_t	n;				/* elements of an array (1 for a scalar or
								 * string) */
	const uint8_t *data;		/* the value: a scalar, a string's bytes, an
								 * array's first element */
	uint64_t	len;			/* bytes at data (a string's length; all of an
								 * array's elements) */
} r1_gguf_kv;

typedef struct r1_gguf_str
{
	const char *s;				/* not NUL-terminated: points into the mapping */
	size_t		len;
} r1_gguf_str;

typedef struct r1_gguf
{
	char	   *path;
	r1_mapping	map;
	uint32_t	version;
	r1_gguf_kv *kv;
	int			n_kv;
	r1_tensor  *tensors;		/* shape in Hugging Face order: [ne[n-1], ...,
								 * ne[0]] */
	int			n_tensors;
	char	   *names;			/* storage for keys and tensor names */
	size_t		alignment;
	size_t		data_offset;	/* start of the data section in the file */
} r1_gguf;

int			r1_gguf_open(r1_gguf *g, const char *path, r1_error *err);
void		r1_gguf_close(r1_gguf *g);
const r1_tensor *r1_gguf_find(const r1_gguf *g, const char *name);
const r1_gguf_kv *r1_gguf_find_kv(const r1_gguf *g, const char *key);

/* 1 when path starts with the GGUF magic (a readable regular file). */
int			r1_gguf_is_gguf(const char *path);

/*
 * Typed metadata getters: 0 found, 1 absent and not required, -1 error (absent
 * and required, wrong type, out of [lo, hi]).  Integers accept any integer
 * type, floats any number type.
 */
int			r1_gguf_get_int(const r1_gguf *g, const char *key, int64_t lo, int64_t hi,
							int64_t *out, int required, r1_error *err);
int			r1_gguf_get_float(const r1_gguf *g, const char *key, double *out, int required,
							  r1_error *err);
int			r1_gguf_get_str(const r1_gguf *g, const char *key, r1_gguf_str *out, int required,
							r1_error *err);

/* an array of elem_type (any integer type when elem_type is R1_GGUF_INT64) */
int			r1_gguf_get_array(const r1_gguf *g, const char *key, uint32_t elem_type,
							  const r1_gguf_kv **out, int required, r1_error *err);

/* the strings of a string array, malloc'd, pointing into the mapping */
int			r1_gguf_array_strings(const r1_gguf *g, const r1_gguf_kv *kv, r1_gguf_str **out,
								  r1_error *err);

/* element i (< kv->n) of an integer array */
int64_t		r1_gguf_array_int(const r1_gguf_kv *kv, uint64_t i);

const char *r1_gguf_type_name(uint32_t ggml_type);

/*
 * llama.cpp's converter permutes the rows of a Llama's attn_q and attn_k
 * within each head so that RoPE rotates adjacent pairs (ggml's "normal" rope):
 * GGUF row h*d + 2j + t holds Hugging Face row h*d + t*d/2 + j.  The HF row of
 * GGUF row g, for heads of head_dim d.
 */
int64_t		r1_gguf_llama_hf_row(int64_t g, int head_dim);

/* ---------- writing ---------- */

typedef struct r1_gguf_writer r1_gguf_writer;

r1_gguf_writer *r1_gguf_writer_new(void);
void		r1_gguf_writer_free(r1_gguf_writer *w);
void		r1_gguf_w_u32(r1_gguf_writer *w, const char *key, uint32_t v);
void		r1_gguf_w_i32(r1_gguf_writer *w, const char *key, int32_t v);
void		r1_gguf_w_f32(r1_gguf_writer *w, const char *key, float v);
void		r1_gguf_w_bool(r1_gguf_writer *w, const char *key, int v);
void		r1_gguf_w_str(r1_gguf_writer *w, const char *key, const char *s);
void		r1_gguf_w_str_array(r1_gguf_writer *w, const char *key, const r1_gguf_str *s, size_t n);
void		r1_gguf_w_i32_array(r1_gguf_writer *w, const char *key, const int32_t *v, size_t n);

/* a tensor: shape in Hugging Face order, data of dtype (kept until written) */
void		r1_gguf_w_tensor(r1_gguf_writer *w, const char *name, r1_dtype dt, int ndim,
							 const int64_t *shape, const void *data, size_t nbytes);

/*
 * A tensor whose nbytes are made when the file is written: fill(ctx, buf,
 * nbytes, err) writes them into a buffer that lives for that call (0, or -1
 * with err set).  Tensors are made one at a time, so a conversion holds one
 * output tensor at once, not the whole file.
 */
typedef int (*r1_gguf_fill_fn) (void *ctx, void *buf, size_t nbytes, r1_error *err);
void		r1_gguf_w_tensor_fn(r1_gguf_writer *w, const char *name, r1_dtype dt, int ndim,
								const int64_t *shape, size_t nbytes, r1_gguf_fill_fn fill, void *ctx);
int			r1_gguf_write(r1_gguf_writer *w, const char *path, r1_error *err);

#endif							/* R1_GGUF_H */
