/*
 * bf16dot.h - bf16 weights times bf16 activations with AVX512_BF16's
 * vdpbf16ps (float32 accumulation).  The activations are rounded to bf16
 * once per linear layer (r1_f32_to_bf16: to nearest even), which is what
 * llama.cpp does on this path; the relative error that adds is ~2^-9 per
 * product (the fixtures' bf16 tolerance, not the float32 one: the exact
 * arithmetic, cpu_exact, keeps float32 activations).
 *
 * Per token, 32 products a step into two float32 accumulators (even and odd
 * steps of 32 weights), summed and reduced in a fixed order, the last n % 64
 * weights one by one: the same operations whatever the number of tokens, so
 * a token's result does not depend on the batch.
 */
#ifndef R1_BF16DOT_H
#define R1_BF16DOT_H

#include <stddef.h>
#include <stdint.h>

/* out[t * stride] = dot(w, x + t * n) for t < nt (1..4); only where cpu_features saw avx512_bf16 */
void		r1_bf16dot_avx512(const uint16_t *w, const uint16_t *x, int n, int nt, float *out, size_t stride);

/*
 * The prompt form: out[t * ldo + r] = dot(row r, token t) for nr rows of n
 * weights at w (row r at w + r*n) and T tokens at x (token t at x + t*n),
 * each the float r1_bf16dot_avx512 gives, three rows by four tokens at a
 * time.
 */
void		r1_bf16_gemm_rows(const uint16_t *w, int nr, const uint16_t *x, int T, int n, float *out, size_t ldo);

/*
 * The prompt form on AMX-BF16 tiles (bf16_amx.c), for batches that need not
 * be batch-invariant: the same rounded activations, float32 sums in the tile
 * unit's order (agreeing with r1_bf16_gemm_rows to rounding, not bit for
 * bit).  r1_bf16_amx_pack lays token groups [g0, g1) of T tokens x (n
 * inputs, bf16) out in the tiles' B layout (r1_bf16_amx_pack_bytes for all
 * of them; tokens past T are zeros); r1_bf16_amx_rows then gives out[t *
 * ldo + r] for nr <= 16 rows at w (row r at w + r*n) and every token t < T.
 */
int			r1_bf16_amx_takes(int n);
size_t		r1_bf16_amx_pack_bytes(int T, int n);
void		r1_bf16_amx_pack(const uint16_t *x, int T, int n, uint16_t *xp, int g0, int g1);
void		r1_bf16_amx_rows(const uint16_t *w, int nr, const uint16_t *xp, int T, int n, float *out, size_t ldo);

#endif							/* R1_BF16DOT_H */
