/*
 * qdot.h - quantised weights times 8-bit activations: integer dot products
 * the way ggml's vec_dot_q4_K_q8_K family works, with a plain-C reference
 * and AVX2 / AVX-512 VNNI kernels picked at run time (cpu_features.h).
 *
 * Activations.  A token's n floats x are quantised once per linear layer, in
 * blocks of B (32 for Q8_0/Q4_0/Q5_0 weights, 256 for the K-quants):
 *   d = max|x| / 127 (a float),  q_i = round(x_i * 127 / max|x|) in -127..127,
 *   bsum[s] = sum of q over the 16 values of group s (for the K-quant mins).
 * Token t of a batch sits at q + t*n, d + t*(n/B), bsum + t*(n/16).
 *
 * The arithmetic (what every path computes, bitwise).  Integer sums are
 * exact, so they may be formed in any order; only the float steps are fixed:
 *
 *   32-weight blocks (Q8_0, Q4_0, Q5_0; signed codes c, w = dw*c):
 *     for block i, lane k in 0..7: L_k = sum_{j<4} c[32i+4k+j] q[32i+4k+j]
 *     acc_(i%2)[k] = fmaf(dw_i * d_i, (float) L_k, acc_(i%2)[k])
 *     result = hsum8(acc_0 + acc_1)
 *   256-weight blocks (Q4_K, Q5_K, Q6_K; unsigned codes u):
 *     L_k = sum over the super-block's 32-weight groups g, j < 4 of
 *           scale(g, k) * u[32g+4k+j] q[32g+4k+j]
 *       (scale(g, k): Q4_K/Q5_K the 6-bit sub-block scale of g; Q6_K the
 *        int8 scale of the 16 weights at 32g + 16*(k >= 4))
 *     M = Q4_K/Q5_K: sum_g min_g (bsum[2g] + bsum[2g+1]);
 *         Q6_K: 32 * sum_s scale_s bsum[s]   (the codes' offset of 32)
 *     acc[k] = fmaf(d * d_x, (float) L_k, acc[k]);
 *     accm = fmaf(dmin * d_x, (float) M, accm)  (Q6_K: d * d_x)
 *     result = hsum8(acc) - accm
 *   hsum8(v) = ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)).
 * Each token's result depends only on its own activations and the row, so a
 * token's output is the same alone and in any batch (batch invariance), and
 * the same on every path (test/unit/test_qdot.c checks it bitwise).
 */
#ifndef R1_QDOT_H
#define R1_QDOT_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_features.h"
#include "tensor.h"

/* one token's (or the first token's) quantised activations */
typedef struct r1_qx
{
	const int8_t *q;			/* [n] */
	const float *d;				/* [n / block] */
	const int16_t *bsum;		/* [n / 16] */
	int			n;
} r1_qx;

/*
 * out[t * stride] = dot(row w, token t) for tokens t < nt (1..4): the tokens
 * share each unpacked weight block.
 */
typedef void (*r1_qdot_fn) (const uint8_t *w, const r1_qx *x, int nt, float *out, size_t stride);

/* The activation block for weights of dt: 32, 256, or 0 when dt has no integer kernel. */
int			r1_qdot_block(r1_dtype dt);

/* Quantise n floats (a multiple of block and 16) as above. */
void		r1_qdot_quantize(const float *x, int n, int block, int8_t *q, float *d, int16_t *bsum);

/* The kernel of dt on a path (NULL when dt has none); the reference is R1_CPU_GENERIC. */
r1_qdot_fn	r1_qdot_kernel(r1_cpu_path path, r1_dtype dt);

/* the per-path tables (qdot.c, qdot_avx2.c, qdot_avx512.c); index: the r1_qdot_slot of a dtype */
#define R1_QDOT_NTYPES 6
int			r1_qdot_slot(r1_dtype dt);
extern const r1_qdot_fn r1_qdot_ref[R1_QDOT_NTYPES];
extern const r1_qdot_fn r1_qdot_avx2[R1_QDOT_NTYPES];
extern const r1_qdot_fn r1_qdot_avx512[R1_QDOT_NTYPES];

#endif							/* R1_QDOT_H */
