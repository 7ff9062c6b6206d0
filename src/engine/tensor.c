/*
 * tensor.c - element types and reading one element of a tensor.
 */
#include <string.h>

#include "quant.h"
#include "tensor.h"
#include "util.h"

const char *
r1_dtype_name(r1_dtype dt)
{
	switch (dt)
	{
		case R1_F32:
			return "F32";
		case R1_F16:
			return "F16";
		case R1_BF16:
			return "BF16";
		case R1_I64:
			return "I64";
		case R1_I32:
			return "I32";
		case R1_Q8_0:
			return "Q8_0";
		case R1_Q4_K:
			return "Q4_K";
		case R1_Q5_K:
			return "Q5_K";
		case R1_Q6_K:
			return "Q6_K";
		case R1_Q4_0:
			return "Q4_0";
		case R1_Q5_0:
			return "Q5_0";
		case R1_F8_E4M3:
			return "F8_E4M3";
		default:
			return "other";
	}
}

size_t
r1_dtype_size(r1_dtype dt)
{
	switch (dt)
	{
		case R1_F32:
		case R1_I32:
			return 4;
		case R1_F16:
		case R1_BF16:
			return 2;
		case R1_I64:
			return 8;
		case R1_F8_E4M3:
			return 1;
		default:
			return 0;
	}
}

int64_t
r1_tensor_numel(const r1_tensor *t)
{
	int64_t		n = 1;

	for (int i = 0; i < t->ndim; i++)
		n *= t->shape[i];
	return n;
}

float
r1_tensor_get_f32(const r1_tensor *t, size_t i)
{
	/* memcpy: the format does not promise aligned data offsets */
	const uint8_t *p = t->data;
	float		f;
	uint16_t	h;

	switch (t->dtype)
	{
		case R1_F32:
			memcpy(&f, p + 4 * i, 4);
			return f;
		case R1_BF16:
			memcpy(&h, p + 2 * i, 2);
			return r1_bf16_to_f32(h);
		case R1_F16:
			memcpy(&h, p + 2 * i, 2);
			return r1_f16_to_f32(h);
		case R1_F8_E4M3:
			return r1_f8e4m3_to_f32(p[i]);
		case R1_Q8_0:
		case R1_Q4_K:
		case R1_Q5_K:
		case R1_Q6_K:
		case R1_Q4_0:
		case R1_Q5_0:
			{
				/* decode the block that holds element i */
				float		blk[R1_QK_K];
				size_t		be = (size_t) r1_dtype_block_elems(t->dtype);

				r1_dequantize_row(t->dtype, p + (i / be) * r1_dtype_block_bytes(t->dtype), blk, (int64_t) be);
				return blk[i % be];
			}
		default:
			return 0.0f;
	}
}
