/*
 * model_fp8.h - FP8 (E4M3) weight matrices with their scales, to bf16.
 *
 * block_r > 0: scale is [ceil(rows / block_r), ceil(cols / block_c)], one per
 * block; else one per output row ([rows, 1] or [rows]) or one for the tensor.
 * Scales F32, BF16 or F16, finite and >= 0; an FP8 NaN in w is an error.
 */
#ifndef R1_MODEL_FP8_H
#define R1_MODEL_FP8_H

#include "tensor.h"
#include "util.h"

/* out [rows, cols] bf16 = w (F8_E4M3 [rows, cols]) times its scale */
int			r1_fp8_to_bf16(const r1_tensor *w, const r1_tensor *scale, int block_r, int block_c, uint16_t *out,
						   const char *file, const char *name, r1_error *err);

#endif							/* R1_MODEL_FP8_H */
