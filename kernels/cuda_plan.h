/*
 * cuda_plan.h - the index and bookkeeping logic of the CUDA backend, in plain
 * C so that CPU unit tests exercise it (test/unit/test_cuda_plan.c) and the
 * kernels use the very same inline index functions (R1_HD marks them
 * __host__ __device__ when nvcc compiles the kernels).
 *
 * Paged KV cache.  One device pool of n_blocks blocks; a block holds
 * R1_KV_BLOCK consecutive positions of one sequence, for every layer, keys and
 * values, every KV head.  Element (layer, block, kv, head, off, d) lives at
 *
 *   ((((layer * n_blocks + block) * 2 + kv) * n_kv_heads + head) * R1_KV_BLOCK + off) * head_dim + d
 *
 * (kv 0 = key, 1 = value): the positions of one head within a block are
 * contiguous rows of head_dim bf16, so attention reads 16-byte vectors.
 * Each slot (sequence) has a block table: table[slot * max_blocks_per_slot + i]
 * is the block holding positions [i*R1_KV_BLOCK, (i+1)*R1_KV_BLOCK).  Blocks
 * are taken from a free stack as a slot grows and returned when it is
 * released; a batch that needs more blocks than are free fails as a whole
 * without touching any slot.
 *
 * Batch packing: the tokens of a batch, sequence after sequence, with their
 * absolute positions and slots, and which token rows produce logits.
 *
 * Attention split-K: a query token attends positions [0, pos]; that range is
 * cut into partitions of `part` positions, each computed by one thread block
 * (for one KV head and its group of query heads) as an online softmax over
 * chunks of R1_ATTN_CHUNK positions, giving (m, l, o): the running max of the
 * scores, the sum of exp(score - m) and the unnormalised sum of
 * exp(score - m) * v.  The partitions are merged with the log-sum-exp rule of
 * r1_attn_merge_ref(); r1_attn_partial_ref() is the C twin of one block.
 */
#ifndef R1_CUDA_PLAN_H
#define R1_CUDA_PLAN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define R1_HD __host__ __device__ __forceinline__
#else
#include "util.h"
#define R1_HD static inline
#endif

#define R1_KV_BLOCK 16			/* positions per KV block */
#define R1_ATTN_CHUNK 128		/* positions scored at once in shared memory */
#define R1_ATTN_MAX_GROUP 8		/* query heads per KV head the kernel supports */
#define R1_ATTN_PART_MIN 32		/* fewest positions a split is given */
#define R1_ATTN_MAX_SPLITS 256	/* most splits of one query's context */

/* ---------- index functions (shared with the kernels) ---------- */

/* offset (in elements) of (layer, block, kv, head, off, d) in the pool */
R1_HD size_t
r1_kv_index(int layer, int block, int kv, int head, int off, int d,
			int n_blocks, int n_kv_heads, int head_dim)
{
	return (((((size_t) layer * n_blocks + block) * 2 + kv) * n_kv_heads + head)
			* R1_KV_BLOCK + off) * head_dim + d;
}

/* physical block of position pos of a slot, from the slot's block table row */
R1_HD int
r1_kv_block_of(const int32_t *table_row, int pos)
{
	return table_row[pos / R1_KV_BLOCK];
}

/* element offset of the key (kv = 0) or value (kv = 1) row of (layer, slot row, pos, head) */
R1_HD size_t
r1_kv_row(const int32_t *table_row, int layer, int kv, int head, int pos,
		  int n_blocks, int n_kv_heads, int head_dim)
{
	return r1_kv_index(layer, r1_kv_block_of(table_row, pos), kv, head, pos % R1_KV_BLOCK, 0,
					   n_blocks, n_kv_heads, head_dim);
}

/* splits of a context of ctx positions cut into partitions of part positions */
R1_HD int
r1_attn_n_splits(int ctx, int part)
{
	return (ctx + part - 1) / part;
}

#ifndef __CUDACC__

/* ---------- paged-KV block allocator ---------- */

typedef struct r1_kv_alloc
{
	int			n_blocks;		/* blocks in the pool */
	int			max_slots;
	int			max_ctx;		/* positions a slot may hold */
	int			max_blocks_per_slot;	/* ceil(max_ctx / R1_KV_BLOCK): a
										 * table row's length */
	int32_t    *free_stack;		/* [n_blocks] free block ids, top at n_free -
								 * 1 */
	int			n_free;
	int32_t    *table;			/* [max_slots * max_blocks_per_slot], -1 where
								 * none */
	int		   *n_slot_blocks;	/* [max_slots] blocks a slot holds (its table
								 * prefix) */
} r1_kv_alloc;

/* a block-table entry to copy to the device: table[index] = block */
typedef struct r1_kv_update
{
	int32_t		index;
	int32_t		block;
} r1_kv_update;

int			r1_kv_alloc_init(r1_kv_alloc *a, int n_blocks, int max_slots, int max_ctx, r1_error *err);
void		r1_kv_alloc_destroy(r1_kv_alloc *a);

/* blocks needed to hold positions [0, n_positions) */
static inline int
r1_kv_blocks_for(int n_positions)
{
	return (n_positions + R1_KV_BLOCK - 1) / R1_KV_BLOCK;
}

/*
 * Make each slots[i] hold positions [0, ends[i]) (n entries, distinct slots).
 * All or nothing: when the free blocks do not suffice, fails with a message
 * naming the shortage and changes nothing.  New table entries are appended to
 * updates (room for sum of the new blocks; at most n * max_blocks_per_slot),
 * their count added to *n_updates.
 */
int			r1_kv_alloc_reserve(r1_kv_alloc *a, int n, const int *slots, const int *ends,
								r1_kv_update *updates, int *n_updates, r1_error *err);

/*
 * Blocks that r1_kv_alloc_reserve would take for this batch (0 when every
 * slot already has room); -1 when an entry is invalid (slot or end out of
 * range, a slot twice).
 */
long		r1_kv_alloc_need(const r1_kv_alloc *a, int n, const int *slots, const int *ends);

/* Return a slot's blocks to the pool (the slot restarts at position 0). */
void		r1_kv_alloc_release(r1_kv_alloc *a, int slot);

/* Check every invariant (each block owned once, free + owned = all); 0 if sound. */
int			r1_kv_alloc_check(const r1_kv_alloc *a, r1_error *err);

/*
 * Blocks for the KV pool: fraction of (free_bytes - reserve_bytes), in blocks
 * of block_bytes, capped at max_useful (enough for every slot at full
 * context).  Fails when not even one block fits.
 */
int			r1_kv_pool_blocks(size_t free_bytes, double fraction, size_t reserve_bytes,
							  size_t block_bytes, long max_useful, int *n_blocks, r1_error *err);

/* ---------- batch packing ---------- */

struct r1_batch;

typedef struct r1_batch_plan
{
	int			n_tokens;		/* T: tokens of the batch */
	int			n_rows;			/* rows of logits */
	int			max_ctx_len;	/* max over tokens of pos + 1 */
	int			cap;			/* capacity of the arrays below */
	int32_t    *tok_pos;		/* [T] absolute position of each token */
	int32_t    *tok_slot;		/* [T] KV slot of each token */
	int32_t    *logit_rows;		/* [rows] token index of each logits row */
	int		   *seq_end;		/* [n_seqs] pos + n_tokens: positions the slot
								 * must hold */
	int			seq_cap;
} r1_batch_plan;

/*
 * Validate a batch (slots in range and distinct, positions within max_ctx,
 * token ids within vocab) and fill the plan, growing its arrays.
 */
int			r1_batch_plan_make(r1_batch_plan *p, const struct r1_batch *b, int max_slots,
							   int max_ctx, int vocab, r1_error *err);
void		r1_batch_plan_free(r1_batch_plan *p);

/* ---------- attention split-K ---------- */

/*
 * Partition size for a launch of n_rows query tokens over n_kv_heads with the
 * longest context max_ctx_len: enough splits that about target_blocks thread
 * blocks run (e.g. 4 x multiprocessors), never fewer than R1_ATTN_PART_MIN
 * positions a split, at most R1_ATTN_MAX_SPLITS splits, a multiple of
 * R1_KV_BLOCK.  *max_splits gets r1_attn_n_splits(max_ctx_len, part).
 */
int			r1_attn_part_size(int n_rows, int n_kv_heads, int max_ctx_len, int target_blocks,
							  int *max_splits);

/*
 * C twin of one attention thread block for one query head: positions
 * [p0, p1) of keys k[p*hd ..] and values v[p*hd ..] (float rows), query q
 * already multiplied by the scale; online softmax in chunks of R1_ATTN_CHUNK.
 * Writes *m, *l and o[hd] (unnormalised).
 */
void		r1_attn_partial_ref(const float *q, const float *k, const float *v, int hd,
								int p0, int p1, float *m, float *l, float *o);

/*
 * The log-sum-exp merge the merge kernel does: n splits of (m[i], l[i],
 * o[i*hd ..]) into out[hd] = sum_i exp(m_i - M) o_i / sum_i exp(m_i - M) l_i.
 */
void		r1_attn_merge_ref(int n, int hd, const float *m, const float *l, const float *o,
							  float *out);

#endif							/* !__CUDACC__ */

#endif							/* R1_CUDA_PLAN_H */
