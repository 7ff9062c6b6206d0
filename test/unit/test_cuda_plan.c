/*
 * test_cuda_plan.c - the CUDA backend's host-side index logic, on the CPU:
 * the paged-KV block allocator under random traffic, the pool-to-element
 * mapping, batch packing, attention partition sizes, and the split-K
 * log-sum-exp merge against a direct softmax.
 */
#include "cuda_plan.h"
#include "backend.h"
#include "tap.h"

#include <math.h>
#include <stdlib.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t
rnd(void)						/* xorshift64* */
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t) ((rng_state * 0x2545f4914f6cdd1dULL) >> 32);
}

static float
rndf(void)						/* uniform in [-1, 1) */
{
	return (float) rnd() / 2147483648.0f - 1.0f;
}

static void
test_allocator(void)
{
	r1_kv_alloc a;
	r1_error	err;
	int			slots[4],
				ends[4];
	r1_kv_update upd[4 * 64];
	int			nu = 0;
	int			ok_all = 1;
	int			held[8] = {0};	/* positions each slot holds, the test's own model */
	long		fills = 0,
				shortages = 0;

	fails_with(r1_kv_alloc_init(&a, 0, 4, 100, &err), err, "must be positive", "init rejects an empty pool");

	ok(r1_kv_alloc_init(&a, 10, 4, 100, &err) == 0, "init: 10 blocks, 4 slots, context 100");
	is_int(a.max_blocks_per_slot, 7, "ceil(100 / 16) table entries per slot");
	is_int(a.n_free, 10, "all blocks free");
	ok(r1_kv_alloc_check(&a, &err) == 0, "fresh allocator is sound");

	slots[0] = 1;
	ends[0] = 17;
	ok(r1_kv_alloc_reserve(&a, 1, slots, ends, upd, &nu, &err) == 0, "slot 1 grows to 17 positions");
	is_int(nu, 2, "two new table entries");
	is_int(upd[0].index, 1 * 7 + 0, "first update is slot 1 entry 0");
	is_int(upd[0].block, 0, "fresh pool hands out block 0 first");
	is_int(upd[1].block, 1, "then block 1");
	nu = 0;
	ends[0] = 32;
	ok(r1_kv_alloc_reserve(&a, 1, slots, ends, upd, &nu, &err) == 0 && nu == 0,
	   "growing within the last block takes nothing");

	slots[0] = 0;
	ends[0] = 16 * 6;
	slots[1] = 2;
	ends[1] = 48;
	nu = 0;
	fails_with(r1_kv_alloc_reserve(&a, 2, slots, ends, upd, &nu, &err), err, "KV cache full",
			   "a batch needing 6 + 3 blocks with 8 free fails");
	is_int(a.n_slot_blocks[1], 2, "slot 1 untouched by the failed batch");
	ok(r1_kv_alloc_check(&a, &err) == 0, "allocator sound after the attempt");
	r1_kv_alloc_destroy(&a);

	/* the all-or-nothing rule, precisely */
	ok(r1_kv_alloc_init(&a, 8, 4, 16 * 8, &err) == 0, "init: 8 blocks");
	slots[0] = 0;
	ends[0] = 16 * 5;
	slots[1] = 1;
	ends[1] = 16 * 4;
	nu = 0;
	is_int((int) r1_kv_alloc_need(&a, 2, slots, ends), 9, "need: 5 + 4 blocks (the scheduler's kv_fits)");
	fails_with(r1_kv_alloc_reserve(&a, 2, slots, ends, upd, &nu, &err), err, "needs 9 more blocks",
			   "a batch needing 9 of 8 blocks fails");
	is_int(a.n_free, 8, "the failed batch took nothing");
	is_int(a.n_slot_blocks[0] + a.n_slot_blocks[1], 0, "no slot changed");
	is_int(nu, 0, "no table updates");
	ends[1] = 16 * 3;
	ok(r1_kv_alloc_reserve(&a, 2, slots, ends, upd, &nu, &err) == 0, "5 + 3 blocks fit exactly");
	is_int(a.n_free, 0, "pool exhausted");
	ends[0] = 16 * 5;
	ends[1] = 16 * 3 + 1;
	is_int((int) r1_kv_alloc_need(&a, 2, slots, ends), 1, "need: only what the slots lack (1 block)");
	ends[1] = 16 * 3;
	is_int((int) r1_kv_alloc_need(&a, 2, slots, ends), 0, "need: 0 when every slot has room");
	ends[1] = 16 * 8 + 1;
	is_int((int) r1_kv_alloc_need(&a, 2, slots, ends), -1, "need: -1 past the context");
	slots[0] = 2;
	ends[0] = 1;
	fails_with(r1_kv_alloc_reserve(&a, 1, slots, ends, upd, &nu, &err), err, "KV cache full",
			   "a new slot cannot start in a full pool");
	slots[0] = 1;
	slots[1] = 1;
	ends[0] = ends[1] = 1;
	fails_with(r1_kv_alloc_reserve(&a, 2, slots, ends, upd, &nu, &err), err, "twice",
			   "a slot twice in one batch is refused");
	slots[0] = 4;
	fails_with(r1_kv_alloc_reserve(&a, 1, slots, ends, upd, &nu, &err), err, "out of range",
			   "slot out of range is refused");
	slots[0] = 0;
	ends[0] = 16 * 8 + 1;
	fails_with(r1_kv_alloc_reserve(&a, 1, slots, ends, upd, &nu, &err), err, "exceed the context",
			   "positions beyond the context are refused");
	r1_kv_alloc_release(&a, 1);
	is_int(a.n_free, 3, "releasing slot 1 returns its 3 blocks");
	ok(r1_kv_alloc_check(&a, &err) == 0, "sound after release");
	r1_kv_alloc_release(&a, 1);
	is_int(a.n_free, 3, "releasing twice is harmless");
	r1_kv_alloc_release(&a, -1);
	r1_kv_alloc_release(&a, 99);
	ok(r1_kv_alloc_check(&a, &err) == 0, "release of an out-of-range slot is ignored");
	r1_kv_alloc_destroy(&a);

	/* random traffic: invariants after every operation, other slots never disturbed */
	ok(r1_kv_alloc_init(&a, 40, 8, 16 * 12, &err) == 0, "init: 40 blocks, 8 slots, 12 blocks each");
	for (int it = 0; it < 20000 && ok_all; it++)
	{
		int			op = rnd() % 4;
		int32_t		before[8 * 12];

		memcpy(before, a.table, sizeof(before));
		if (op == 0)
		{
			int			s = rnd() % 8;

			r1_kv_alloc_release(&a, s);
			held[s] = 0;
		}
		else
		{
			int			n = 1 + rnd() % 3,
						k = 0;
			long		need = 0;

			for (int i = 0; i < n; i++)
			{
				int			s = rnd() % 8,
							dup = 0;

				for (int j = 0; j < k; j++)
					dup |= slots[j] == s;
				if (dup)
					continue;
				slots[k] = s;
				ends[k] = held[s] + rnd() % 40;
				if (ends[k] > a.max_ctx)
					ends[k] = a.max_ctx;
				if (r1_kv_blocks_for(ends[k]) > a.n_slot_blocks[s])
					need += r1_kv_blocks_for(ends[k]) - a.n_slot_blocks[s];
				k++;
			}
			nu = 0;
			if (r1_kv_alloc_reserve(&a, k, slots, ends, upd, &nu, &err) == 0)
			{
				fills++;
				if (need > 40 || nu != need)
					ok_all = ok(0, "random op %d: reserve took %d blocks, expected %ld", it, nu, need);
				for (int u = 0; u < nu; u++)
					if (a.table[upd[u].index] != upd[u].block || before[upd[u].index] != -1)
						ok_all = ok(0, "random op %d: update %d does not match the table", it, u);
				for (int i = 0; i < k; i++)
					if (ends[i] > held[slots[i]])
						held[slots[i]] = ends[i];
			}
			else
			{
				shortages++;
				if (memcmp(before, a.table, sizeof(before)) != 0 || nu != 0)
					ok_all = ok(0, "random op %d: a failed reserve changed the table", it);
			}
			/* every slot not in the batch is unchanged */
			for (int s = 0; s < 8; s++)
			{
				int			in = 0;

				for (int i = 0; i < k; i++)
					in |= slots[i] == s;
				if (!in && memcmp(before + s * 12, a.table + s * 12, 12 * sizeof(int32_t)) != 0)
					ok_all = ok(0, "random op %d: slot %d changed though not in the batch", it, s);
			}
		}
		for (int s = 0; s < 8; s++)
			if (a.n_slot_blocks[s] != r1_kv_blocks_for(held[s]))
				ok_all = ok(0, "random op %d: slot %d holds %d blocks for %d positions", it, s,
							a.n_slot_blocks[s], held[s]);
		if (r1_kv_alloc_check(&a, &err) != 0)
			ok_all = ok(0, "random op %d: %s", it, err.msg);
	}
	ok(ok_all, "20000 random alloc/grow/release operations keep every invariant");
	ok(fills > 1000 && shortages > 100, "both successes (%ld) and shortages (%ld) were exercised",
	   fills, shortages);
	r1_kv_alloc_destroy(&a);
}

static void
test_mapping(void)
{
	int			nb = 7,
				nkv = 3,
				hd = 16,
				layers = 2;
	size_t		total = (size_t) layers * nb * 2 * nkv * R1_KV_BLOCK * hd;
	char	   *hit = calloc(total, 1);
	int			bijective = 1;
	int32_t		row[4] = {5, 2, 6, 0};

	for (int l = 0; l < layers; l++)
		for (int b = 0; b < nb; b++)
			for (int kv = 0; kv < 2; kv++)
				for (int h = 0; h < nkv; h++)
					for (int o = 0; o < R1_KV_BLOCK; o++)
						for (int d = 0; d < hd; d++)
						{
							size_t		i = r1_kv_index(l, b, kv, h, o, d, nb, nkv, hd);

							if (i >= total || hit[i])
								bijective = 0;
							else
								hit[i] = 1;
						}
	ok(bijective, "r1_kv_index maps (layer, block, kv, head, off, d) one-to-one onto the pool");
	is_int(r1_kv_index(0, 0, 0, 0, 1, 0, nb, nkv, hd), hd, "positions of a head are consecutive rows");
	is_int(r1_kv_index(0, 0, 1, 0, 0, 0, nb, nkv, hd), (size_t) nkv * R1_KV_BLOCK * hd,
		   "values follow the keys of a block");
	is_int(r1_kv_index(1, 0, 0, 0, 0, 0, nb, nkv, hd), (size_t) nb * 2 * nkv * R1_KV_BLOCK * hd,
		   "layer l starts after l whole pools");
	is_int(r1_kv_block_of(row, 0), 5, "position 0 is in the first table entry");
	is_int(r1_kv_block_of(row, 15), 5, "position 15 too");
	is_int(r1_kv_block_of(row, 16), 2, "position 16 is in the second");
	is_int(r1_kv_block_of(row, 63), 0, "position 63 in the fourth");
	is_int(r1_kv_row(row, 1, 1, 2, 37, nb, nkv, hd), r1_kv_index(1, 6, 1, 2, 5, 0, nb, nkv, hd),
		   "r1_kv_row = index of (block of pos, pos mod block)");
	free(hit);
}

static void
test_batch_plan(void)
{
	r1_batch_plan p;
	r1_error	err;
	int			slot[3] = {2, 0, 5},
				pos[3] = {0, 10, 3},
				ntok[3] = {3, 1, 2};
	int32_t		toks[6] = {1, 2, 3, 4, 5, 6};
	r1_batch	b = {3, slot, pos, ntok, toks, 0, NULL, NULL, 0};
	int			want_pos[6] = {0, 1, 2, 10, 3, 4};
	int			want_slot[6] = {2, 2, 2, 0, 5, 5};
	int			same = 1;

	memset(&p, 0, sizeof(p));
	ok(r1_batch_plan_make(&p, &b, 6, 16, 100, &err) == 0, "plan a mixed prefill/decode batch");
	is_int(p.n_tokens, 6, "6 tokens");
	is_int(p.n_rows, 3, "one logits row per sequence");
	for (int t = 0; t < 6; t++)
		same &= p.tok_pos[t] == want_pos[t] && p.tok_slot[t] == want_slot[t];
	ok(same, "token positions and slots");
	ok(p.logit_rows[0] == 2 && p.logit_rows[1] == 3 && p.logit_rows[2] == 5, "logits rows are each last token");
	is_int(p.max_ctx_len, 11, "longest context 11");
	ok(p.seq_end[0] == 3 && p.seq_end[1] == 11 && p.seq_end[2] == 5, "positions each slot must hold");
	b.all_logits = 1;
	ok(r1_batch_plan_make(&p, &b, 6, 16, 100, &err) == 0 && p.n_rows == 6, "all_logits: a row per token");
	same = 1;
	for (int t = 0; t < 6; t++)
		same &= p.logit_rows[t] == t;
	ok(same, "all_logits rows are the tokens in order");
	b.all_logits = 0;
	fails_with(r1_batch_plan_make(&p, &b, 5, 16, 100, &err), err, "slot 5 out of range", "slot out of range");
	fails_with(r1_batch_plan_make(&p, &b, 6, 10, 100, &err), err, "exceed the context", "context overflow");
	toks[4] = 100;
	fails_with(r1_batch_plan_make(&p, &b, 6, 16, 100, &err), err, "token id 100", "token id out of range");
	toks[4] = 5;
	slot[2] = 2;
	fails_with(r1_batch_plan_make(&p, &b, 6, 16, 100, &err), err, "share slot 2", "duplicate slot");
	slot[2] = 5;
	ntok[1] = 0;
	fails_with(r1_batch_plan_make(&p, &b, 6, 16, 100, &err), err, "exceed", "zero tokens");
	b.n_seqs = 0;
	fails_with(r1_batch_plan_make(&p, &b, 6, 16, 100, &err), err, "empty batch", "empty batch");
	r1_batch_plan_free(&p);
}

static void
test_part_size(void)
{
	int			ms,
				part;
	int			good = 1;

	part = r1_attn_part_size(1, 2, 16384, 528, &ms);
	ok(part % R1_KV_BLOCK == 0 && ms * 2 >= 264 && ms <= R1_ATTN_MAX_SPLITS,
	   "one sequence at 16k, 2 KV heads: %d splits of %d fill the GPU", ms, part);
	part = r1_attn_part_size(256, 2, 4224, 528, &ms);
	is_int(ms, r1_attn_n_splits(4224, part), "max_splits matches the context");
	ok(ms <= 2, "256 sequences need few splits (%d of %d)", ms, part);
	part = r1_attn_part_size(1, 4, 5, 528, &ms);
	ok(part == R1_ATTN_PART_MIN && ms == 1, "a short context is one split of the minimum size");
	for (int it = 0; it < 5000; it++)
	{
		int			rows = 1 + rnd() % 600,
					nkv = 1 + rnd() % 8,
					ctx = 1 + rnd() % 40000,
					target = 1 + rnd() % 2000;

		part = r1_attn_part_size(rows, nkv, ctx, target, &ms);
		if (part < R1_ATTN_PART_MIN || part % R1_KV_BLOCK || ms < 1 || ms > R1_ATTN_MAX_SPLITS ||
			ms != r1_attn_n_splits(ctx, part) || (long) (ms - 1) * part >= ctx)
		{
			good = ok(0, "rows %d nkv %d ctx %d target %d: part %d splits %d", rows, nkv, ctx, target,
					  part, ms);
			break;
		}
	}
	ok(good, "5000 random shapes: partitions cover the context, none empty, within the limits");
}

/* direct softmax(q.k) v over [0, n) in double */
static void
direct_attention(const float *q, const float *k, const float *v, int hd, int n, double *out)
{
	double	   *s = malloc(sizeof(double) * n);
	double		mx = -INFINITY,
				sum = 0.0;

	for (int p = 0; p < n; p++)
	{
		double		d = 0.0;

		for (int i = 0; i < hd; i++)
			d += (double) q[i] * k[(size_t) p * hd + i];
		s[p] = d;
		if (d > mx)
			mx = d;
	}
	for (int p = 0; p < n; p++)
	{
		s[p] = exp(s[p] - mx);
		sum += s[p];
	}
	for (int i = 0; i < hd; i++)
	{
		double		acc = 0.0;

		for (int p = 0; p < n; p++)
			acc += s[p] * v[(size_t) p * hd + i];
		out[i] = acc / sum;
	}
	free(s);
}

static void
test_merge(void)
{
	int			worst_case = -1;
	double		worst = 0.0;

	for (int it = 0; it < 200; it++)
	{
		int			hd = 8 << (rnd() % 5);	/* 8 .. 128 */
		int			n = 1 + rnd() % 3000;
		int			ms,
					part = r1_attn_part_size(1 + rnd() % 4, 1 + rnd() % 4, n, 1 + rnd() % 600, &ms);
		float		scale = (float) (1.0 / sqrt(hd)) * (it % 3 == 0 ? 8.0f : 1.0f);	/* some peaky */
		float	   *q = malloc(sizeof(float) * hd),
				   *k = malloc(sizeof(float) * hd * n),
				   *v = malloc(sizeof(float) * hd * n),
				   *m = malloc(sizeof(float) * ms),
				   *l = malloc(sizeof(float) * ms),
				   *o = malloc(sizeof(float) * hd * ms),
				   *out = malloc(sizeof(float) * hd);
		double	   *ref = malloc(sizeof(double) * hd);
		double		err = 0.0;

		for (int i = 0; i < hd; i++)
			q[i] = rndf() * scale * 2.0f;
		for (long i = 0; i < (long) hd * n; i++)
		{
			k[i] = rndf() * 2.0f;
			v[i] = rndf();
		}
		for (int s = 0; s < ms; s++)
		{
			int			p0 = s * part,
						p1 = p0 + part < n ? p0 + part : n;

			r1_attn_partial_ref(q, k, v, hd, p0, p1, &m[s], &l[s], o + (size_t) s * hd);
		}
		r1_attn_merge_ref(ms, hd, m, l, o, out);
		direct_attention(q, k, v, hd, n, ref);
		for (int i = 0; i < hd; i++)
			if (fabs(out[i] - ref[i]) > err)
				err = fabs(out[i] - ref[i]);
		if (err > worst)
		{
			worst = err;
			worst_case = it;
		}
		free(q);
		free(k);
		free(v);
		free(m);
		free(l);
		free(o);
		free(out);
		free(ref);
	}
	if (!ok(worst < 1e-5, "split-K partials + LSE merge = direct softmax-weighted sum (200 random cases)"))
		diag("  worst |diff| %.3g in case %d", worst, worst_case);
	else
		diag("worst |diff| %.3g", worst);

	/* a single split is the plain normalised partial */
	{
		float		m = 1.5f,
					l = 2.0f,
					o[2] = {4.0f, -1.0f},
					out[2];

		r1_attn_merge_ref(1, 2, &m, &l, o, out);
		ok(out[0] == 2.0f && out[1] == -0.5f, "merge of one split divides by l");
	}
}

static void
test_pool(void)
{
	int			nb;
	r1_error	err;
	size_t		GiB = (size_t) 1 << 30;

	ok(r1_kv_pool_blocks(10 * GiB, 0.5, 2 * GiB, 1 << 20, 1000000, &nb, &err) == 0 && nb == 4096,
	   "half of (10 GiB - 2 GiB) in 1 MiB blocks = 4096");
	ok(r1_kv_pool_blocks(10 * GiB, 0.9, 0, 1 << 20, 100, &nb, &err) == 0 && nb == 100,
	   "capped at the blocks every slot could use");
	fails_with(r1_kv_pool_blocks(GiB, 0.9, 2 * GiB, 1 << 20, 100, &nb, &err), err,
			   "not enough GPU memory", "reserve larger than free memory fails clearly");
	fails_with(r1_kv_pool_blocks(GiB, 0.0, 0, 1 << 20, 100, &nb, &err), err, "gpu_memory_fraction",
			   "fraction 0 is refused");
	fails_with(r1_kv_pool_blocks(GiB, 1.5, 0, 1 << 20, 100, &nb, &err), err, "gpu_memory_fraction",
			   "fraction above 1 is refused");
}

int
main(void)
{
	test_allocator();
	test_mapping();
	test_batch_plan();
	test_part_size();
	test_merge();
	test_pool();
	return done_testing();
}
