/*
 * prepare.c - the engine host's requests: parse one (JSON), check its
 * parameters, tokenize its text (the chat template included) and leave the
 * outcome in its r1_prep: a response to send (a tokenize result, an error),
 * a generate request to submit, or an op for the loop (status, activity).
 * Runs on the loop for small requests and on a pool thread for large ones
 * (server.c): it reads only what is read-only after loading (the tokenizer,
 * the context size) and watches the request's cancel flag.
 */
#define _GNU_SOURCE
#include "serve_int.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "chat.h"
#include "util.h"

/* ---- responses ---- */

/*
 * A JSON string for possibly invalid UTF-8 (a think trace cut off by
 * max_tokens may end inside a character): invalid bytes and NULs (which SQL
 * text cannot hold) become U+FFFD.
 */
json_t *
r1_srv_json_text(const char *s, size_t len)
{
	char	   *buf;
	size_t		o = 0;
	json_t	   *j;

	if (s == NULL)
		return json_null();
	if (memchr(s, 0, len) == NULL && r1_utf8_valid(s, len))
		return json_stringn(s, len);
	buf = malloc(len * 3 + 1);
	if (!buf)
		return NULL;
	for (size_t i = 0; i < len;)
	{
		unsigned char c = (unsigned char) s[i];
		size_t		n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;

		if (n > 0 && i + n <= len && c != 0 && r1_utf8_valid(s + i, n))
		{
			memcpy(buf + o, s + i, n);
			o += n;
			i += n;
		}
		else
		{
			memcpy(buf + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i += 1;
		}
	}
	j = json_stringn(buf, o);
	free(buf);
	return j;
}

/*
 * "options": the engine options the detail and the hint name (protocol.h),
 * so that a client can name them its own way.
 */
static void
r1_srv_error_options(json_t *o, const char *detail, const char *hint)
{
	json_t	   *options = NULL;
	const char *name,
			   *spelling;

	for (int i = 0; r1_proto_option(i, &name, &spelling); i++)
	{
		if (!(detail && strstr(detail, spelling)) && !(hint && strstr(hint, spelling)))
			continue;
		if (!options)
			options = json_array();
		json_array_append_new(options, json_string(name));
	}
	if (options)
		json_object_set_new(o, "options", options);
}

json_t *
r1_srv_error_json(const char *code, const char *error, const char *detail, const char *hint)
{
	json_t	   *o = json_object();

	json_object_set_new(o, "ok", json_false());
	json_object_set_new(o, "code", json_string(code));
	json_object_set_new(o, "error", r1_srv_json_text(error, strlen(error)));
	if (detail)
		json_object_set_new(o, "detail", r1_srv_json_text(detail, strlen(detail)));
	if (hint)
		json_object_set_new(o, "hint", json_string(hint));
	r1_srv_error_options(o, detail, hint);
	return o;
}

/* A failed preparation: the response is this error. */
void
r1_prep_fail(r1_prep *p, const char *code, const char *error, const char *detail, const char *hint)
{
	json_decref(p->response);
	p->response = r1_srv_error_json(code, error, detail, hint);
}

/* ---- requests ---- */

static int
r1_srv_get_number(json_t *req, const char *key, double *out)
{
	json_t	   *v = json_object_get(req, key);

	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return -1;
	*out = json_number_value(v);
	return 1;
}

/* An encoding error: the client went away (the loop stops reading it), or bad text. */
static void
r1_prep_encode_failed(r1_prep *p, const r1_error *err)
{
	if (__atomic_load_n(&p->cancel, __ATOMIC_RELAXED))
		r1_prep_fail(p, R1_SQLSTATE_CANCELED, "r1 request was cancelled", NULL, NULL);
	else
		r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, err->msg, NULL, NULL);
}

static void
r1_srv_prepare_tokenize(r1_server *srv, r1_prep *p, json_t *req)
{
	const r1_tokenizer *tok = r1_engine_tokenizer(srv->engine);
	json_t	   *text = json_object_get(req, "text");
	r1_encode_opts opts = {.parse_special = json_is_true(json_object_get(req, "parse_special")),
	.cancel = &p->cancel};
	int32_t    *ids = NULL;
	size_t		n = 0;
	r1_error	err;
	json_t	   *o;

	if (!json_is_string(text))
	{
		r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, "\"text\" must be a string", NULL, NULL);
		return;
	}
	if (tok == NULL)
	{
		r1_prep_fail(p, R1_SQLSTATE_NOT_READY, "the served model has no tokenizer",
					 "Neither the checkpoint directory (tokenizer.json) nor the GGUF file (tokenizer.ggml.*) holds one.",
					 "Serve a model with a tokenizer: r1 convert --tokenizer-from DIR writes it into a GGUF file.");
		return;
	}
	if (r1_tokenizer_encode_opts(tok, json_string_value(text), json_string_length(text), &opts,
								 &ids, &n, &err) != 0)
	{
		r1_prep_encode_failed(p, &err);
		return;
	}
	o = json_object();
	json_object_set_new(o, "ok", json_true());
	if (json_is_true(json_object_get(req, "count_only")))
		json_object_set_new(o, "n", json_integer((json_int_t) n));
	else
	{
		json_t	   *arr = json_array();

		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, json_integer(ids[i]));
		json_object_set_new(o, "ids", arr);
	}
	free(ids);
	p->response = o;
}

/* Append src[0..n) to *dst (realloc'd), consuming src. */
static int
r1_ids_append(int32_t **dst, size_t *n_dst, int32_t *src, size_t n, r1_error *err)
{
	int32_t    *d = realloc(*dst, sizeof(int32_t) * (*n_dst + n + 1));

	if (!d)
	{
		free(src);
		return r1_fail(err, "out of memory encoding the prompt");
	}
	memcpy(d + *n_dst, src, sizeof(int32_t) * n);
	*dst = d;
	*n_dst += n;
	free(src);
	return 0;
}

/*
 * The prompt's ids.  raw: the prompt alone.  Otherwise the chat template
 * (chat.h).  With parse_special the template and the texts are encoded as
 * one string, as `r1 generate` does; without it (the default) only the
 * template's own pieces are parsed for added tokens and the system and
 * prompt texts are encoded as text, so a <｜User｜> or </think> in them
 * cannot fake a turn.  Encoding the pieces apart gives the same ids as the
 * whole string for texts without added tokens: added tokens split the text
 * into pieces that are encoded apart anyway.
 */
static int
r1_srv_encode_prompt(const r1_tokenizer *tok, const char *system, const char *prompt, int raw,
					 const r1_encode_opts *opts, int32_t **ids, size_t *n_ids, r1_error *err)
{
	r1_encode_opts tmpl;
	const char *pieces[6];
	int			user_text[6];
	int			n_pieces = 0;

	/* the template's own pieces: their added tokens are parsed */
	memset(&tmpl, 0, sizeof(tmpl));
	tmpl.parse_special = 1;
	tmpl.cancel = opts->cancel;
	*ids = NULL;
	*n_ids = 0;
	if (raw)
		return r1_tokenizer_encode_opts(tok, prompt, strlen(prompt), opts, ids, n_ids, err);
	if (opts->parse_special)
	{
		char	   *text = r1_chat_prompt(system, prompt, err);
		int			rc;

		if (!text)
			return -1;
		rc = r1_tokenizer_encode_opts(tok, text, strlen(text), opts, ids, n_ids, err);
		free(text);
		return rc;
	}
#define R1_PIECE(s, user) (pieces[n_pieces] = (s), user_text[n_pieces++] = (user))
	R1_PIECE(R1_BOS_TOKEN, 0);
	if (system)
		R1_PIECE(system, 1);
	R1_PIECE(R1_USER_TOKEN, 0);
	R1_PIECE(prompt, 1);
	R1_PIECE(R1_ASSISTANT_TOKEN R1_THINK_OPEN "\n", 0);
#undef R1_PIECE
	for (int i = 0; i < n_pieces; i++)
	{
		int32_t    *part = NULL;
		size_t		n = 0;

		if (r1_tokenizer_encode_opts(tok, pieces[i], strlen(pieces[i]), user_text[i] ? opts : &tmpl,
									 &part, &n, err) != 0 ||
			r1_ids_append(ids, n_ids, part, n, err) != 0)
		{
			free(*ids);
			*ids = NULL;
			*n_ids = 0;
			return -1;
		}
	}
	return 0;
}

/*
 * Loop detection (repetition_max_span, repetition_min_repeats,
 * repetition_min_tokens: the defaults of repetition.h when absent;
 * repetition_max_span 0 turns it off).  0, or -1 after an error response.
 */
static int
r1_srv_repetition_params(r1_prep *p, json_t *req, r1_request *r)
{
	static const char *const keys[3] = {"repetition_max_span", "repetition_min_repeats",
	"repetition_min_tokens"};
	int		   *fields[3] = {&r->repetition.max_span, &r->repetition.min_repeats,
	&r->repetition.min_tokens};
	r1_error	err;

	r1_repetition_defaults(&r->repetition);
	for (int i = 0; i < 3; i++)
	{
		double		v;
		int			got = r1_srv_get_number(req, keys[i], &v);

		if (got < 0 || (got > 0 && (v != (double) (int) v || v < 0 || v > 1e9)))
		{
			r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, "repetition parameters must be integers >= 0", NULL, NULL);
			return -1;
		}
		if (got > 0)
			*fields[i] = (int) v;
	}
	if (r1_repetition_validate(&r->repetition, &err) != 0)
	{
		r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, err.msg, NULL, NULL);
		return -1;
	}
	return 0;
}

/* Check a generate request and encode its prompt (any thread). */
static void
r1_srv_prepare_generate(r1_server *srv, r1_prep *p, json_t *req)
{
	json_t	   *prompt = json_object_get(req, "prompt");
	json_t	   *system = json_object_get(req, "system");
	r1_request	r;
	double		v;
	int32_t    *ids = NULL;
	size_t		n_ids = 0;
	int			ctx = r1_engine_ctx(srv->engine);
	r1_encode_opts opts = {.parse_special = json_is_true(json_object_get(req, "parse_special")),
	.cancel = &p->cancel};
	r1_error	err;
	char		detail[256];

	memset(&r, 0, sizeof(r));
	r1_sampling_defaults(&r.sampling);
	if (!json_is_string(prompt))
	{
		r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, "\"prompt\" must be a string", NULL, NULL);
		return;
	}
	if (system != NULL && !json_is_null(system) && !json_is_string(system))
	{
		r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, "\"system\" must be a string or null", NULL, NULL);
		return;
	}
	if (json_string_length(prompt) + (json_is_string(system) ? json_string_length(system) : 0) > R1_PROTO_MAX_PROMPT)
	{
		r1_prep_fail(p, R1_SQLSTATE_TOO_LONG, "prompt is too long", "Prompts are limited to 16 MB.", NULL);
		return;
	}

	r.max_tokens = ctx;
	if (r1_srv_get_number(req, "max_tokens", &v) < 0 ||
		r1_srv_get_number(req, "temperature", &v) < 0 ||
		r1_srv_get_number(req, "top_p", &v) < 0 ||
		r1_srv_get_number(req, "top_k", &v) < 0 ||
		r1_srv_get_number(req, "min_p", &v) < 0 ||
		r1_srv_get_number(req, "max_think_tokens", &v) < 0 ||
		r1_srv_get_number(req, "timeout_ms", &v) < 0 ||
		r1_srv_get_number(req, "queue_timeout_ms", &v) < 0)
	{
		r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, "sampling parameters must be numbers", NULL, NULL);
		return;
	}
	if (r1_srv_get_number(req, "max_tokens", &v) > 0)
	{
		if (!(v >= 1))
		{
			r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, "max_tokens must be at least 1", NULL, NULL);
			return;
		}
		r.max_tokens = v > 1e9 ? 1000000000 : (int) v;
	}
	if (r1_srv_get_number(req, "max_think_tokens", &v) > 0)
	{
		if (!(v >= 1))
		{
			r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, "max_think_tokens must be at least 1", NULL, NULL);
			return;
		}
		r.max_think_tokens = v > 1e9 ? 1000000000 : (int) v;
	}
	if (r1_srv_repetition_params(p, req, &r) != 0)
		return;
	if (r1_srv_get_number(req, "temperature", &v) > 0)
		r.sampling.temperature = (float) v;
	if (r1_srv_get_number(req, "top_p", &v) > 0)
		r.sampling.top_p = (float) v;
	if (r1_srv_get_number(req, "top_k", &v) > 0)
		r.sampling.top_k = v > 1e9 ? 1000000000 : v < -1 ? -1 : (int) v;
	if (r1_srv_get_number(req, "min_p", &v) > 0)
		r.sampling.min_p = (float) v;
	if (r1_sampling_validate(&r.sampling, &err) != 0)
	{
		r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, err.msg, NULL, NULL);
		return;
	}
	if (json_is_integer(json_object_get(req, "seed")))
		r.sampling.seed = (uint64_t) json_integer_value(json_object_get(req, "seed"));
	else if (getrandom(&r.sampling.seed, sizeof(r.sampling.seed), 0) != sizeof(r.sampling.seed))
		r.sampling.seed = (uint64_t) (r1_now_ms() * 1000.0) ^ ((uint64_t) getpid() << 32);
	r.ignore_eos = json_is_true(json_object_get(req, "ignore_eos"));
	r.share_prefill = json_is_true(json_object_get(req, "share_prefill"));
	if (json_object_get(req, "tag") != NULL && !json_is_null(json_object_get(req, "tag")))
	{
		json_t	   *tag = json_object_get(req, "tag");

		if (!json_is_string(tag) || json_string_length(tag) >= sizeof(p->tag))
		{
			r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, "\"tag\" must be a string of at most 63 bytes", NULL, NULL);
			return;
		}
		memcpy(p->tag, json_string_value(tag), json_string_length(tag) + 1);
	}
	if (r1_srv_get_number(req, "timeout_ms", &v) > 0 && v > 0)
		r.deadline_ms = r1_now_ms() + v;
	if (r1_srv_get_number(req, "queue_timeout_ms", &v) > 0 && v > 0)
		p->queue_timeout_ms = v;

	if (r1_engine_tokenizer(srv->engine) == NULL)
	{
		/*
		 * e.g. a GGUF written by `r1 convert --random-weights` without
		 * --tokenizer-from
		 */
		r1_prep_fail(p, R1_SQLSTATE_NOT_READY, "the served model has no tokenizer, so it cannot take text prompts",
					 "Neither the checkpoint directory (tokenizer.json) nor the GGUF file (tokenizer.ggml.*) holds one.",
					 "Serve a model with a tokenizer: r1 convert --tokenizer-from DIR writes it into a GGUF file.");
		return;
	}

	/*
	 * hopeless without tokenizing (seconds for megabytes): too many bytes for
	 * the context
	 */
	{
		size_t		len = json_string_length(prompt) + (json_is_string(system) ? json_string_length(system) : 0);
		size_t		most = r1_tokenizer_max_token_bytes(r1_engine_tokenizer(srv->engine));

		if (most > 0 && len / (3 * most) >= (size_t) ctx)
		{
			snprintf(detail, sizeof(detail),
					 "The prompt has %zu bytes, so at least %zu tokens; the context holds %d, including the generated tokens.",
					 len, len / (3 * most), ctx);
			r1_prep_fail(p, R1_SQLSTATE_TOO_LONG, "prompt is too long for the model's context", detail,
						 "Shorten the prompt, or raise --max-ctx if the model allows a longer context.");
			return;
		}
	}
	if (r1_srv_encode_prompt(r1_engine_tokenizer(srv->engine),
							 json_is_string(system) ? json_string_value(system) : NULL,
							 json_string_value(prompt),
							 json_is_true(json_object_get(req, "raw")),
							 &opts, &ids, &n_ids, &err) != 0)
	{
		r1_prep_encode_failed(p, &err);
		return;
	}
	if (n_ids == 0)
	{
		free(ids);
		r1_prep_fail(p, R1_SQLSTATE_INVALID_PARAMETER, "prompt is empty", NULL, NULL);
		return;
	}
	if (n_ids >= (size_t) ctx)
	{
		snprintf(detail, sizeof(detail),
				 "The prompt has %zu tokens; the context holds %d, including the generated tokens.",
				 n_ids, ctx);
		free(ids);
		r1_prep_fail(p, R1_SQLSTATE_TOO_LONG, "prompt is too long for the model's context", detail,
					 "Shorten the prompt, or raise --max-ctx if the model allows a longer context.");
		return;
	}
	r.prompt_ids = ids;
	r.n_prompt = n_ids;
	p->req = r;
	p->ids = ids;
	p->submit = 1;
}

/* Parse a request and do the work that needs no engine state (any thread). */
void
r1_srv_prepare(r1_server *srv, r1_prep *p)
{
	json_error_t jerr;
	json_t	   *req = json_loadb(p->in, p->in_len, 0, &jerr);
	const char *op;

	free(p->in);
	p->in = NULL;
	if (req == NULL || !json_is_object(req))
	{
		json_decref(req);
		r1_prep_fail(p, R1_SQLSTATE_PROTOCOL, "malformed request", jerr.text, NULL);
		return;
	}
	op = json_string_value(json_object_get(req, "op"));
	if (op == NULL)
		r1_prep_fail(p, R1_SQLSTATE_PROTOCOL, "request has no \"op\"", NULL, NULL);
	else if (strcmp(op, "generate") == 0)
		r1_srv_prepare_generate(srv, p, req);
	else if (strcmp(op, "tokenize") == 0)
		r1_srv_prepare_tokenize(srv, p, req);
	else
	{
		p->loop_req = req;		/* status, activity: the engine's state */
		return;
	}
	json_decref(req);
}
