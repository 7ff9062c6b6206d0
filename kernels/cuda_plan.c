/*
 * cuda_plan.c - host-side bookkeeping of the CUDA backend: the paged-KV block
 * allocator, batch packing, attention partition sizes, and C references of
 * the split-K attention arithmetic.  See cuda_plan.h for the layouts.  No
 * CUDA here: this file is compiled into every build and unit-tested on the
 * CPU.
 */
#include "cuda_plan.h"
#include "backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------- paged-KV block allocator ---------- */

int
r1_kv_alloc_init(r1_kv_alloc *a, int n_blocks, int max_slots, int max_ctx, r1_error *err)
{
	size_t		entries;

	memset(a, 0, sizeof(*a));
	if (n_blocks < 1 || max_slots < 1 || max_ctx < 1)
		return r1_fail(err, "KV allocator: blocks (%d), slots (%d) and context (%d) must be positive",
					   n_blocks, max_slots, max_ctx);
	a->n_blocks = n_blocks;
	a->max_slots = max_slots;
	a->max_ctx = max_ctx;
	a->max_blocks_per_slot = r1_kv_blocks_for(max_ctx);
	if (!r1_mul_size((size_t) max_slots, (size_t) a->max_blocks_per_slot, &entries) ||
		entries > INT32_MAX)
		return r1_fail(err, "KV allocator: %d slots x %d blocks is too many table entries",
					   max_slots, a->max_blocks_per_slot);
	a->free_stack = r1_malloc(sizeof(int32_t) * (size_t) n_blocks, err);
	a->table = r1_malloc(sizeof(int32_t) * entries, err);
	a->n_slot_blocks = r1_calloc((size_t) max_slots, sizeof(int), err);
	if (!a->free_stack || !a->table || !a->n_slot_blocks)
	{
		r1_kv_alloc_destroy(a);
		return -1;
	}
	/* lowest ids on top, so a fresh pool hands out 0, 1, 2, ... */
	for (int i = 0; i < n_blocks; i++)
		a->free_stack[i] = n_blocks - 1 - i;
	a->n_free = n_blocks;
	for (size_t i = 0; i < entries; i++)
		a->table[i] = -1;
	return 0;
}

void
r1_kv_alloc_destroy(r1_kv_alloc *a)
{
	free(a->free_stack);
	free(a->table);
	free(a->n_slot_blocks);
	memset(a, 0, sizeof(*a));
}

int
r1_kv_alloc_reserve(r1_kv_alloc *a, int n, const int *slots, const int *ends,
					r1_kv_update *updates, int *n_updates, r1_error *err)
{
	long		need = 0;

	/* first pass: validate and count, so that a shortage changes nothing */
	for (int i = 0; i < n; i++)
	{
		int			s = slots[i];

		if (s < 0 || s >= a->max_slots)
			return r1_fail(err, "KV allocator: slot %d out of range [0, %d)", s, a->max_slots);
		if (ends[i] < 0 || ends[i] > a->max_ctx)
			return r1_fail(err, "KV allocator: slot %d: %d positions exceed the context of %d",
						   s, ends[i], a->max_ctx);
		for (int j = 0; j < i; j++)
			if (slots[j] == s)
				return r1_fail(err, "KV allocator: slot %d appears twice in one batch", s);
		if (r1_kv_blocks_for(ends[i]) > a->n_slot_blocks[s])
			need += r1_kv_blocks_for(ends[i]) - a->n_slot_blocks[s];
	}
	if (need > a->n_free)
		return r1_fail(err, "KV cache full: the batch needs %ld more blocks of %d positions, %d of %d are free",
					   need, R1_KV_BLOCK, a->n_free, a->n_blocks);
	/* second pass: take blocks */
	for (int i = 0; i < n; i++)
	{
		int			s = slots[i];
		int			want = r1_kv_blocks_for(ends[i]);
		int32_t    *row = a->table + (size_t) s * a->max_blocks_per_slot;

		while (a->n_slot_blocks[s] < want)
		{
			int			idx = a->n_slot_blocks[s]++;
			int32_t		blk = a->free_stack[--a->n_free];

			row[idx] = blk;
			if (updates)
			{
				updates[*n_updates].index = (int32_t) ((size_t) s * a->max_blocks_per_slot + idx);
				updates[*n_updates].block = blk;
			}
			(*n_updates)++;
		}
	}
	return 0;
}

long
r1_kv_alloc_need(const r1_kv_alloc *a, int n, const int *slots, const int *ends)
{
	long		need = 0;

	for (int i = 0; i < n; i++)
	{
		int			s = slots[i];

		if (s < 0 || s >= a->max_slots || ends[i] < 0 || ends[i] > a->max_ctx)
			return -1;
		for (int j = 0; j < i; j++)
			if (slots[j] == s)
				return -1;
		if (r1_kv_blocks_for(ends[i]) > a->n_slot_blocks[s])
			need += r1_kv_blocks_for(ends[i]) - a->n_slot_blocks[s];
	}
	return need;
}

void
r1_kv_alloc_release(r1_kv_alloc *a, int slot)
{
	int32_t    *row;

	if (slot < 0 || slot >= a->max_slots)
		return;
	row = a->table + (size_t) slot * a->max_blocks_per_slot;
	/* push in reverse so the slot's first block is reused first */
	for (int i = a->n_slot_blocks[slot] - 1; i >= 0; i--)
	{
		a->free_stack[a->n_free++] = row[i];
		row[i] = -1;
	}
	a->n_slot_blocks[slot] = 0;
}

int
r1_kv_alloc_check(const r1_kv_alloc *a, r1_error *err)
{
	char	   *seen = calloc((size_t) a->n_blocks, 1);
	long		owned = 0;
	int			rc = 0;

	if (!seen)
		return r1_fail(err, "out of memory");
	if (a->n_free < 0 || a->n_free > a->n_blocks)
		rc = r1_fail(err, "free count %d outside [0, %d]", a->n_free, a->n_blocks);
	for (int i = 0; rc == 0 && i < a->n_free; i++)
	{
		int32_t		b = a->free_stack[i];

		if (b < 0 || b >= a->n_blocks || seen[b])
			rc = r1_fail(err, "free stack entry %d: block %d invalid or repeated", i, b);
		else
			seen[b] = 1;
	}
	for (int s = 0; rc == 0 && s < a->max_slots; s++)
	{
		const int32_t *row = a->table + (size_t) s * a->max_blocks_per_slot;
		int			nb = a->n_slot_blocks[s];

		if (nb < 0 || nb > a->max_blocks_per_slot)
		{
			rc = r1_fail(err, "slot %d holds %d blocks", s, nb);
			break;
		}
		for (int i = 0; rc == 0 && i < a->max_blocks_per_slot; i++)
		{
			int32_t		b = row[i];

			if (i >= nb)
			{
				if (b != -1)
					rc = r1_fail(err, "slot %d entry %d beyond its %d blocks is %d", s, i, nb, b);
			}
			else if (b < 0 || b >= a->n_blocks || seen[b])
				rc = r1_fail(err, "slot %d entry %d: block %d invalid or owned twice", s, i, b);
			else
			{
				seen[b] = 1;
				owned++;
			}
		}
	}
	if (rc == 0 && owned + a->n_free != a->n_blocks)
		rc = r1_fail(err, "%ld owned + %d free != %d blocks", owned, a->n_free, a->n_blocks);
	free(seen);
	return rc;
}

int
r1_kv_pool_blocks(size_t free_bytes, double fraction, size_t reserve_bytes, size_t block_bytes,
				  long max_useful, int *n_blocks, r1_error *err)
{
	double		avail;
	double		nb;

	*n_blocks = 0;
	if (!(fraction > 0.0 && fraction <= 1.0))
		return r1_fail(err, "gpu_memory_fraction %g must be in (0, 1]", fraction);
	if (block_bytes == 0 || max_useful < 1)
		return r1_fail(err, "KV pool: empty block size or no useful blocks");
	avail = free_bytes > reserve_bytes ? (double) (free_bytes - reserve_bytes) * fraction : 0.0;
	nb = floor(avail / (double) block_bytes);
	if (nb > (double) max_useful)
		nb = (double) max_useful;
	if (nb > (double) INT32_MAX)
		nb = (double) INT32_MAX;
	if (nb < 1)
		return r1_fail(err, "not enough GPU memory for the KV cache: %.0f MiB free, %.0f MiB kept for "
					   "activations, fraction %.2f, one block of %d positions needs %.1f MiB",
					   free_bytes / 1048576.0, reserve_bytes / 1048576.0, fraction, R1_KV_BLOCK,
					   block_bytes / 1048576.0);
	*n_blocks = (int) nb;
	return 0;
}

/* ---------- batch packing ---------- */

static int
grow_i32(int32_t **p, size_t n, r1_error *err)
{
	int32_t    *q = realloc(*p, sizeof(int32_t) * n);

	if (!q)
		return r1_fail(err, "out of memory planning a batch");
	*p = q;
	return 0;
}

int
r1_batch_plan_make(r1_batch_plan *p, const r1_batch *b, int max_slots, int max_ctx, int vocab,
				   r1_error *err)
{
	long		T = 0;
	int			rows = 0;

	if (!b || b->n_seqs < 1)
		return r1_fail(err, "empty batch");
	for (int s = 0; s < b->n_seqs; s++)
	{
		int			slot = b->slot[s],
					pos = b->pos[s],
					n = b->n_tokens[s];

		if (slot < 0 || slot >= max_slots)
			return r1_fail(err, "batch sequence %d: slot %d out of range [0, %d)", s, slot, max_slots);
		if (n < 1 || pos < 0 || pos > max_ctx - n)
			return r1_fail(err, "batch sequence %d: positions %d..%d exceed the context of %d",
						   s, pos, pos + n - 1, max_ctx);
		for (int j = 0; j < s; j++)
			if (b->slot[j] == slot)
				return r1_fail(err, "batch sequences %d and %d share slot %d", j, s, slot);
		for (int t = 0; t < n; t++)
		{
			int32_t		id = b->tokens[T + t];

			if (id < 0 || id >= vocab)
				return r1_fail(err, "token id %d out of range [0, %d)", id, vocab);
		}
		T += n;
		if (T > INT32_MAX / 2)
			return r1_fail(err, "batch of too many tokens");
		rows += b->all_logits ? n : 1;
	}
	if (T > p->cap)
	{
		if (grow_i32(&p->tok_pos, T, err) || grow_i32(&p->tok_slot, T, err) ||
			grow_i32(&p->logit_rows, T, err))
			return -1;
		p->cap = (int) T;
	}
	if (b->n_seqs > p->seq_cap)
	{
		int		   *q = realloc(p->seq_end, sizeof(int) * b->n_seqs);

		if (!q)
			return r1_fail(err, "out of memory planning a batch");
		p->seq_end = q;
		p->seq_cap = b->n_seqs;
	}
	p->n_tokens = (int) T;
	p->n_rows = rows;
	p->max_ctx_len = 0;
	rows = 0;
	for (int s = 0, t = 0; s < b->n_seqs; s++)
	{
		int			n = b->n_tokens[s];

		p->seq_end[s] = b->pos[s] + n;
		if (p->seq_end[s] > p->max_ctx_len)
			p->max_ctx_len = p->seq_end[s];
		for (int i = 0; i < n; i++, t++)
		{
			p->tok_pos[t] = b->pos[s] + i;
			p->tok_slot[t] = b->slot[s];
			if (b->all_logits || i == n - 1)
				p->logit_rows[rows++] = t;
		}
	}
	return 0;
}

void
r1_batch_plan_free(r1_batch_plan *p)
{
	free(p->tok_pos);
	free(p->tok_slot);
	free(p->logit_rows);
	free(p->seq_end);
	memset(p, 0, sizeof(*p));
}

/* ---------- attention split-K ---------- */

int
r1_attn_part_size(int n_rows, int n_kv_heads, int max_ctx_len, int target_blocks, int *max_splits)
{
	long		base = (long) n_rows * n_kv_heads;
	long		want = base > 0 ? (target_blocks + base - 1) / base : 1;
	int			part;

	if (max_ctx_len < 1)
		max_ctx_len = 1;
	if (want < 1)
		want = 1;
	if (want > R1_ATTN_MAX_SPLITS)
		want = R1_ATTN_MAX_SPLITS;
	part = (int) ((max_ctx_len + want - 1) / want);
	if (part < R1_ATTN_PART_MIN)
		part = R1_ATTN_PART_MIN;
	part = (part + R1_KV_BLOCK - 1) / R1_KV_BLOCK * R1_KV_BLOCK;
	*max_splits = r1_attn_n_splits(max_ctx_len, part);
	return part;
}

void
r1_attn_partial_ref(const float *q, const float *k, const float *v, int hd, int p0, int p1,
					float *m, float *l, float *o)
{
	float		sc[R1_ATTN_CHUNK];
	float		m_run = -INFINITY,
				l_run = 0.0f;

	for (int d = 0; d < hd; d++)
		o[d] = 0.0f;
	for (int c0 = p0; c0 < p1; c0 += R1_ATTN_CHUNK)
	{
		int			c1 = c0 + R1_ATTN_CHUNK < p1 ? c0 + R1_ATTN_CHUNK : p1;
		float		cm = -INFINITY,
					m_new,
					alpha,
					sum = 0.0f;

		for (int p = c0; p < c1; p++)
		{
			float		s = 0.0f;

			for (int d = 0; d < hd; d++)
				s += q[d] * k[(size_t) p * hd + d];
			sc[p - c0] = s;
			cm = fmaxf(cm, s);
		}
		m_new = fmaxf(m_run, cm);
		alpha = expf(m_run - m_new);	/* 0 on the first chunk */
		for (int p = c0; p < c1; p++)
		{
			sc[p - c0] = expf(sc[p - c0] - m_new);
			sum += sc[p - c0];
		}
		l_run = l_run * alpha + sum;
		m_run = m_new;
		for (int d = 0; d < hd; d++)
		{
			float		acc = o[d] * alpha;

			for (int p = c0; p < c1; p++)
				acc += sc[p - c0] * v[(size_t) p * hd + d];
			o[d] = acc;
		}
	}
	*m = m_run;
	*l = l_run;
}

void
r1_attn_merge_ref(int n, int hd, const float *m, const float *l, const float *o, float *out)
{
	float		M = -INFINITY,
				L = 0.0f;

	for (int i = 0; i < n; i++)
		M = fmaxf(M, m[i]);
	for (int i = 0; i < n; i++)
		L += l[i] * expf(m[i] - M);
	for (int d = 0; d < hd; d++)
	{
		float		acc = 0.0f;

		for (int i = 0; i < n; i++)
			acc += o[(size_t) i * hd + d] * expf(m[i] - M);
		out[d] = acc / L;
	}
}
