/*
 * engine.c - a resident model and its continuous-batching scheduler.
 *
 * Each step: finish what was cancelled or ran out of time, admit waiting
 * requests into free KV slots (first come, first served), then build one
 * batch in which every running sequence contributes either its next prompt
 * chunk or its last sampled token, run the backend once, and sample.  Prompt
 * tokens per step are capped (prefill_chunk), so a long prompt is spread over
 * several steps while the others keep decoding.
 *
 * A full KV cache never fails a step: a sequence whose next tokens do not fit
 * waits for the step in which they do; when no sequence fits, the youngest
 * running one is preempted (its cache freed, itself put first in the queue)
 * and later recomputes its prompt and generated tokens before it samples
 * again, at the same positions with the same seeds.  Only a sequence that
 * cannot fit even alone fails, with a message that says which setting to
 * change.
 *
 * Requests that set share_prefill and have the same prompt compute it once:
 * the oldest prefills, the others hold their slots idle until its cache has
 * the prompt, then copy it (backend copy_kv) and feed only the last prompt
 * token (share_prefill()).  After each sampled token a request's loop
 * detector (repetition.h) may stop it with finish_reason "repetition".
 */
#include "engine.h"
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

enum req_state
{
	REQ_WAITING,
	REQ_RUNNING,
	REQ_DONE
};

typedef struct sched_req
{
	int64_t		id;
	void	   *user;
	enum req_state state;
	int32_t    *prompt;			/* [n_prompt] */
	int			n_prompt;
	r1_sampling sp;
	int			max_tokens;
	int			ignore_eos;
	int			max_think;		/* max_think_tokens, 0 = none */
	int			forced;			/* tokens of </think> already forced */
	double		deadline_ms;
	int			cancelled;
	int			slot;			/* KV slot while running, else -1 */
	int			n_past;			/* tokens already in the KV cache */
	int32_t    *out;			/* generated ids */
	int			n_out,
				cap_out;
	char	   *text;			/* decoded text so far */
	size_t		text_len,
				text_cap;
	r1_detok	detok;
	int			think_tokens;
	int			share;			/* share_prefill */
	uint64_t	prompt_hash;	/* of prompt[], to find sharers */
	r1_repdet	rep;			/* loop detection over out[] */
	int			rep_span;		/* the loop's period when it stopped the
								 * request */
	double		t_submit,
				t_first;
	r1_finish	finish;
	char		error[R1_ERROR_LEN];
	struct sched_req *next;		/* waiting or done list */
} sched_req;

struct r1_engine
{
	r1_engine_opts opts;
	r1_model   *model;
	r1_tokenizer *tok;
	r1_backend *be;
	char		note[512];
	int			ctx;
	int32_t		eos_ids[2];
	int32_t		think_close_id; /* id of "</think>", -1 if the tokenizer has
								 * none */
	int32_t		think_close[8]; /* the ids forced at max_think_tokens:
								 * "</think>" encoded */
	int			n_think_close;	/* 0: no tokenizer, max_think_tokens is
								 * refused */
	int			sample_vocab;	/* ids sampled from: [0, tokenizer size) with
								 * a tokenizer */
	sched_req **running;		/* [max_seqs] by slot */
	sched_req  *wait_head,
			   *wait_tail;
	sched_req  *done_head,
			   *done_tail;
	int			n_waiting,
				n_running;
	int64_t		next_id;
	/* per-step buffers */
	int		   *b_slot,
			   *b_pos,
			   *b_end,
			   *b_n;
	r1_row_sampling *b_samp;	/* device sampling: each row's parameters */
	int32_t    *b_next;			/* device sampling: the chosen ids */
	sched_req **b_req;
	int32_t    *b_tokens;
	int			b_tokens_cap;
	float	   *logits;			/* [max_seqs, vocab] */
	void	   *sample_scratch;
	r1_engine_stats stats;
};

void
r1_engine_opts_defaults(r1_engine_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->random_dtype = R1_BF16;
	o->device = "auto";
	o->max_seqs = 16;
	o->max_queued = 1024;
	o->prefill_chunk = 512;
	o->gpu_memory_fraction = 0.9;

	/*
	 * f16 keys and values on the CPU: half the bytes attention streams, 11
	 * significant bits (bf16 keeps 8; keys and values are far below f16's
	 * 65504), and llama.cpp's default, so the two read the same cache size.
	 */
	o->kv_cache_dtype = R1_F16;
}

int
r1_kv_cache_dtype_parse(const char *s, r1_dtype *out)
{
	if (strcmp(s, "f32") == 0)
		*out = R1_F32;
	else if (strcmp(s, "f16") == 0)
		*out = R1_F16;
	else if (strcmp(s, "bf16") == 0)
		*out = R1_BF16;
	else
		return -1;
	return 0;
}

static int
file_exists(const char *dir, const char *name)
{
	char		path[4096];
	FILE	   *f;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int) sizeof(path))
		return 0;
	f = fopen(path, "r");
	if (f)
		fclose(f);
	return f != NULL;
}

int
r1_engine_open(r1_engine **out, const r1_engine_opts *opts, r1_error *err)
{
	r1_engine  *e;
	const char *tokdir;
	int			vocab;

	*out = NULL;
	e = r1_calloc(1, sizeof(*e), err);
	if (!e)
		return -1;
	e->opts = *opts;
	if (e->opts.max_seqs < 1)
		e->opts.max_seqs = 16;
	if (e->opts.max_queued < 1)
		e->opts.max_queued = 1024;
	if (e->opts.prefill_chunk < 1)
		e->opts.prefill_chunk = 512;
	if (e->opts.gpu_memory_fraction <= 0 || e->opts.gpu_memory_fraction > 1)
		e->opts.gpu_memory_fraction = 0.9;

	if (opts->model_dir)
	{
		if (r1_model_load(&e->model, opts->model_dir, err) != 0)
			goto fail;
	}
	else if (opts->random_shape)
	{
		r1_config	cfg;

		if (r1_config_preset(&cfg, opts->random_shape, err) != 0 ||
			r1_model_random(&e->model, &cfg, opts->random_dtype ? opts->random_dtype : R1_BF16,
							opts->random_seed, err) != 0)
			goto fail;
		{
			const char *base = strrchr(opts->random_shape, '/');

			snprintf(e->model->name, sizeof(e->model->name), "random-%.200s",
					 base ? base + 1 : opts->random_shape);
		}
	}
	else
	{
		r1_fail(err, "no model: give a checkpoint directory or a random-weights shape");
		goto fail;
	}
	vocab = e->model->cfg.vocab_size;

	tokdir = opts->tokenizer_dir ? opts->tokenizer_dir : opts->model_dir;
	if (tokdir && (opts->tokenizer_dir || file_exists(tokdir, "tokenizer.json") ||
				   (e->model->gguf && r1_gguf_find_kv(e->model->gguf, "tokenizer.ggml.tokens"))))
	{
		if (r1_tokenizer_load(&e->tok, tokdir, err) != 0)
			goto fail;
		if (r1_tokenizer_n_tokens(e->tok) < 1)
		{
			r1_fail(err, "the tokenizer in %s has no tokens: nothing could be sampled", tokdir);
			goto fail;
		}
		if (r1_tokenizer_n_tokens(e->tok) > vocab)
		{
			r1_fail(err, "tokenizer has %d tokens but the model's vocabulary is %d: they do not belong together",
					r1_tokenizer_n_tokens(e->tok), vocab);
			goto fail;
		}
	}

	/*
	 * The embedding is padded past the tokenizer (151936 rows for 151665
	 * tokens): ids there have no text, so they are never sampled.
	 */
	e->sample_vocab = e->tok ? r1_tokenizer_n_tokens(e->tok) : vocab;
	e->eos_ids[0] = e->model->cfg.eos_id;
	e->eos_ids[1] = e->tok ? r1_tokenizer_eos_id(e->tok) : -1;
	e->think_close_id = e->tok ? r1_tokenizer_token_id(e->tok, R1_THINK_CLOSE) : -1;
	if (e->think_close_id >= 0)
		e->think_close[e->n_think_close++] = e->think_close_id;
	else if (e->tok)
	{
		int32_t    *ids = NULL;
		size_t		n = 0;
		r1_error	ignored;

		/*
		 * no single token: force its spelling (a model without one rarely
		 * closes it anyway)
		 */
		if (r1_tokenizer_encode(e->tok, R1_THINK_CLOSE, strlen(R1_THINK_CLOSE), &ids, &n, &ignored) == 0 &&
			n >= 1 && n <= 8)
		{
			memcpy(e->think_close, ids, sizeof(int32_t) * n);
			e->n_think_close = (int) n;
		}
		free(ids);
	}

	e->ctx = opts->max_ctx > 0 ? opts->max_ctx : 32768;
	if (e->ctx > e->model->cfg.max_position)
		e->ctx = e->model->cfg.max_position;

	if (r1_backend_create(&e->be, e->opts.device, e->model, e->opts.max_seqs, e->ctx,
						  e->opts.threads, e->opts.gpu_memory_fraction,
						  e->note, sizeof(e->note), err) != 0)
		goto fail;
	e->be->batch_invariant = e->opts.batch_invariant ? 1 : 0;
	e->be->max_kv_bytes = e->opts.kv_memory_bytes;
	e->be->cpu_exact = e->opts.cpu_exact ? 1 : 0;
	e->be->kv_dtype = e->opts.kv_cache_dtype;

	e->running = calloc(e->opts.max_seqs, sizeof(sched_req *));
	e->b_slot = calloc(e->opts.max_seqs, sizeof(int));
	e->b_pos = calloc(e->opts.max_seqs, sizeof(int));
	e->b_end = calloc(e->opts.max_seqs, sizeof(int));
	e->b_samp = calloc(e->opts.max_seqs, sizeof(r1_row_sampling));
	e->b_next = calloc(e->opts.max_seqs, sizeof(int32_t));
	e->b_n = calloc(e->opts.max_seqs, sizeof(int));
	e->b_req = calloc(e->opts.max_seqs, sizeof(sched_req *));
	e->logits = malloc(sizeof(float) * (size_t) e->opts.max_seqs * vocab);
	e->sample_scratch = malloc(r1_sampler_scratch_size(vocab));
	if (!e->running || !e->b_slot || !e->b_pos || !e->b_end || !e->b_samp || !e->b_next || !e->b_n || !e->b_req || !e->logits ||
		!e->sample_scratch)
	{
		r1_fail(err, "out of memory creating the engine");
		goto fail;
	}
	e->next_id = 1;
	e->stats.weight_bytes = e->model->weight_bytes;
	*out = e;
	return 0;

fail:
	r1_engine_close(e);
	return -1;
}

static void
req_free(sched_req *r)
{
	if (!r)
		return;
	free(r->prompt);
	free(r->out);
	free(r->text);
	r1_repdet_free(&r->rep);
	free(r);
}

void
r1_engine_close(r1_engine *e)
{
	if (!e)
		return;
	if (e->running)
		for (int i = 0; i < e->opts.max_seqs; i++)
			req_free(e->running[i]);
	for (sched_req *r = e->wait_head, *n; r; r = n)
	{
		n = r->next;
		req_free(r);
	}
	for (sched_req *r = e->done_head, *n; r; r = n)
	{
		n = r->next;
		req_free(r);
	}
	if (e->be)
		e->be->destroy(e->be);
	r1_tokenizer_free(e->tok);
	r1_model_free(e->model);
	free(e->running);
	free(e->b_slot);
	free(e->b_pos);
	free(e->b_end);
	free(e->b_samp);
	free(e->b_next);
	free(e->b_n);
	free(e->b_req);
	free(e->b_tokens);
	free(e->logits);
	free(e->sample_scratch);
	free(e);
}

const r1_model *
r1_engine_model(const r1_engine *e)
{
	return e->model;
}

const r1_tokenizer *
r1_engine_tokenizer(const r1_engine *e)
{
	return e->tok;
}

const char *
r1_engine_device(const r1_engine *e)
{
	return e->be->name;
}

const char *
r1_engine_note(const r1_engine *e)
{
	return e->note;
}

int
r1_engine_ctx(const r1_engine *e)
{
	return e->ctx;
}

int
r1_engine_encode_prompt(r1_engine *e, const char *system, const char *prompt, int raw,
						int32_t **ids, size_t *n_ids, r1_error *err)
{
	char	   *text;
	int			rc;

	*ids = NULL;
	*n_ids = 0;
	if (!e->tok)
		return r1_fail(err, "this model has no tokenizer (tokenizer.json): give token ids instead of text");
	if (raw)
		return r1_tokenizer_encode(e->tok, prompt, strlen(prompt), ids, n_ids, err);
	text = r1_chat_prompt(system, prompt, err);
	if (!text)
		return -1;
	rc = r1_tokenizer_encode(e->tok, text, strlen(text), ids, n_ids, err);
	free(text);
	return rc;
}

int
r1_engine_submit(r1_engine *e, const r1_request *rq, int64_t *id, r1_error *err)
{
	sched_req  *r;
	int			vocab = e->model->cfg.vocab_size;

	if (rq->n_prompt < 1)
		return r1_fail(err, "empty prompt: give at least one token");
	if (rq->n_prompt >= (size_t) e->ctx)
		return r1_fail(err, "prompt too long: %zu tokens do not fit the context of %d (one position must be left to generate)",
					   rq->n_prompt, e->ctx);
	for (size_t i = 0; i < rq->n_prompt; i++)
		if (rq->prompt_ids[i] < 0 || rq->prompt_ids[i] >= vocab)
			return r1_fail(err, "token id %d at prompt position %zu is out of range [0, %d)",
						   rq->prompt_ids[i], i, vocab);
	if (r1_sampling_validate(&rq->sampling, err) != 0)
		return -1;
	if (rq->max_tokens < 1)
		return r1_fail(err, "max_tokens must be >= 1, got %d", rq->max_tokens);
	if (rq->max_think_tokens < 0)
		return r1_fail(err, "max_think_tokens must be >= 0 (0 = no limit), got %d", rq->max_think_tokens);
	if (rq->max_think_tokens > 0 && e->n_think_close == 0)
		return r1_fail(err, "max_think_tokens needs a tokenizer that can spell </think>");
	if (r1_repetition_validate(&rq->repetition, err) != 0)
		return -1;
	if (e->n_waiting + e->n_running >= e->opts.max_queued)
		return r1_fail(err, "queue full: %d requests are queued or running (the limit)", e->opts.max_queued);

	r = r1_calloc(1, sizeof(*r), err);
	if (!r)
		return -1;
	r->prompt = r1_malloc(sizeof(int32_t) * rq->n_prompt, err);
	if (!r->prompt)
	{
		free(r);
		return -1;
	}
	memcpy(r->prompt, rq->prompt_ids, sizeof(int32_t) * rq->n_prompt);
	{
		r1_repetition_opts ro = rq->repetition;

		if (rq->ignore_eos)
			ro.max_span = 0;	/* runs to max_tokens by request */
		if (r1_repdet_init(&r->rep, &ro, err) != 0)
		{
			free(r->prompt);
			free(r);
			return -1;
		}
	}
	r->n_prompt = (int) rq->n_prompt;
	r->sp = rq->sampling;
	r->max_tokens = rq->max_tokens;
	if (r->max_tokens > e->ctx - r->n_prompt)
		r->max_tokens = e->ctx - r->n_prompt;
	r->ignore_eos = rq->ignore_eos;
	r->max_think = rq->max_think_tokens;
	r->share = rq->share_prefill ? 1 : 0;
	if (r->share)
	{
		/* FNV-1a over the ids */
		uint64_t	h = 1469598103934665603ull;

		for (int i = 0; i < r->n_prompt; i++)
			h = (h ^ (uint32_t) r->prompt[i]) * 1099511628211ull;
		r->prompt_hash = h;
	}
	r->deadline_ms = rq->deadline_ms;
	r->user = rq->user;
	r->slot = -1;
	r->id = e->next_id++;
	r->t_submit = r1_now_ms();
	r->state = REQ_WAITING;
	if (e->wait_tail)
		e->wait_tail->next = r;
	else
		e->wait_head = r;
	e->wait_tail = r;
	e->n_waiting++;
	if (id)
		*id = r->id;
	return 0;
}

static void
push_done(r1_engine *e, sched_req *r, r1_finish finish)
{
	r->state = REQ_DONE;
	r->finish = finish;
	r->next = NULL;
	if (e->done_tail)
		e->done_tail->next = r;
	else
		e->done_head = r;
	e->done_tail = r;
	e->stats.requests_done++;
}

/* take a running request out of the batch */
static void
finish_running(r1_engine *e, sched_req *r, r1_finish finish)
{
	e->running[r->slot] = NULL;
	e->be->release_slot(e->be, r->slot);
	r->slot = -1;
	e->n_running--;
	push_done(e, r, finish);
}

int
r1_engine_cancel(r1_engine *e, int64_t id)
{
	for (int i = 0; i < e->opts.max_seqs; i++)
		if (e->running[i] && e->running[i]->id == id)
		{
			finish_running(e, e->running[i], R1_FINISH_CANCELLED);
			return 0;
		}
	for (sched_req *r = e->wait_head, *prev = NULL; r; prev = r, r = r->next)
		if (r->id == id)
		{
			if (prev)
				prev->next = r->next;
			else
				e->wait_head = r->next;
			if (e->wait_tail == r)
				e->wait_tail = prev;
			e->n_waiting--;
			push_done(e, r, R1_FINISH_CANCELLED);
			return 0;
		}
	return -1;
}

int
r1_engine_busy(const r1_engine *e)
{
	return e->n_waiting + e->n_running > 0;
}

static void
expire_deadlines(r1_engine *e)
{
	double		now = r1_now_ms();

	for (int i = 0; i < e->opts.max_seqs; i++)
	{
		sched_req  *r = e->running[i];

		if (r && r->deadline_ms > 0 && now > r->deadline_ms)
			finish_running(e, r, R1_FINISH_TIMEOUT);
	}
	for (sched_req *r = e->wait_head, *prev = NULL, *next; r; r = next)
	{
		next = r->next;
		if (r->deadline_ms > 0 && now > r->deadline_ms)
		{
			if (prev)
				prev->next = next;
			else
				e->wait_head = next;
			if (e->wait_tail == r)
				e->wait_tail = prev;
			e->n_waiting--;
			push_done(e, r, R1_FINISH_TIMEOUT);
		}
		else
			prev = r;
	}
}

static void
admit_waiting(r1_engine *e)
{
	for (int slot = 0; slot < e->opts.max_seqs && e->wait_head; slot++)
	{
		sched_req  *r;

		if (e->running[slot])
			continue;
		r = e->wait_head;
		e->wait_head = r->next;
		if (!e->wait_head)
			e->wait_tail = NULL;
		r->next = NULL;
		e->n_waiting--;
		r->state = REQ_RUNNING;
		r->slot = slot;
		r->n_past = 0;
		e->running[slot] = r;
		e->n_running++;
	}
}

static int
append_token(r1_engine *e, sched_req *r, int32_t id, r1_error *err)
{
	if (r->n_out == r->cap_out)
	{
		int			ncap = r->cap_out ? r->cap_out * 2 : 64;
		int32_t    *p = realloc(r->out, sizeof(int32_t) * ncap);

		if (!p)
			return r1_fail(err, "out of memory storing generated tokens");
		r->out = p;
		r->cap_out = ncap;
	}
	r->out[r->n_out++] = id;
	if (r->n_out == 1)
		r->t_first = r1_now_ms();
	e->stats.tokens_generated++;
	if (e->tok && !(id == e->eos_ids[0] || id == e->eos_ids[1]))
	{
		size_t		before = r->text_len;

		if (r1_detok_push(&r->detok, e->tok, id, &r->text, &r->text_len, &r->text_cap, err) != 0)
			return -1;
		if (!r->think_tokens)
		{
			if (id == e->think_close_id)
				r->think_tokens = r->n_out;
			else if (e->think_close_id < 0)
			{
				/*
				 * no single </think> token: look for the text around the new
				 * bytes
				 */
				size_t		from = before > 8 ? before - 8 : 0;

				if (r->text && strstr(r->text + from, R1_THINK_CLOSE))
					r->think_tokens = r->n_out;
			}
		}
	}
	return 0;
}

/* the token at position p of a request's sequence: prompt, then generated */
static inline int32_t
seq_token(const sched_req *r, int p)
{
	return p < r->n_prompt ? r->prompt[p] : r->out[p - r->n_prompt];
}

/*
 * Positions that must be cached before the request samples again: the
 * prompt, then every generated token (the last one is fed in the step that
 * samples the next).  A preempted request restarts at n_past 0 and catches
 * up through prefill chunks.
 */
static inline int
seq_target(const sched_req *r)
{
	return r->n_prompt + r->n_out;
}

/* the youngest running request (the highest id), holding cache if holding */
static sched_req *
youngest_running(r1_engine *e, int holding)
{
	sched_req  *y = NULL;

	for (int slot = 0; slot < e->opts.max_seqs; slot++)
	{
		sched_req  *r = e->running[slot];

		if (r && (!holding || r->n_past > 0) && (!y || r->id > y->id))
			y = r;
	}
	return y;
}

/* free r's KV cache and put it first in the queue, to recompute when it fits */
static void
preempt(r1_engine *e, sched_req *r)
{
	e->running[r->slot] = NULL;
	e->be->release_slot(e->be, r->slot);
	r->slot = -1;
	r->n_past = 0;
	e->n_running--;
	r->state = REQ_WAITING;
	r->next = e->wait_head;
	e->wait_head = r;
	if (!e->wait_tail)
		e->wait_tail = r;
	e->n_waiting++;
	e->stats.preemptions++;
}

/*
 * share_prefill: a sharing request that has cached nothing yet either copies
 * the prompt's cache from a running sharer of the same prompt that has it
 * (all positions but the last: it feeds that one to get its own logits), or
 * waits while an older sharer of the same prompt is still prefilling.
 * Returns 1 when r should sit this step out; 0 to go on (copied or not).
 * n is the number of sequences already in this step's batch (kv_fits).
 */
static int
share_prefill(r1_engine *e, sched_req *r, int n)
{
	int			len = r->n_prompt - 1;
	int			wait = 0;
	r1_error	err;

	if (!r->share || r->n_past != 0 || r->n_out != 0 || len < 1 || !e->be->copy_kv)
		return 0;
	for (int slot = 0; slot < e->opts.max_seqs; slot++)
	{
		sched_req  *d = e->running[slot];

		if (!d || d == r || !d->share || d->prompt_hash != r->prompt_hash ||
			d->n_prompt != r->n_prompt || memcmp(d->prompt, r->prompt, sizeof(int32_t) * r->n_prompt) != 0)
			continue;
		if (d->n_past >= len)
		{
			/* room for the copy and this step's token, with the batch so far */
			e->b_slot[n] = r->slot;
			e->b_end[n] = r->n_prompt;
			if (!e->be->kv_fits(e->be, n + 1, e->b_slot, e->b_end))
				return 0;		/* the usual path makes it wait */
			if (e->be->copy_kv(e->be, d->slot, r->slot, len, &err) != 0)
				return 0;		/* computes its own prompt */
			r->n_past = len;
			e->stats.prefill_shared += len;
			return 0;
		}
		if (d->id < r->id)
			wait = 1;			/* an older sharer is prefilling: wait for its
								 * cache */
	}
	return wait;
}

int
r1_engine_step(r1_engine *e, r1_error *err)
{
	int			n = 0,
				T = 0,
				prefill_budget = e->opts.prefill_chunk;

	expire_deadlines(e);
	admit_waiting(e);
	if (e->n_running == 0)
		return 0;

	/*
	 * gather: decode tokens first, then prompt (or recompute) chunks within
	 * the budget; a sequence whose tokens the KV cache cannot take now waits
	 */
	for (int pass = 0; pass < 2; pass++)
		for (int slot = 0; slot < e->opts.max_seqs; slot++)
		{
			sched_req  *r = e->running[slot];
			int			pending,
						take;

			if (!r)
				continue;
			if (pass == 1 && share_prefill(e, r, n))
				continue;
			pending = seq_target(r) - r->n_past;
			if (pass == 0 && pending == 1 && r->n_out > 0)
				take = 1;
			else if (pass == 1 && !(pending == 1 && r->n_out > 0) && prefill_budget > 0)
			{
				take = pending;
				if (take > prefill_budget)
					take = prefill_budget;
			}
			else
				continue;
			e->b_slot[n] = slot;
			e->b_end[n] = r->n_past + take;
			if (!e->be->kv_fits(e->be, n + 1, e->b_slot, e->b_end))
				continue;		/* waits for room */
			if (pass == 1)
				prefill_budget -= take;
			if (T + take > e->b_tokens_cap)
			{
				int			ncap = (T + take) * 2;
				int32_t    *p = realloc(e->b_tokens, sizeof(int32_t) * ncap);

				if (!p)
					return r1_fail(err, "out of memory building a batch");
				e->b_tokens = p;
				e->b_tokens_cap = ncap;
			}
			for (int i = 0; i < take; i++)
				e->b_tokens[T + i] = seq_token(r, r->n_past + i);
			e->b_pos[n] = r->n_past;
			e->b_n[n] = take;
			e->b_req[n] = r;
			T += take;
			n++;
		}

	/*
	 * Nothing fits: give the youngest holder's cache back to the others; when
	 * no other sequence holds cache, the youngest cannot fit at all and
	 * fails.
	 */
	if (n == 0)
	{
		sched_req  *y = youngest_running(e, 1);
		int			holders = 0;

		for (int slot = 0; slot < e->opts.max_seqs; slot++)
			holders += e->running[slot] != NULL && e->running[slot]->n_past > 0;

		/*
		 * Preempting helps only when another sequence holds cache too: a sole
		 * holder that cannot take its next step has the whole cache already,
		 * so it can never fit (preempting it would let another sequence fill
		 * the cache to the same wall, and the two would take turns forever).
		 */
		if (y && holders > 1)
			preempt(e, y);
		else
		{
			y = y ? y : youngest_running(e, 0);
			snprintf(y->error, sizeof(y->error),
					 "the KV cache cannot hold this sequence (%d positions) even alone: "
					 "raise --kv-memory (CPU) or --gpu-memory-fraction (CUDA), or lower max_tokens",
					 seq_target(y));
			finish_running(e, y, R1_FINISH_ERROR);
		}
		return 0;
	}

	{
		r1_batch	batch = {n, e->b_slot, e->b_pos, e->b_n, e->b_tokens, 0, NULL, NULL, 0};

		if (e->be->can_sample)
		{
			/* the backend picks the tokens: only the ids come back */
			for (int i = 0; i < n; i++)
			{
				e->b_samp[i].sp = e->b_req[i]->sp;
				e->b_samp[i].position = (uint64_t) (e->b_req[i]->n_prompt + e->b_req[i]->n_out);
			}
			batch.sample = e->b_samp;
			batch.next = e->b_next;
			batch.sample_vocab = e->sample_vocab;
		}
		if (e->be->forward(e->be, &batch, e->logits, err) != 0)
		{
			for (int i = 0; i < n; i++)
			{
				snprintf(e->b_req[i]->error, sizeof(e->b_req[i]->error), "%s", err->msg);
				finish_running(e, e->b_req[i], R1_FINISH_ERROR);
			}
			return -1;
		}
	}

	for (int i = 0; i < n; i++)
	{
		sched_req  *r = e->b_req[i];
		const float *row = e->logits + (size_t) i * e->model->cfg.vocab_size;
		int32_t		next;
		int			was_prefill = r->n_past < r->n_prompt;

		r->n_past += e->b_n[i];
		if (was_prefill)
			e->stats.prompt_tokens += e->b_n[i];
		if (r->n_past < seq_target(r))
			continue;			/* more prompt to go: this row's logits are
								 * unused */
		/* the position of the token being chosen keys its random draw */
		next = e->be->can_sample ? e->b_next[i]
			: r1_sample(row, e->sample_vocab, &r->sp, (uint64_t) (r->n_prompt + r->n_out), e->sample_scratch);

		/*
		 * think budget spent without </think>: close it ourselves, one token
		 * a step
		 */
		if (r->max_think > 0 && !r->think_tokens && r->n_out - r->forced >= r->max_think &&
			r->forced < e->n_think_close)
			next = e->think_close[r->forced++];
		if (append_token(e, r, next, err) != 0)
		{
			snprintf(r->error, sizeof(r->error), "%s", err->msg);
			finish_running(e, r, R1_FINISH_ERROR);
			continue;
		}
		if (!r->ignore_eos && (next == e->eos_ids[0] || next == e->eos_ids[1]))
			finish_running(e, r, r->forced ? R1_FINISH_THINK_BUDGET : R1_FINISH_STOP);
		else if ((r->rep_span = r1_repdet_push(&r->rep, r->out, r->n_out)) > 0)
		{
			e->stats.repetitions++;
			finish_running(e, r, R1_FINISH_REPETITION);
		}
		else if (r->n_out >= r->max_tokens)
			finish_running(e, r, R1_FINISH_LENGTH);
	}
	return 0;
}

int
r1_engine_poll(r1_engine *e, r1_completion *c)
{
	sched_req  *r = e->done_head;
	r1_error	err;

	memset(c, 0, sizeof(*c));
	if (!r)
		return 0;
	e->done_head = r->next;
	if (!e->done_head)
		e->done_tail = NULL;

	if (e->tok)
		r1_detok_flush(&r->detok, &r->text, &r->text_len, &r->text_cap, &err);
	c->id = r->id;
	c->user = r->user;
	c->finish = r->finish;
	c->finish_reason = r1_finish_name(r->finish);
	c->think_budget_hit = r->forced > 0;
	c->repetition_span = r->rep_span;
	memcpy(c->error, r->error, sizeof(c->error));
	c->text = r->text ? r->text : calloc(1, 1);
	c->text_len = r->text_len;
	r->text = NULL;
	c->ids = r->out;
	c->n_ids = r->n_out;
	r->out = NULL;
	c->prompt_tokens = r->n_prompt;
	c->completion_tokens = r->n_out;
	c->think_tokens = r->think_tokens ? r->think_tokens : r->n_out;
	c->ms = r1_now_ms() - r->t_submit;
	c->ttft_ms = r->n_out ? r->t_first - r->t_submit : 0;
	if (c->text && r1_split_think(c->text, &c->think, &c->answer, &err) == 0 && c->answer)
		c->boxed = r1_extract_boxed(c->answer);
	req_free(r);
	return 1;
}

void
r1_completion_free(r1_completion *c)
{
	free(c->text);
	free(c->think);
	free(c->answer);
	free(c->boxed);
	free(c->ids);
	memset(c, 0, sizeof(*c));
}

void
r1_engine_stats_get(const r1_engine *e, r1_engine_stats *s)
{
	*s = e->stats;
	s->waiting = e->n_waiting;
	s->running = e->n_running;
	s->memory_used = e->be->memory_used(e->be);
}

static void
progress_of(const sched_req *r, double now, r1_progress *p)
{
	double		gen_ms = r->t_first > 0 ? now - r->t_first : 0;

	p->prompt_tokens = r->n_prompt;
	p->completion_tokens = r->n_out;
	/* the first token ends the prefill: rate over the tokens after it */
	p->tokens_per_s = gen_ms > 0 && r->n_out > 1 ? (r->n_out - 1) * 1000.0 / gen_ms : 0;
	p->ms = now - r->t_submit;
}

int
r1_engine_progress(const r1_engine *e, int64_t id, r1_progress *p)
{
	double		now = r1_now_ms();
	int			pos = 0;

	memset(p, 0, sizeof(*p));
	for (int i = 0; i < e->opts.max_seqs; i++)
		if (e->running[i] && e->running[i]->id == id)
		{
			p->running = 1;
			progress_of(e->running[i], now, p);
			return 0;
		}
	for (const sched_req *r = e->wait_head; r; r = r->next)
	{
		pos++;
		if (r->id == id)
		{
			progress_of(r, now, p);
			p->queue_position = pos;
			return 0;
		}
	}
	return -1;
}

int
r1_engine_run(r1_engine *e, const r1_request *req_in, r1_completion *c, r1_error *err)
{
	int64_t		id;

	memset(c, 0, sizeof(*c));
	if (r1_engine_submit(e, req_in, &id, err) != 0)
		return -1;
	for (int failed = 0;; failed = r1_engine_step(e, err) != 0)
	{
		r1_completion got;

		while (r1_engine_poll(e, &got))
		{
			if (got.id == id)
			{
				*c = got;
				if (c->finish == R1_FINISH_ERROR)
					return r1_fail(err, "%s", c->error);
				return 0;
			}
			r1_completion_free(&got);
		}
		if (failed)
		{
			r1_engine_cancel(e, id);	/* a step failed before it reached
										 * this request */
			return -1;
		}
	}
}

int
r1_engine_forward(r1_engine *e, const r1_batch *batch, float *logits, r1_error *err)
{
	int			rc;

	if (e->n_running > 0)
		return r1_fail(err, "raw forward passes need an idle engine");
	rc = e->be->forward(e->be, batch, logits, err);
	for (int i = 0; i < batch->n_seqs; i++)
		if (batch->slot[i] >= 0 && batch->slot[i] < e->opts.max_seqs)
			e->be->release_slot(e->be, batch->slot[i]);
	return rc;
}
