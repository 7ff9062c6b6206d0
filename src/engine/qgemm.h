/*
 * qgemm.h - the prompt GEMM of quantised weights against 8-bit activations:
 * the arithmetic of qdot.h (every output bitwise the reference's, so a token
 * is the same in a prompt, alone in decode and in any batch), laid out so a
 * block of weight rows is unpacked once for every token and the integer
 * work runs on 512-bit VNNI instructions.
 *
 * Two steps per linear layer:
 *   1. r1_qgemm_layout and r1_qgemm_pack lay the tokens' activations (r1_qdot_quantize's q, d,
 *      bsum) out in tiles of 8 tokens: tokens 2p and 2p + 1 side by side by
 *      32-byte group (one zmm is a group of two tokens), each pair's scales
 *      spread over the 8 lanes of each token, and the sums of 16 that the
 *      K-quant mins term needs, token by token.
 *   2. r1_qgemm_rows runs rows [r0, r0 + nr) of W against every token: it
 *      unpacks the rows' blocks into codes, scale vectors and mins (into a
 *      buffer the caller gives, R1_QGEMM_UNPACK_BYTES(n) a row) and then
 *      runs two rows against eight tokens at a time.
 * Only for the AVX-512 VNNI path (cpu_features.h); r1_qgemm_takes says
 * which weights it serves.
 */
#ifndef R1_QGEMM_H
#define R1_QGEMM_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_features.h"
#include "qdot.h"
#include "tensor.h"

/* tokens per tile */
#define R1_QGEMM_TILE 8

/* bytes of one unpacked weight row of n inputs (either block size) */
#define R1_QGEMM_UNPACK_BYTES(n) (((size_t) (n) + 255) / 256 * 640 + 64)

/*
 * bytes a thread needs for a call of either GEMM on up to 16 rows: the
 * unpacked rows, then (AMX) their scales of each sub-block
 */
#define R1_QGEMM_SCRATCH_BYTES(n) (16 * R1_QGEMM_UNPACK_BYTES(n) + 8 * (size_t) (n) + 64)

/* the activations of a prompt, packed (all pointers into one buffer) */
typedef struct r1_qxp
{
	int			n;				/* inputs per token */
	int			block;			/* 32 or 256 (r1_qdot_block) */
	int			T;				/* tokens */
	int			tiles;			/* ceil(T / 8); padding tokens are zeros */
	uint8_t    *q;				/* [tiles*4 pairs][n/32][64]: int8 codes
								 * (K-quants) or codes + 128 as uint8
								 * (32-weight blocks) */
	float	   *dxv;			/* [pairs][n/block][16]: token 2p's block
								 * scale x8, 2p+1's x8 */
	int16_t    *bs;				/* K-quants: [tiles][n/256][8][8 tokens][2]
								 * sums of 16 (s = 2j, 2j+1) */
	float	   *dx8;			/* K-quants: [tiles][n/256][8 tokens] block
								 * scales */
} r1_qxp;

/* Bytes r1_qgemm_pack needs for T tokens of n inputs. */
size_t		r1_qgemm_pack_bytes(int T, int n);

/* Does the GEMM serve weights of dt with n inputs on this path? */
int			r1_qgemm_takes(r1_cpu_path path, r1_dtype dt, int n);

/*
 * Where each part of the packed activations of T tokens of n inputs, for
 * weights of dt, lies in buf (r1_qgemm_pack_bytes(T, n), 64-byte aligned).
 */
void		r1_qgemm_layout(r1_dtype dt, int n, int T, void *buf, r1_qxp *out);

/*
 * Lay tiles [tile0, tile1) of the quantised activations x (token t at x->q +
 * t*n, ...) out as p says; calls for different tiles may run at once.
 */
void		r1_qgemm_pack(const r1_qx *x, const r1_qxp *p, int tile0, int tile1);

/*
 * out[t * ldo + r] = dot(row r of w, token t) for r in [r0, r0 + nr), every
 * token t < T: the same float as r1_qdot_kernel's for that row and token.
 * unpack: nr * R1_QGEMM_UNPACK_BYTES(n) bytes, 64-byte aligned.
 */
void		r1_qgemm_rows(r1_dtype dt, const uint8_t *w, size_t row_bytes, int r0, int nr,
						  const r1_qxp *x, float *out, size_t ldo, void *unpack);

/*
 * The same for rows of w's x8 copy (repack.h; row_bytes is a row's bytes in
 * the file's layout), unpacked from the copy directly.
 */
void		r1_qgemm_rows_x8(r1_dtype dt, const uint8_t *x8, size_t row_bytes, int r0, int nr,
							 const r1_qxp *x, float *out, size_t ldo, void *unpack);

/*
 * Rows [r0, r0 + nr) of w (the file's layout; x8: w is the x8 copy)
 * unpacked, row r at unpack + r * R1_QGEMM_USTRIDE(n):
 *   K-quants:  codes [0, n) (uint8, weight order), then at n the int16
 *              scale of each 16 weights (n/32 groups of 16 lanes: lanes 0-7
 *              the first 16 weights', 8-15 the second's), at 2n the mins
 *              term's int16 pairs (n/256 x 8 int32: Q4_K/Q5_K the min of
 *              each 32 weights twice, Q6_K 32 x the scales of each 16 weights),
 *              at 2n + n/8 d and dmin of each super-block (floats);
 *   32-weight blocks: codes [0, n) (int8), at n -128 x each 4 codes' sum
 *              (n/32 x 8 int32), at 2n each block's d (float).
 */
#define R1_QGEMM_USTRIDE(n) R1_QGEMM_UNPACK_BYTES(n)
void		r1_qgemm_unpack(r1_dtype dt, const uint8_t *w, int x8, size_t row_bytes, int r0, int nr, int n,
							void *unpack);

/*
 * The prompt GEMM on AMX tiles (qgemm_amx.c), for batches that need not be
 * batch-invariant: ggml's arithmetic, not qdot.h's.  Each sub-block of S
 * weights (32; Q6_K 16) meets 16 tokens in one tile multiply per 16 rows,
 * its integer dots are scaled in float once (the row's d x sub-block
 * scale, less the mins term), and each super-block (a 32-weight block's
 * block) is scaled by the token's d.  The results agree with
 * r1_qdot_kernel's to float rounding (~1e-6 relative), not bit for bit.
 *
 * The activations go in tiles of 16 tokens: token tok's bytes 4k .. 4k + 3
 * at q + g * 16n + 64k + 4 tok (the tile multiply's B layout; tokens past T
 * are zeros), the tokens' d of each block at dxv[g][n/block][16], and (K-
 * quants) each sub-block's sum of codes, as a float, at bsv[g][n/S][16].
 */
typedef struct r1_qxa
{
	int			n;
	int			block;			/* 32 or 256 */
	int			sub;			/* S: 32, or 16 for Q6_K */
	int			T;
	int			groups;			/* ceil(T / 16) */
	uint8_t    *q;
	float	   *dxv;
	float	   *bsv;			/* K-quants only */
} r1_qxa;

/* Can the AMX GEMM take weights of dt with n inputs on this machine? */
int			r1_qgemm_amx_takes(r1_dtype dt, int n);

/* as r1_qgemm_layout and r1_qgemm_pack (r1_qgemm_pack_bytes covers both) */
void		r1_qgemm_amx_layout(r1_dtype dt, int n, int T, void *buf, r1_qxa *out);
void		r1_qgemm_amx_pack(const r1_qx *x, const r1_qxa *p, int g0, int g1);

/*
 * out[t * ldo + r] = dot(row r of w, token t) for r in [r0, r0 + nr), nr <=
 * 16, every token t < T; w and x8 as r1_qgemm_unpack; unpack:
 * R1_QGEMM_SCRATCH_BYTES(n) bytes, 64-byte aligned.
 */
void		r1_qgemm_amx_rows(r1_dtype dt, const uint8_t *w, int x8, size_t row_bytes, int r0, int nr,
							  const r1_qxa *x, float *out, size_t ldo, void *unpack);

#endif							/* R1_QGEMM_H */
