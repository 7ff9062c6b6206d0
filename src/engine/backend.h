/*
 * backend.h - the forward pass behind a small table of function pointers
 * (calm's shape): one backend per file, the CPU backend is the reference and
 * the fallback, the CUDA backend (kernels/) computes the same function.
 *
 * A backend owns the KV cache: max_slots sequences of up to max_ctx positions.
 * A batch may mix sequences in prefill (many tokens) and decode (one token).
 */
#ifndef R1_BACKEND_H
#define R1_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "sampler.h"

/* the sampling of one logits row, for backends that sample on the device */
typedef struct r1_row_sampling
{
	r1_sampling sp;
	uint64_t	position;		/* the position of the token being chosen (the
								 * RNG counter) */
} r1_row_sampling;

typedef struct r1_batch
{
	int			n_seqs;
	const int  *slot;			/* [n_seqs] KV cache slot of each sequence */
	const int  *pos;			/* [n_seqs] position of the sequence's first
								 * token in this batch */
	const int  *n_tokens;		/* [n_seqs] tokens of the sequence in this
								 * batch, >= 1 */
	const int32_t *tokens;		/* [sum n_tokens] the tokens, sequence after
								 * sequence */
	int			all_logits;		/* 1: a row of logits per token; 0: a row per
								 * sequence (its last token) */

	/*
	 * Optional, for a backend with can_sample and all_logits 0: the sampling
	 * of each row; the backend then writes the chosen ids to next[rows] (as
	 * r1_sample over the first sample_vocab logits would choose them) instead
	 * of the logits.
	 */
	const r1_row_sampling *sample;
	int32_t    *next;
	int			sample_vocab;
} r1_batch;

typedef struct r1_backend r1_backend;
struct r1_backend
{
	const char *name;			/* "cpu" or "cuda" */
	const r1_model *model;
	int			max_slots;
	int			max_ctx;

	/*
	 * Set by the caller before a forward: 1 asks that every token's logits
	 * (and cached keys/values) be bitwise independent of what else is in the
	 * batch.  The CPU backend is batch-invariant in every mode for batches
	 * under 8 tokens and with this flag for all; the CUDA backend documents
	 * what it guarantees (backend_cuda.c).
	 */
	int			batch_invariant;

	/*
	 * CPU backend, set by the caller before a forward: 1 keeps every
	 * activation in float32 (the reference arithmetic, which the golden
	 * fixtures check to 1e-4); 0 (the default) multiplies quantised weights
	 * with 8-bit activations (qdot.h) and bf16 weights with bf16 activations
	 * where the processor has vdpbf16ps, as llama.cpp does.
	 */
	int			cpu_exact;

	/*
	 * CPU backend, set before the first forward (it holds while any slot has
	 * positions): the KV cache's element type, R1_F32 (the zero value),
	 * R1_F16 or R1_BF16.  The CUDA backend keeps its own (bf16).
	 */
	r1_dtype	kv_dtype;

	/*
	 * the backend can choose tokens itself (r1_batch.sample): the CUDA
	 * backend
	 */
	int			can_sample;

	/*
	 * CPU backend: most bytes its KV cache may hold (0: no limit but the
	 * machine's).  The CUDA backend's pool is fixed at create time.
	 */
	size_t		max_kv_bytes;

	/*
	 * Run the batch: append its tokens' keys and values to the slots' caches
	 * at the given positions (positions before pos must already be cached),
	 * and write float32 logits [rows, vocab] to logits (host memory).
	 */
	int			(*forward) (r1_backend *b, const r1_batch *batch, float *logits, r1_error *err);

	/*
	 * Would the KV cache hold positions [0, ends[i]) of every slots[i] (n
	 * distinct slots) if that batch ran now?  1 yes, 0 no.  The scheduler
	 * asks before each step, so a full cache makes sequences wait (or be
	 * preempted) instead of failing a forward.
	 */
	int			(*kv_fits) (r1_backend *b, int n, const int *slots, const int *ends);
	/* Forget a slot's cache (the slot will be reused from position 0). */
	void		(*release_slot) (r1_backend *b, int slot);

	/*
	 * Copy positions [0, n) of slot src's cache into slot dst, which holds
	 * nothing (released or never used); dst then continues at position n. The
	 * prefill of a prompt shared by several sequences (engine.c,
	 * share_prefill).  The caller checks kv_fits first.  NULL: not supported.
	 */
	int			(*copy_kv) (r1_backend *b, int src, int dst, int n, r1_error *err);
	/* Bytes of memory the backend holds (weights copies, KV cache, scratch). */
	size_t		(*memory_used) (r1_backend *b);
	void		(*destroy) (r1_backend *b);
	void	   *impl;
};

int			r1_backend_cpu_create(r1_backend **out, const r1_model *m, int max_slots,
								  int max_ctx, int threads, r1_error *err);

/* Fails with a clear message when built without CUDA or no GPU is usable. */
int			r1_backend_cuda_create(r1_backend **out, const r1_model *m, int max_slots,
								   int max_ctx, double gpu_memory_fraction, r1_error *err);

/* device: "cpu", "cuda" or "auto" (CUDA when usable, else the CPU with a note in *note). */
int			r1_backend_create(r1_backend **out, const char *device, const r1_model *m,
							  int max_slots, int max_ctx, int threads, double gpu_memory_fraction,
							  char *note, size_t note_len, r1_error *err);

#endif							/* R1_BACKEND_H */
