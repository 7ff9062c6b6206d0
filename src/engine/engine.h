/*
 * engine.h - a resident model serving many requests: tokenizer, backend and a
 * continuous-batching scheduler.  Requests join and leave the running batch
 * between steps; long prompts are prefilled in chunks so decoding continues.
 *
 * Single-threaded API: the caller (the `r1` tool, or the engine host process
 * of the extension) calls r1_engine_step() in its loop and collects finished
 * requests with r1_engine_poll().
 */
#ifndef R1_ENGINE_H
#define R1_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "model.h"
#include "protocol.h"			/* r1_finish (src/serve/protocol.h) */
#include "repetition.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct r1_engine_opts
{
	const char *model_dir;		/* checkpoint directory, or NULL with
								 * random_shape */
	const char *random_shape;	/* "1.5b", "7b", "14b", "32b" or a config.json
								 * path */
	r1_dtype	random_dtype;	/* dtype of random weights (default R1_BF16) */
	uint64_t	random_seed;
	const char *tokenizer_dir;	/* tokenizer for random weights; default
								 * model_dir */
	const char *device;			/* "cpu", "cuda", "auto" (default "auto") */
	int			threads;		/* CPU threads, 0 = all cores */
	int			max_seqs;		/* sequences decoded together (default 16) */
	int			max_ctx;		/* positions per sequence (default
								 * min(max_position, 32768)) */
	int			max_queued;		/* waiting + running requests accepted
								 * (default 1024) */
	int			prefill_chunk;	/* prompt tokens per step per sequence
								 * (default 512) */
	double		gpu_memory_fraction;	/* CUDA KV pool share of free memory
										 * (default 0.9) */
	int			batch_invariant;	/* 1: a request's tokens do not depend on
									 * the rest of the batch (bitwise; see
									 * backend.h); default 0 */
	size_t		kv_memory_bytes;	/* CPU: most bytes of KV cache, 0 = no
									 * limit */
	int			cpu_exact;		/* CPU: 1 = float32 activations (the reference
								 * arithmetic); 0 (default) = 8-bit
								 * activations for quantised weights, bf16 for
								 * bf16 weights (backend.h: cpu_exact) */
	r1_dtype	kv_cache_dtype; /* CPU KV cache: R1_F16 (default), R1_BF16 or
								 * R1_F32 */
} r1_engine_opts;

void		r1_engine_opts_defaults(r1_engine_opts *o);

/* "f32", "f16", "bf16" to the KV cache dtype; -1 for another word */
int			r1_kv_cache_dtype_parse(const char *s, r1_dtype *out);

typedef struct r1_request
{
	const int32_t *prompt_ids;	/* copied by submit */
	size_t		n_prompt;
	r1_sampling sampling;
	int			max_tokens;		/* >= 1; clamped to the context left after the
								 * prompt */
	int			ignore_eos;
	int			max_think_tokens;	/* 0 = no limit; N >= 1: after N generated
									 * tokens without </think> the engine
									 * emits </think> itself (as if sampled)
									 * and the model goes on to answer */
	double		deadline_ms;	/* r1_now_ms() time after which it is
								 * cancelled; 0 = none */
	void	   *user;			/* returned with the completion */

	/*
	 * Loop detection (repetition.h): max_span 0 (the zeroed default) is off.
	 * A request that ignores EOS runs to max_tokens: no loop detection.
	 */
	r1_repetition_opts repetition;

	/*
	 * 1: requests with the same prompt ids that all set this compute the
	 * prompt once (n samples of one prompt: voting).  The first one admitted
	 * prefills; the others wait in the batch until its prompt is cached, copy
	 * its KV cache (backend copy_kv) but for the last prompt position, and
	 * feed that one token themselves.  Results are unchanged (bitwise on the
	 * CPU with batch_invariant).
	 */
	int			share_prefill;
} r1_request;

typedef struct r1_completion
{
	int64_t		id;
	void	   *user;

	/*
	 * R1_FINISH_STOP (end of sequence), _THINK_BUDGET (stopped at the end of
	 * sequence after the engine closed the think section at
	 * max_think_tokens), _LENGTH (max_tokens or the context ran out; also
	 * when the budget was hit before: see think_budget_hit), _REPETITION
	 * (loop detection stopped it: see repetition_span), _CANCELLED, _TIMEOUT,
	 * _ERROR.  finish_reason is its name: "stop", "think_budget", "length",
	 * "repetition", "cancelled", "timeout", "error".
	 */
	r1_finish	finish;
	const char *finish_reason;
	int			think_budget_hit;	/* 1 when max_think_tokens forced </think> */
	int			repetition_span;	/* "repetition": the period of the loop in
									 * tokens */
	char		error[R1_ERROR_LEN];	/* with "error" */
	char	   *text;			/* everything generated, decoded (EOS not
								 * included) */
	size_t		text_len;
	char	   *think;			/* text before </think> (see r1_split_think) */
	char	   *answer;			/* text after </think>, NULL if none */
	char	   *boxed;			/* last \boxed{...} of the answer, NULL if
								 * none (or no answer) */
	int32_t    *ids;			/* generated ids (EOS included when it stopped
								 * there) */
	int			n_ids;
	int			prompt_tokens;
	int			completion_tokens;
	int			think_tokens;	/* generated tokens up to and including
								 * </think> */
	double		ms;				/* submit to finish */
	double		ttft_ms;		/* submit to first token */
} r1_completion;

typedef struct r1_engine_stats
{
	int			waiting;		/* queued, not yet running */
	int			running;		/* in the batch */
	uint64_t	tokens_generated;
	uint64_t	prompt_tokens;
	uint64_t	requests_done;
	uint64_t	preemptions;	/* sequences sent back to wait for a full KV
								 * cache */
	uint64_t	repetitions;	/* requests stopped by loop detection */
	uint64_t	prefill_shared; /* prompt tokens copied instead of computed
								 * (share_prefill) */
	size_t		memory_used;	/* backend bytes */
	size_t		weight_bytes;
} r1_engine_stats;

typedef struct r1_engine r1_engine;

int			r1_engine_open(r1_engine **out, const r1_engine_opts *opts, r1_error *err);
void		r1_engine_close(r1_engine *e);

const r1_model *r1_engine_model(const r1_engine *e);
const r1_tokenizer *r1_engine_tokenizer(const r1_engine *e);	/* NULL when none */
const char *r1_engine_device(const r1_engine *e);	/* "cpu" or "cuda" */
const char *r1_engine_note(const r1_engine *e); /* e.g. why auto fell back to
												 * the CPU */
int			r1_engine_ctx(const r1_engine *e);	/* positions per sequence */

/* Template (unless raw) and tokenize a prompt; *ids malloc'd. */
int			r1_engine_encode_prompt(r1_engine *e, const char *system, const char *prompt,
									int raw, int32_t **ids, size_t *n_ids, r1_error *err);

/*
 * Queue a request.  Fails (without queueing) on invalid parameters, ids out of
 * range, a prompt that leaves no room in the context, or a full queue (the
 * message starts with "queue full").
 */
int			r1_engine_submit(r1_engine *e, const r1_request *req, int64_t *id, r1_error *err);

/* Cancel a queued or running request: it completes with R1_FINISH_CANCELLED. */
int			r1_engine_cancel(r1_engine *e, int64_t id);

/* 1 when there is work (waiting or running requests). */
int			r1_engine_busy(const r1_engine *e);

/*
 * One scheduling step: admit waiting requests into free slots, run one
 * forward pass over the batch (prefill chunks and decode tokens), sample.
 * A backend failure fails the requests in the batch and returns -1.
 */
int			r1_engine_step(r1_engine *e, r1_error *err);

/* Take one finished request; returns 1 and fills *c, or 0 when none. */
int			r1_engine_poll(r1_engine *e, r1_completion *c);
void		r1_completion_free(r1_completion *c);

void		r1_engine_stats_get(const r1_engine *e, r1_engine_stats *s);

/* Where a queued or running request stands (r1.stat_activity). */
typedef struct r1_progress
{
	int			running;		/* 1 in the batch, 0 waiting for a slot */
	int			queue_position; /* 1 = next to be admitted; 0 when running */
	int			prompt_tokens;
	int			completion_tokens;	/* generated so far */
	double		tokens_per_s;	/* generated tokens per second since the first
								 * one */
	double		ms;				/* since submit */
} r1_progress;

/* 0 and *p filled for a queued or running request, -1 for an unknown or finished one. */
int			r1_engine_progress(const r1_engine *e, int64_t id, r1_progress *p);

/*
 * Run a raw batch on the backend (logits of every position for `r1 logits`
 * and tests); only while no request is running.  The slots are released after.
 */
int			r1_engine_forward(r1_engine *e, const r1_batch *batch, float *logits, r1_error *err);

/* Convenience: run one request to completion (the `r1 generate` path). */
int			r1_engine_run(r1_engine *e, const r1_request *req, r1_completion *c, r1_error *err);

#endif							/* R1_ENGINE_H */
