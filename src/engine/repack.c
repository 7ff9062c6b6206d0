/*
 * repack.c - the x8 layouts of repack.h, built from and put back into the
 * file's blocks (plain C: the loader and the tests run it on any processor).
 */
#include "repack.h"

#include "quant.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define Q4K_BYTES 144
#define Q4K_X8 (R1_REPACK_ROWS * Q4K_BYTES)
#define Q8_BYTES 34
#define Q8_X8D 16				/* a Q8_0 block's eight d */
#define Q8_X8C 256				/* its eight rows' codes */
#define Q6K_BYTES 210
#define Q6K_X8 (R1_REPACK_ROWS * Q6K_BYTES)
#define X8_HUGE ((size_t) 2 << 20)	/* a transparent huge page */

int
r1_repack_takes(r1_cpu_path path, r1_dtype dt, int64_t rows, int n)
{
	int			block = r1_qdot_block(dt);

	return r1_qdot8_kernel(path, dt) != NULL && rows > 0 && rows % R1_REPACK_ROWS == 0 && n > 0 && block > 0 &&
		n % block == 0;
}

r1_qdot8_fn
r1_qdot8_kernel(r1_cpu_path path, r1_dtype dt)
{
	if (path != R1_CPU_AVX512_VNNI)
		return NULL;
	switch (dt)
	{
		case R1_Q8_0:
			return r1_qdot8_avx512[3];
		case R1_Q4_K:
			return r1_qdot8_avx512[0];
		case R1_Q6_K:
			return r1_qdot8_avx512[2];
		default:
			return NULL;
	}
}

/* where sub-block g of row r sits in an x8 block's scales (Q4_K's S, Q6_K's int8 scales) */
static inline int
q4k_u(int r, int g)
{
	return 16 * (g / 2) + 2 * r + g % 2;
}

static void
q4k_group(const uint8_t *src, size_t row_bytes, int nsb, uint8_t *dst)
{
	for (int i = 0; i < nsb; i++)
	{
		uint8_t    *o = dst + (size_t) i * Q4K_X8;

		memset(o + 96, 0, 32);
		for (int r = 0; r < R1_REPACK_ROWS; r++)
		{
			const uint8_t *b = src + (size_t) r * row_bytes + (size_t) i * Q4K_BYTES;

			memcpy(o + 2 * r, b, 2);
			memcpy(o + 16 + 2 * r, b + 2, 2);
			for (int g = 0; g < 8; g++)
			{
				int			sc,
							m,
							u = q4k_u(r, g);

				r1_q4k_scale_min(g, b + 4, &sc, &m);
				o[32 + u] = (uint8_t) (sc | (m >> 4) << 6);
				o[96 + u % 32] |= (uint8_t) ((m & 0xF) << (u < 32 ? 0 : 4));
			}
			for (int jc = 0; jc < 16; jc++)
				memcpy(o + 128 + (size_t) (jc * R1_REPACK_ROWS + r) * 8, b + 16 + 8 * jc, 8);
		}
	}
}

/* Q4_K block i of row r: d, dmin, codes into blk; the scales and mins unpacked into sm */
static inline void
q4k_block_back(const uint8_t *grp, int i, int r, uint8_t *blk, uint8_t sm[16])
{
	const uint8_t *o = grp + (size_t) i * Q4K_X8;

	memcpy(blk, o + 2 * r, 2);
	memcpy(blk + 2, o + 16 + 2 * r, 2);
	for (int g = 0; g < 8; g++)
	{
		int			u = q4k_u(r, g);

		sm[g] = o[32 + u] & 63;
		sm[8 + g] = (uint8_t) ((o[32 + u] >> 6) << 4 | ((o[96 + u % 32] >> (u < 32 ? 0 : 4)) & 0xF));
	}
	for (int jc = 0; jc < 16; jc++)
		memcpy(blk + 16 + 8 * jc, o + 128 + (size_t) (jc * R1_REPACK_ROWS + r) * 8, 8);
}

/*
 * Where chunk k of a Q6_K row's 192 code bytes (8 bytes: ql for k < 16, then
 * qh) lies in an x8 block: triple 4h + c holds qh bytes 32h + 8c.., then ql
 * bytes 64h + 8c.. and 64h + 32 + 8c.., in the order the kernel reads them.
 */
static size_t
q6k_chunk(int k)
{
	int			h,
				c,
				slot;

	if (k >= 16)
	{
		h = (k - 16) / 4;
		c = (k - 16) % 4;
		slot = 0;
	}
	else
	{
		h = k / 8;
		c = k % 4;
		slot = 1 + (k / 4) % 2;
	}
	return 144 + (size_t) (3 * (4 * h + c) + slot) * 64;
}

/* Q6_K: scales by u = 16p + 2r + e (sub-block s = 2p + e) as Q4_K's, codes by q6k_chunk */
static void
q6k_group(const uint8_t *src, size_t row_bytes, int nsb, uint8_t *dst)
{
	for (int i = 0; i < nsb; i++)
	{
		uint8_t    *o = dst + (size_t) i * Q6K_X8;

		for (int r = 0; r < R1_REPACK_ROWS; r++)
		{
			const uint8_t *b = src + (size_t) r * row_bytes + (size_t) i * Q6K_BYTES;

			memcpy(o + 2 * r, b + 208, 2);
			for (int sb = 0; sb < 16; sb++)
				o[16 + q4k_u(r, sb)] = b[192 + sb];
			for (int k = 0; k < 24; k++)
				memcpy(o + q6k_chunk(k) + 8 * r, b + 8 * k, 8);
		}
	}
}

static inline void
q6k_block_back(const uint8_t *grp, int i, int r, uint8_t *blk)
{
	const uint8_t *o = grp + (size_t) i * Q6K_X8;

	memcpy(blk + 208, o + 2 * r, 2);
	for (int sb = 0; sb < 16; sb++)
		blk[192 + sb] = o[16 + q4k_u(r, sb)];
	for (int k = 0; k < 24; k++)
		memcpy(blk + 8 * k, o + q6k_chunk(k) + 8 * r, 8);
}

/*
 * Q8_0: the d of the eight rows of every block first, then every block's codes
 * + 128 (as unsigned bytes) in 8-byte chunks
 */
static void
q8_group(const uint8_t *src, size_t row_bytes, int nb, uint8_t *dst)
{
	for (int i = 0; i < nb; i++)
	{
		uint8_t    *o = dst + (size_t) i * Q8_X8D,
				   *c8 = dst + (size_t) nb * Q8_X8D + (size_t) i * Q8_X8C;

		for (int r = 0; r < R1_REPACK_ROWS; r++)
		{
			const uint8_t *b = src + (size_t) r * row_bytes + (size_t) i * Q8_BYTES;

			memcpy(o + 2 * r, b, 2);
			for (int c = 0; c < 4; c++)
			{
				uint64_t	v;

				memcpy(&v, b + 2 + 8 * c, 8);
				v ^= UINT64_C(0x8080808080808080);
				memcpy(c8 + 64 * c + 8 * r, &v, 8);
			}
		}
	}
}

static inline void
q8_block_back(const uint8_t *grp, int nb, int i, int r, uint8_t *blk)
{
	const uint8_t *o = grp + (size_t) i * Q8_X8D,
			   *c8 = grp + (size_t) nb * Q8_X8D + (size_t) i * Q8_X8C;

	memcpy(blk, o + 2 * r, 2);
	for (int c = 0; c < 4; c++)
	{
		uint64_t	v;

		memcpy(&v, c8 + 64 * c + 8 * r, 8);
		v ^= UINT64_C(0x8080808080808080);
		memcpy(blk + 2 + 8 * c, &v, 8);
	}
}

void
r1_repack_group(r1_dtype dt, const uint8_t *src, size_t row_bytes, int n, uint8_t *dst)
{
	if (dt == R1_Q8_0)
		q8_group(src, row_bytes, n / 32, dst);
	else if (dt == R1_Q4_K)
		q4k_group(src, row_bytes, n / 256, dst);
	else if (dt == R1_Q6_K)
		q6k_group(src, row_bytes, n / 256, dst);
}

void
r1_repack_row_back(r1_dtype dt, const uint8_t *grp, int n, int r, uint8_t *row)
{
	const int	block = dt == R1_Q8_0 ? 32 : 256;
	const size_t bb = dt == R1_Q8_0 ? Q8_BYTES : dt == R1_Q4_K ? Q4K_BYTES : Q6K_BYTES;

	for (int i = 0; i < n / block; i++)
	{
		uint8_t    *b = row + (size_t) i * bb;
		uint8_t		sm[1][16];

		r1_repack_blocks_back(dt, grp, n, i, 1, r, b, sm);
		if (dt == R1_Q4_K)
		{
			int			sc[8],
						m[8];

			for (int g = 0; g < 8; g++)
			{
				sc[g] = sm[0][g];
				m[g] = sm[0][8 + g];
			}

			/*
			 * every bit of the 12 bytes is used, so packing them again gives
			 * them back
			 */
			r1_q4k_pack_scales(sc, m, b + 4);
		}
	}
}

void
r1_repack_blocks_back(r1_dtype dt, const uint8_t *grp, int n, int i0, int nblk, int r, uint8_t *blks,
					  uint8_t (*sm)[16])
{
	if (dt == R1_Q8_0)
		for (int k = 0; k < nblk; k++)
			q8_block_back(grp, n / 32, i0 + k, r, blks + (size_t) k * Q8_BYTES);
	else if (dt == R1_Q4_K)
		for (int k = 0; k < nblk; k++)
			q4k_block_back(grp, i0 + k, r, blks + (size_t) k * Q4K_BYTES, sm[k]);
	else if (dt == R1_Q6_K)
		for (int k = 0; k < nblk; k++)
			q6k_block_back(grp, i0 + k, r, blks + (size_t) k * Q6K_BYTES);
}

static int
entry_cmp(const void *a, const void *b)
{
	uintptr_t	x = (uintptr_t) ((const r1_repack_entry *) a)->src,
				y = (uintptr_t) ((const r1_repack_entry *) b)->src;

	return x < y ? -1 : x > y;
}

/* Does w get an x8 copy?  Its bytes in *bytes; a tied lm_head (the embedding's data) only once. */
static int
wants_x8(const r1_repack_set *set, r1_cpu_path path, const r1_tensor *w, size_t *bytes)
{
	size_t		row_bytes = 0;

	if (!w->data || w->ndim != 2 || !r1_repack_takes(path, w->dtype, w->shape[0], (int) w->shape[1]) ||
		r1_dtype_row_bytes(w->dtype, w->shape[1], &row_bytes) != 0)
		return 0;
	for (int i = 0; i < set->n; i++)
		if (set->e[i].src == w->data)
			return 0;
	*bytes = (row_bytes * (size_t) w->shape[0] + 63) / 64 * 64;
	return 1;
}

/* w's x8 copy at set->e[set->n++].x8 */
static void
repack_one(r1_repack_set *set, const r1_tensor *w, uint8_t *x8)
{
	size_t		row_bytes = 0;
	int			n = (int) w->shape[1];

	(void) r1_dtype_row_bytes(w->dtype, n, &row_bytes);
#ifdef MADV_POPULATE_READ
	{
		/*
		 * map the file's pages in one call, not one fault (a VM exit) per 4
		 * kB page
		 */
		uintptr_t	p0 = (uintptr_t) w->data & ~(uintptr_t) 4095,
					p1 = (uintptr_t) w->data + row_bytes * (size_t) w->shape[0];

		(void) madvise((void *) p0, p1 - p0, MADV_POPULATE_READ);
	}
#endif
#pragma omp parallel for schedule(static)
	for (int64_t g = 0; g < w->shape[0] / R1_REPACK_ROWS; g++)
		r1_repack_group(w->dtype, (const uint8_t *) w->data + (size_t) g * R1_REPACK_ROWS * row_bytes, row_bytes, n,
						x8 + (size_t) g * R1_REPACK_ROWS * row_bytes);
	set->e[set->n].src = w->data;
	set->e[set->n].x8 = x8;
	set->n++;
}

/* the model's linear weights, in order: 7 a layer, then lm_head */
static const r1_tensor *
linear_weight(const r1_model *m, int k)
{
	if (k == 7 * m->cfg.n_layers)
		return &m->lm_head;
	{
		const r1_layer_weights *w = &m->layers[k / 7];
		const r1_tensor *ts[7] = {&w->wq, &w->wk, &w->wv, &w->wo, &w->w_gate, &w->w_up, &w->w_down};

		return ts[k % 7];
	}
}

/*
 * One anonymous mapping holds every copy, in transparent huge pages where the
 * kernel gives them: a few hundred 2 MB pages instead of hundreds of
 * thousands of 4 kB ones (faulting those in cost seconds on a VM, and their
 * TLB misses slowed decode).
 */
int
r1_repack_model(r1_repack_set *set, r1_cpu_path path, const r1_model *m, r1_error *err)
{
	int			nw = 7 * m->cfg.n_layers + 1;
	size_t		total = 0,
				off = 0;

	memset(set, 0, sizeof(*set));
	set->e = calloc(nw, sizeof(r1_repack_entry));
	if (!set->e)
		return r1_fail(err, "out of memory for the x8 weight table");
	for (int k = 0; k < nw; k++)
	{
		size_t		b;

		if (wants_x8(set, path, linear_weight(m, k), &b))
		{
			set->e[set->n++].src = linear_weight(m, k)->data;	/* counted once */
			total += b;
		}
	}
	set->n = 0;
	if (total == 0)
		return 0;
	set->map_bytes = (total + X8_HUGE - 1) / X8_HUGE * X8_HUGE;
	set->map = mmap(NULL, set->map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (set->map == MAP_FAILED)
	{
		set->map = NULL;
		free(set->e);
		set->e = NULL;
		return r1_fail(err, "out of memory for the %zu-byte x8 copy of the weights (repack.h)", total);
	}
#ifdef MADV_HUGEPAGE
	(void) madvise(set->map, set->map_bytes, MADV_HUGEPAGE);
#endif
	for (int k = 0; k < nw; k++)
	{
		size_t		b;

		if (wants_x8(set, path, linear_weight(m, k), &b))
		{
			repack_one(set, linear_weight(m, k), (uint8_t *) set->map + off);
			off += b;
		}
	}
	set->bytes = total;
	qsort(set->e, set->n, sizeof(r1_repack_entry), entry_cmp);
	return 0;
}

const uint8_t *
r1_repack_find(const r1_repack_set *set, const r1_tensor *w)
{
	int			lo = 0,
				hi = set->n - 1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		uintptr_t	a = (uintptr_t) set->e[mid].src,
					b = (uintptr_t) w->data;

		if (a == b)
			return set->e[mid].x8;
		if (a < b)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

void
r1_repack_free(r1_repack_set *set)
{
	if (set->map)
		munmap(set->map, set->map_bytes);
	free(set->e);
	memset(set, 0, sizeof(*set));
}
