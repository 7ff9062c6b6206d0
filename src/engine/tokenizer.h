/*
 * tokenizer.h - byte-level BPE exactly as Hugging Face `tokenizers` runs the
 * Qwen2 / DeepSeek-R1-Distill-Qwen tokenizer.json: NFC normalisation, the Qwen2
 * pre-tokenizer split regex, added (special) tokens matched before BPE.
 */
#ifndef R1_TOKENIZER_H
#define R1_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct r1_tokenizer r1_tokenizer;

/* Load DIR/tokenizer.json (and DIR/tokenizer_config.json for bos/eos, when present). */
int			r1_tokenizer_load(r1_tokenizer **out, const char *dir, r1_error *err);
void		r1_tokenizer_free(r1_tokenizer *tok);

/*
 * Encode UTF-8 text (len bytes, need not be NUL-terminated) into ids; no
 * special tokens are added, but added tokens that occur in the text are
 * recognised.  Invalid UTF-8 is an error.  *ids is malloc'd; free() it.
 */
int			r1_tokenizer_encode(const r1_tokenizer *tok, const char *text, size_t len,
								int32_t **ids, size_t *n_ids, r1_error *err);

/*
 * Decode ids into the bytes they stand for (added tokens as their content).
 * The result is NUL-terminated and malloc'd; it is valid UTF-8 unless the ids
 * split a character.  An id out of range is an error.
 */
int			r1_tokenizer_decode(const r1_tokenizer *tok, const int32_t *ids, size_t n_ids,
								char **text, size_t *len, r1_error *err);

/* The raw bytes one id decodes to (not NUL-terminated); NULL if out of range. */
const char *r1_tokenizer_token_bytes(const r1_tokenizer *tok, int32_t id, size_t *len);

/* Id of an exact token string (vocabulary or added token), or -1. */
int32_t		r1_tokenizer_token_id(const r1_tokenizer *tok, const char *token);

/* Number of ids (vocabulary plus added tokens: highest id + 1). */
int32_t		r1_tokenizer_n_tokens(const r1_tokenizer *tok);

/* bos/eos ids from tokenizer_config.json, or -1 when unknown. */
int32_t		r1_tokenizer_bos_id(const r1_tokenizer *tok);
int32_t		r1_tokenizer_eos_id(const r1_tokenizer *tok);

/*
 * Streaming decode: feed one id at a time and receive only complete UTF-8
 * characters; bytes of a character split across ids are held back until it is
 * complete.  r1_detok_flush emits what is left.
 */
typedef struct r1_detok
{
	char		pending[8];		/* bytes of an unfinished UTF-8 character */
	int			n_pending;
} r1_detok;

/*
 * Appends the decodable bytes to *buf (realloc'd; len and cap updated;
 * NUL-terminated).  A byte run that can never become a valid character is
 * emitted as U+FFFD, and flush turns an unfinished tail into U+FFFD, so the
 * streamed text is always valid UTF-8.
 */
int			r1_detok_push(r1_detok *st, const r1_tokenizer *tok, int32_t id,
						  char **buf, size_t *len, size_t *cap, r1_error *err);
int			r1_detok_flush(r1_detok *st, char **buf, size_t *len, size_t *cap, r1_error *err);

#endif							/* R1_TOKENIZER_H */
