/*
 * safetensors.c - a bounded, validating reader of .safetensors files.
 *
 * Nothing in the header is trusted: its length, the JSON, every dtype, shape
 * and offset are checked against the mapped file before a tensor is exposed,
 * so a truncated or malformed file is a one-line error naming the file and
 * the tensor, never a read out of bounds.
 */
#include "safetensors.h"

#include "quant.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_HEADER_BYTES (100u << 20)
#define MAX_NAME_BYTES 255

static const struct
{
	const char *name;
	r1_dtype	dt;
	size_t		size;
}			dtypes[] = {
	{"F32", R1_F32, 4}, {"F16", R1_F16, 2}, {"BF16", R1_BF16, 2}, {"I64", R1_I64, 8},
	{"I32", R1_I32, 4},
	/* parsed and bounds-checked, but not computed with */
	{"F64", R1_DTYPE_OTHER, 8}, {"I16", R1_DTYPE_OTHER, 2}, {"U16", R1_DTYPE_OTHER, 2},
	{"I8", R1_DTYPE_OTHER, 1}, {"U8", R1_DTYPE_OTHER, 1}, {"BOOL", R1_DTYPE_OTHER, 1},
	{"U32", R1_DTYPE_OTHER, 4}, {"U64", R1_DTYPE_OTHER, 8},
	{"F8_E4M3", R1_F8_E4M3, 1}, {"F8_E5M2", R1_DTYPE_OTHER, 1},
};

static const char *
base_name(const char *path)
{
	const char *s = strrchr(path, '/');

	return s ? s + 1 : path;
}

static int
parse_entry(r1_safetensors *st, const char *name, json_t *v, const uint8_t *data,
			size_t data_size, r1_tensor *t, char **names_pos, r1_error *err)
{
	const char *file = base_name(st->path);
	json_t	   *jdt = json_object_get(v, "dtype");
	json_t	   *jshape = json_object_get(v, "shape");
	json_t	   *joff = json_object_get(v, "data_offsets");
	size_t		esize = 0,
				numel = 1,
				nbytes;
	json_int_t	begin,
				end;
	size_t		nlen = strlen(name);

	if (nlen == 0 || nlen > MAX_NAME_BYTES)
		return r1_fail(err, "%s: tensor name of %zu bytes (1..%d allowed)", file, nlen, MAX_NAME_BYTES);
	if (!json_is_object(v) || !json_is_string(jdt) || !json_is_array(jshape) || !json_is_array(joff))
		return r1_fail(err, "%s: tensor \"%s\": entry needs dtype, shape and data_offsets", file, name);
	t->dtype = R1_DTYPE_OTHER;
	for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
		if (strcmp(json_string_value(jdt), dtypes[i].name) == 0)
		{
			t->dtype = dtypes[i].dt;
			esize = dtypes[i].size;
		}
	if (esize == 0)
		return r1_fail(err, "%s: tensor \"%s\": unknown dtype \"%s\"", file, name, json_string_value(jdt));
	if (json_array_size(jshape) > R1_MAX_DIMS)
		return r1_fail(err, "%s: tensor \"%s\": %zu dimensions (at most %d)", file, name,
					   json_array_size(jshape), R1_MAX_DIMS);
	t->ndim = (int) json_array_size(jshape);
	for (int i = 0; i < t->ndim; i++)
	{
		json_t	   *d = json_array_get(jshape, i);

		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return r1_fail(err, "%s: tensor \"%s\": shape entries must be non-negative integers", file, name);
		t->shape[i] = json_integer_value(d);
		if (!r1_mul_size(numel, (size_t) t->shape[i], &numel))
			return r1_fail(err, "%s: tensor \"%s\": shape overflows", file, name);
	}
	if (json_array_size(joff) != 2 || !json_is_integer(json_array_get(joff, 0)) ||
		!json_is_integer(json_array_get(joff, 1)))
		return r1_fail(err, "%s: tensor \"%s\": data_offsets must be [begin, end]", file, name);
	begin = json_integer_value(json_array_get(joff, 0));
	end = json_integer_value(json_array_get(joff, 1));
	if (begin < 0 || end < begin)
		return r1_fail(err, "%s: tensor \"%s\": bad data_offsets [%lld, %lld]", file, name,
					   (long long) begin, (long long) end);
	if ((uint64_t) end > data_size)
		return r1_fail(err, "%s: tensor \"%s\": data_offsets [%lld, %lld] exceed the file's %zu data bytes (file truncated?)",
					   file, name, (long long) begin, (long long) end, data_size);
	if (!r1_mul_size(numel, esize, &nbytes) || nbytes != (size_t) (end - begin))
		return r1_fail(err, "%s: tensor \"%s\": data_offsets [%lld, %lld] hold %lld bytes, shape and dtype need %zu",
					   file, name, (long long) begin, (long long) end, (long long) (end - begin), nbytes);

	/*
	 * The backends read elements in place, so each tensor must start on a
	 * multiple of its element size (files from the safetensors library do: it
	 * pads the header to 8 bytes and orders tensors by dtype size).
	 */
	if (nbytes && (uintptr_t) (data + begin) % esize != 0)
		return r1_fail(err, "%s: tensor \"%s\": data at offset %lld is not aligned to its %zu-byte elements (rewrite the file with the safetensors library)",
					   file, name, (long long) begin, esize);
	memcpy(*names_pos, name, nlen + 1);
	t->name = *names_pos;
	*names_pos += nlen + 1;
	t->file = st->path;
	t->data = data + begin;
	t->nbytes = nbytes;
	return 0;
}

int
r1_st_open(r1_safetensors *st, const char *path, r1_error *err)
{
	const char *file = base_name(path);
	const uint8_t *bytes;
	uint64_t	hlen = 0;
	json_t	   *root;
	json_error_t jerr;
	const char *key;
	json_t	   *val;
	size_t		names_bytes = 0,
				n = 0;
	char	   *names_pos;

	memset(st, 0, sizeof(*st));
	st->path = r1_strdup(path, err);
	if (!st->path)
		return -1;
	if (r1_map_file(path, &st->map, err) != 0)
		goto fail;
	bytes = st->map.data;
	if (st->map.size < 8)
	{
		r1_fail(err, "%s: %zu bytes is too short for a safetensors file (truncated?)", file, st->map.size);
		goto fail;
	}
	for (int i = 7; i >= 0; i--)
		hlen = (hlen << 8) | bytes[i];
	if (hlen > MAX_HEADER_BYTES || hlen > st->map.size - 8)
	{
		r1_fail(err, "%s: header length %llu does not fit the file's %zu bytes (truncated or not safetensors)",
				file, (unsigned long long) hlen, st->map.size);
		goto fail;
	}
	root = json_loadb((const char *) bytes + 8, (size_t) hlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!root && strncmp(jerr.text, "duplicate object key", 20) == 0)
	{
		/* jansson's text is "duplicate object key near '\"name\"'" */
		r1_fail(err, "%s: the header names a tensor twice (%s)", file, jerr.text);
		goto fail;
	}
	if (!root || !json_is_object(root))
	{
		r1_fail(err, "%s: header is not a JSON object: %s", file,
				root ? "it is another JSON value" : jerr.text);
		json_decref(root);
		goto fail;
	}
	json_object_foreach(root, key, val)
	{
		if (strcmp(key, "__metadata__") == 0)
			continue;
		names_bytes += strlen(key) + 1;
		n++;
	}
	st->tensors = r1_calloc(n, sizeof(r1_tensor), err);
	st->names = r1_malloc(names_bytes, err);
	if (!st->tensors || !st->names)
	{
		json_decref(root);
		goto fail;
	}
	names_pos = st->names;
	json_object_foreach(root, key, val)
	{
		if (strcmp(key, "__metadata__") == 0)
			continue;
		if (parse_entry(st, key, val, bytes + 8 + hlen, st->map.size - 8 - hlen,
						&st->tensors[st->n_tensors], &names_pos, err) != 0)
		{
			json_decref(root);
			goto fail;
		}
		st->n_tensors++;
	}
	json_decref(root);
	return 0;

fail:
	r1_st_close(st);
	return -1;
}

const r1_tensor *
r1_st_find(const r1_safetensors *st, const char *name)
{
	for (int i = 0; i < st->n_tensors; i++)
		if (strcmp(st->tensors[i].name, name) == 0)
			return &st->tensors[i];
	return NULL;
}

void
r1_st_close(r1_safetensors *st)
{
	r1_unmap_file(&st->map);
	free(st->tensors);
	free(st->names);
	free(st->path);
	memset(st, 0, sizeof(*st));
}

int
r1_st_write(const char *path, const r1_tensor *entries, int n, r1_error *err)
{
	json_t	   *hdr = json_object();
	char	   *hjson;
	size_t		hlen,
				pad,
				off = 0;
	FILE	   *f;
	uint8_t		len8[8];
	int			rc = 0;

	int		   *order;

	if (!hdr)
		return r1_fail(err, "%s: out of memory", path);

	/*
	 * data in order of element size, largest first, so every tensor is
	 * aligned
	 */
	order = malloc(sizeof(int) * (n > 0 ? n : 1));
	if (!order)
	{
		json_decref(hdr);
		return r1_fail(err, "%s: out of memory", path);
	}
	{
		int			k = 0;

		for (size_t es = 8; es >= 1; es /= 2)
			for (int j = 0; j < n; j++)
			{
				size_t		s = r1_dtype_size(entries[j].dtype);

				if (s == es || (es == 1 && (s == 0 || s > 8 || (s & (s - 1)))))
					order[k++] = j;
			}
	}
	for (int k = 0; k < n; k++)
	{
		int			i = order[k];
		json_t	   *e;
		json_t	   *shape;
		size_t		want = r1_dtype_size(entries[i].dtype);
		int			bad = entries[i].ndim < 0 || entries[i].ndim > R1_MAX_DIMS;

		for (int d = 0; !bad && d < entries[i].ndim; d++)
			bad = entries[i].shape[d] < 0 || !r1_mul_size(want, (size_t) entries[i].shape[d], &want);
		if (bad || r1_dtype_size(entries[i].dtype) == 0 || want != entries[i].nbytes ||
			(entries[i].nbytes && !entries[i].data) || !entries[i].name || !entries[i].name[0] ||
			strlen(entries[i].name) > MAX_NAME_BYTES || strcmp(entries[i].name, "__metadata__") == 0 ||
			json_object_get(hdr, entries[i].name) != NULL)
		{
			json_decref(hdr);
			free(order);
			return r1_fail(err, "%s: tensor \"%s\": cannot write it (bad or repeated name, dtype %s, or %zu bytes for its shape)",
						   path, entries[i].name ? entries[i].name : "", r1_dtype_name(entries[i].dtype),
						   entries[i].nbytes);
		}
		e = json_object();
		shape = json_array();

		for (int d = 0; d < entries[i].ndim; d++)
			json_array_append_new(shape, json_integer(entries[i].shape[d]));
		json_object_set_new(e, "dtype", json_string(r1_dtype_name(entries[i].dtype)));
		json_object_set_new(e, "shape", shape);
		json_object_set_new(e, "data_offsets",
							json_pack("[II]", (json_int_t) off, (json_int_t) (off + entries[i].nbytes)));
		if (json_object_set_new(hdr, entries[i].name, e) != 0)
		{
			json_decref(hdr);
			free(order);
			return r1_fail(err, "%s: tensor \"%s\": cannot write it (name not UTF-8?)", path, entries[i].name);
		}
		off += entries[i].nbytes;
	}
	hjson = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(hdr);
	if (!hjson)
	{
		free(order);
		return r1_fail(err, "%s: cannot format the header", path);
	}
	hlen = strlen(hjson);
	pad = (8 - hlen % 8) % 8;	/* data starts 8-byte aligned, as the format
								 * recommends */
	for (int i = 0; i < 8; i++)
		len8[i] = (uint8_t) ((uint64_t) (hlen + pad) >> (8 * i));
	f = fopen(path, "wb");
	if (!f)
	{
		free(hjson);
		free(order);
		return r1_fail(err, "%s: cannot create: %s", path, strerror(errno));
	}
	if (fwrite(len8, 1, 8, f) != 8 || fwrite(hjson, 1, hlen, f) != hlen ||
		fwrite("        ", 1, pad, f) != pad)
		rc = -1;
	for (int k = 0; k < n && rc == 0; k++)
	{
		const r1_tensor *e = &entries[order[k]];

		if (e->nbytes && fwrite(e->data, 1, e->nbytes, f) != e->nbytes)
			rc = -1;
	}
	if (fclose(f) != 0)
		rc = -1;
	free(hjson);
	free(order);
	if (rc)
	{
		unlink(path);
		return r1_fail(err, "%s: write failed", path);
	}
	return 0;
}
