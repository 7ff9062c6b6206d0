/*
 * model_fp8.c - FP8 (E4M3) weight matrices of a safetensors checkpoint,
 * turned into bf16 at load: w[r, c] = fp8(q[r, c]) * scale, with the scale
 * per output channel or per tensor ("weight_scale", compressed-tensors) or
 * per block of rows x cols ("weight_scale_inv", quant_method fp8).
 *
 * The product of an E4M3 value (4 significant bits) and a bf16/f32 scale is
 * exact in float; only the final rounding to bf16 loses anything (half an
 * ulp of bf16, as for a bf16 checkpoint).  Both backends then run the bf16
 * path: FP8 checkpoints load and run everywhere, at bf16's memory and speed
 * (FP8 tensor-core GEMMs are not done).
 */
#include "model_fp8.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int
shape_str(const r1_tensor *t, char *buf, size_t n)
{
	size_t		o = 0;

	buf[0] = 0;
	for (int i = 0; i < t->ndim && o < n - 24; i++)
		o += snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long) t->shape[i]);
	return 0;
}

/* the scale tensor's dtype, shape (model_fp8.h) and values (finite, >= 0) */
static int
check_scale(const r1_tensor *w, const r1_tensor *scale, int block_r, int block_c, const char *file,
			const char *name, r1_error *err)
{
	int64_t		rows = w->shape[0],
				cols = w->shape[1];
	int64_t		n = r1_tensor_numel(scale);
	char		got[128];

	shape_str(scale, got, sizeof(got));
	if (scale->dtype != R1_F32 && scale->dtype != R1_BF16 && scale->dtype != R1_F16)
		return r1_fail(err, "%s: tensor \"%s\": scale dtype %s is not supported (F32, BF16 or F16)", file, name,
					   r1_dtype_name(scale->dtype));
	if (block_r > 0)
	{
		int64_t		br = (rows + block_r - 1) / block_r,
					bc = (cols + block_c - 1) / block_c;

		if (scale->ndim != 2 || scale->shape[0] != br || scale->shape[1] != bc)
			return r1_fail(err, "%s: tensor \"%s\": scale shape [%s], blocks of %d x %d over [%lld, %lld] need [%lld, %lld]",
						   file, name, got, block_r, block_c, (long long) rows, (long long) cols,
						   (long long) br, (long long) bc);
	}
	else if (!(n == 1 && scale->ndim <= 2) &&
			 !(n == rows && (scale->ndim == 1 || (scale->ndim == 2 && scale->shape[1] == 1))))
		return r1_fail(err, "%s: tensor \"%s\": scale shape [%s]: one per output channel ([%lld, 1]) or one "
					   "for the tensor was expected", file, name, got, (long long) rows);
	for (int64_t i = 0; i < n; i++)
	{
		float		s = r1_tensor_get_f32(scale, (size_t) i);

		if (!isfinite(s) || s < 0.0f)
			return r1_fail(err, "%s: tensor \"%s\": scale %lld is %g (a finite scale >= 0 was expected)", file,
						   name, (long long) i, (double) s);
	}
	return 0;
}

int
r1_fp8_to_bf16(const r1_tensor *w, const r1_tensor *scale, int block_r, int block_c, uint16_t *out,
			   const char *file, const char *name, r1_error *err)
{
	int64_t		rows = w->shape[0],
				cols = w->shape[1];
	int64_t		n_scale = r1_tensor_numel(scale);
	const uint8_t *q = w->data;
	int64_t		bad_row = -1;
	float		lut[256];

	if (check_scale(w, scale, block_r, block_c, file, name, err) != 0)
		return -1;
	for (int b = 0; b < 256; b++)
		lut[b] = r1_f8e4m3_to_f32((uint8_t) b);
#pragma omp parallel for schedule(static)
	for (int64_t r = 0; r < rows; r++)
	{
		const uint8_t *qr = q + r * cols;
		uint16_t   *o = out + r * cols;
		float		s = block_r > 0 ? 0.0f : r1_tensor_get_f32(scale, (size_t) (n_scale == 1 ? 0 : r));

		for (int64_t c = 0; c < cols; c++)
		{
			if (block_r > 0 && c % block_c == 0)
				s = r1_tensor_get_f32(scale, (size_t) ((r / block_r) * scale->shape[1] + c / block_c));
			if ((qr[c] & 0x7F) == 0x7F)
			{
#pragma omp critical
				if (bad_row < 0 || r < bad_row)
					bad_row = r;
				break;
			}
			o[c] = r1_f32_to_bf16(lut[qr[c]] * s);
		}
	}
	if (bad_row >= 0)
		return r1_fail(err, "%s: tensor \"%s\": row %lld holds an FP8 NaN (a corrupt or unsupported file)", file,
					   name, (long long) bad_row);
	return 0;
}
