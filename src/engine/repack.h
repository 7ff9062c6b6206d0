/*
 * repack.h - Q8_0 and K-quant weights regrouped eight rows at a time for decode (the
 * way llama.cpp's CPU_REPACK does): each super-block of eight consecutive
 * rows becomes one block of the same size in which the rows' codes lie side
 * by side, 8 bytes of each row in turn.  One 64-byte load then holds the same
 * 8 weights of all eight rows, so a token's activations are broadcast once
 * for eight rows, and the scales of eight rows are unpacked with a few vector
 * instructions instead of one row at a time.
 *
 * Q4_K x8 block (1152 bytes, super-block i of rows 8G .. 8G + 7):
 *   [0, 16)     d of rows 0..7 (f16)
 *   [16, 32)    dmin of rows 0..7 (f16)
 *   [32, 96)    S[u], u = 16p + 2r + e for sub-block g = 2p + e of row r:
 *               the 6-bit scale | (the min's top 2 bits << 6)
 *   [96, 128)   the mins' low nibbles: byte u (u < 32) holds u's in its low
 *               nibble and u + 32's in its high nibble
 *   [128, 1152) qs: 64-byte chunk (j, c) = 4j + c (j, c < 4) holds bytes
 *               32j + 8c .. 32j + 8c + 7 of each row's 128 code bytes, row 0
 *               first (low nibbles: sub-block 2j, high: 2j + 1)
 * Q8_0 x8 group (nb = n/32 blocks of 272 bytes, split in two so that every
 * 64-byte load of codes is one cache line when nb is a multiple of 4; a
 * load that straddles two lines costs Intel cores two):
 *   [16i, 16i + 16)          d of rows 0..7 of block i (f16)
 *   16nb + [256i, 256i + 256) chunk c (< 4) holds block i's codes 8c .. 8c + 7
 *                of each row, row 0 first, as code + 128 (unsigned:
 *                vpdpbusd's first operand)
 *
 * Q6_K x8 block (1680 bytes):
 *   [0, 16)      d of rows 0..7 (f16)
 *   [16, 144)    the int8 scales: byte u = 16p + 2r + e holds row r's scale
 *                of the 16 weights s = 2p + e
 *   [144, 1680)  24 chunks of 64 bytes, 8 bytes of each row, row 0 first,
 *                in triples t = 4h + c (h < 2, c < 4): bytes 32h + 8c .. + 7
 *                of qh, then bytes 64h + 8c .. and 64h + 32 + 8c .. of ql,
 *                so the kernel reads the block front to back
 * Every bit of the eight file blocks is kept, so a row can be put back
 * (r1_repack_row_back) for the kernels that read rows.
 *
 * The kernels (r1_qdot8_fn) compute qdot.h's arithmetic for each row, bitwise
 * the same as r1_qdot_kernel on the row as stored in the file.
 */
#ifndef R1_REPACK_H
#define R1_REPACK_H

#include <stddef.h>
#include <stdint.h>

#include "cpu_features.h"
#include "model.h"
#include "qdot.h"
#include "tensor.h"
#include "util.h"

#define R1_REPACK_ROWS 8

/*
 * out[t * stride + r] = dot(row r of the group, token t) for the group's
 * eight rows, tokens t < nt (1..4); grp: the group's first x8 block.
 */
typedef void (*r1_qdot8_fn) (const uint8_t *grp, const r1_qx *x, int nt, float *out, size_t stride);

/* Is there an x8 layout and a kernel for weights of dt, rows x n, on path? */
int			r1_repack_takes(r1_cpu_path path, r1_dtype dt, int64_t rows, int n);

/* The x8 kernel of dt on path (NULL where there is none). */
r1_qdot8_fn r1_qdot8_kernel(r1_cpu_path path, r1_dtype dt);

/*
 * Regroup rows [8G, 8G + 8) of src (row_bytes apart, n inputs) into dst, the
 * same number of bytes; groups may be done at once by different threads.
 */
void		r1_repack_group(r1_dtype dt, const uint8_t *src, size_t row_bytes, int n, uint8_t *dst);

/* Row r (< 8) of an x8 group of n inputs, back in the file's layout. */
void		r1_repack_row_back(r1_dtype dt, const uint8_t *grp, int n, int r, uint8_t *row);

/*
 * Blocks [i0, i0 + nblk) (of 32 or 256 weights) of row r of an x8 group of n
 * inputs, as
 * the file stores them, one after another into blks (Q8_0 34 bytes a block,
 * Q4_K 144, Q6_K 210), but for Q4_K's 12 packed scale bytes (left as they
 * are): sm[k] gets block i0 + k's eight 6-bit scales, then its eight mins,
 * unpacked.  The prompt GEMM unpacks rows from the copies with it (qgemm.h).
 */
void		r1_repack_blocks_back(r1_dtype dt, const uint8_t *grp, int n, int i0, int nblk, int r, uint8_t *blks,
								  uint8_t (*sm)[16]);

/*
 * The x8 copies of a model's linear weights, made once when a CPU backend
 * starts.  The file's blocks stay where they were (the mapping): the
 * kernels that read rows (the exact arithmetic, the GPU) use them, and the
 * pages the x8 kernels replace go cold, so the kernel may drop them.
 */
typedef struct r1_repack_entry
{
	const void *src;			/* the tensor's data in the file */
	uint8_t    *x8;				/* its x8 copy */
} r1_repack_entry;

typedef struct r1_repack_set
{
	r1_repack_entry *e;			/* sorted by src */
	int			n;
	size_t		bytes;			/* held by the copies */
	void	   *map;			/* one mapping holds them all */
	size_t		map_bytes;
} r1_repack_set;

/* Copy every weight of m that has an x8 layout on path; threads share the work. */
int			r1_repack_model(r1_repack_set *set, r1_cpu_path path, const r1_model *m, r1_error *err);

/* w's x8 copy, or NULL */
const uint8_t *r1_repack_find(const r1_repack_set *set, const r1_tensor *w);

void		r1_repack_free(r1_repack_set *set);

/* the AVX-512 VNNI kernels (qdot8_avx512.c): Q4_K, Q5_K (none), Q6_K, Q8_0 */
extern const r1_qdot8_fn r1_qdot8_avx512[4];

#endif							/* R1_REPACK_H */
