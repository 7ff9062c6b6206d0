/*
 * quant.h - ggml's block-quantised weight formats (the tensor types of GGUF
 * files): block geometry, scalar decoders, reference encoders, and dot
 * products that decode one block at a time (never a whole matrix).
 *
 * Block layouts, exactly as ggml defines them (all little-endian):
 *   Q8_0  32 weights,  34 bytes: fp16 d, int8 q[32];            w = d*q
 *   Q4_0  32 weights,  18 bytes: fp16 d, 16 bytes of nibbles (weight j low,
 *         j + 16 high);                                       w = d*(q - 8)
 *   Q5_0  32 weights,  22 bytes: fp16 d, 32 fifth bits (uint32, bit j for
 *         weight j), nibbles as Q4_0;                         w = d*(q - 16)
 *   Q4_K 256 weights, 144 bytes: fp16 d, fp16 dmin, 12 bytes of packed 6-bit
 *        scales and mins of 8 sub-blocks of 32, 128 bytes of 4-bit quants
 *        (sub-blocks 2k and 2k+1 share bytes: low nibble, high nibble);
 *        w = d*sc*q - dmin*m
 *   Q5_K 256 weights, 176 bytes: as Q4_K, then 32 bytes of fifth bits (qh)
 *        before the 128 bytes of low nibbles; w = d*sc*q - dmin*m, q in 0..31
 *   Q6_K 256 weights, 210 bytes: 128 bytes of low nibbles (ql), 64 bytes of
 *        high bit pairs (qh), 16 int8 scales of sub-blocks of 16, fp16 d;
 *        w = d*sc*(q - 32), q in 0..63
 */
#ifndef R1_QUANT_H
#define R1_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "quant_blocks.h"
#include "tensor.h"

#define R1_QK8_0 32
#define R1_QK_K 256

/* Weights per block (1 for F32/F16/BF16), 0 for a dtype that holds no weights. */
int			r1_dtype_block_elems(r1_dtype dt);

/* Bytes per block (the element size for F32/F16/BF16), 0 as above. */
size_t		r1_dtype_block_bytes(r1_dtype dt);

/* A block-quantised dtype (Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K). */
int			r1_dtype_is_quant(r1_dtype dt);

/*
 * Bytes of n weights of dt into *out; fails (returns -1) when n is not a
 * whole number of blocks or the size overflows.
 */
int			r1_dtype_row_bytes(r1_dtype dt, int64_t n, size_t *out);

/* Decode n weights (a whole number of blocks) of any weight dtype to float. */
void		r1_dequantize_row(r1_dtype dt, const void *src, float *dst, int64_t n);

/*
 * Encode n floats (a whole number of blocks) as dt: Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K
 * (simple round-to-nearest encoders, not llama.cpp's searched ones), F32, F16
 * or BF16.  Returns -1 for another dtype.
 */
int			r1_quantize_row(r1_dtype dt, const float *src, void *dst, int64_t n);

/*
 * dot(w, x) for a quantised row w of n weights; dot4 does four vectors at
 * x, x + n, x + 2n, x + 3n and writes out[0], out[stride], ...  Each block
 * is decoded once into a small buffer (float32) and used for every vector.
 */
float		r1_quant_dot(r1_dtype dt, const void *w, const float *x, int n);
void		r1_quant_dot4(r1_dtype dt, const void *w, const float *x, int n, float *out, size_t stride);

/*
 * the 6-bit scale and min of sub-block j (< 8) of a Q4_K/Q5_K block's 12
 * packed bytes q: the CUDA decoders' unpacking (quant_blocks.h), one for both
 */
static inline void
r1_q4k_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
	r1qb_scale_min_k4(j, q, sc, m);
}

/* pack 6-bit scales ls[8] and mins lm[8] into 12 bytes q, as r1_q4k_scale_min unpacks them */
void		r1_q4k_pack_scales(const int *ls, const int *lm, uint8_t *q);

#endif							/* R1_QUANT_H */
