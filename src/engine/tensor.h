/*
 * tensor.h - the engine's core types: an element type (r1_dtype) and a
 * tensor (r1_tensor), a named view of weights in a mapped file (safetensors,
 * GGUF) or made on demand (random weights).
 */
#ifndef R1_TENSOR_H
#define R1_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum r1_dtype
{
	R1_F32 = 0,
	R1_F16,
	R1_BF16,
	R1_I64,
	R1_I32,
	R1_Q8_0,					/* ggml block formats (GGUF files), see
								 * quant.h */
	R1_Q4_K,
	R1_Q5_K,
	R1_Q6_K,
	R1_Q4_0,					/* ggml's first formats, still in many GGUF
								 * files */
	R1_Q5_0,
	R1_F8_E4M3,					/* FP8 checkpoints (weights with scales, see
								 * model.c) */
	R1_DTYPE_OTHER				/* a dtype the engine does not compute with
								 * (e.g. F64, I8) */
} r1_dtype;

#define R1_MAX_DIMS 8

typedef struct r1_tensor
{
	const char *name;			/* owned by the file */
	const char *file;			/* path of the file that holds it */
	r1_dtype	dtype;
	int			ndim;
	int64_t		shape[R1_MAX_DIMS];
	const void *data;			/* points into the mapping */
	size_t		nbytes;
	/* data NULL: random weights made on demand (r1_model_random_lazy) */
	uint64_t	lazy_seed;
	float		lazy_mean,
				lazy_std;
} r1_tensor;

const char *r1_dtype_name(r1_dtype dt);
size_t		r1_dtype_size(r1_dtype dt); /* 0 for R1_DTYPE_OTHER and block
										 * formats */

/* Number of elements of a tensor (product of its shape). */
int64_t		r1_tensor_numel(const r1_tensor *t);

/* Element i of a F32/F16/BF16 (or block-quantised) tensor as float. */
float		r1_tensor_get_f32(const r1_tensor *t, size_t i);

#endif							/* R1_TENSOR_H */
