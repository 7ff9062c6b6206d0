/*
 * safetensors.h - a bounded, validating reader of .safetensors files.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
 * then the data; offsets are relative to the end of the header.  Every offset,
 * dtype and shape is checked against the file size before a tensor is exposed.
 */
#ifndef R1_SAFETENSORS_H
#define R1_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"
#include "util.h"

typedef struct r1_safetensors
{
	char	   *path;
	r1_mapping	map;
	r1_tensor  *tensors;
	int			n_tensors;
	char	   *names;			/* storage for tensor names */
} r1_safetensors;

int			r1_st_open(r1_safetensors *st, const char *path, r1_error *err);
const r1_tensor *r1_st_find(const r1_safetensors *st, const char *name);
void		r1_st_close(r1_safetensors *st);

/*
 * Write tensors (name, dtype, ndim, shape, data, nbytes are used) to a new
 * safetensors file, in the given order, data 8-byte aligned.
 */
int			r1_st_write(const char *path, const r1_tensor *tensors, int n, r1_error *err);

#endif							/* R1_SAFETENSORS_H */
