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

/*
 * A model's tokenizer (tokenizer_load.c): DIR/tokenizer.json (and
 * DIR/tokenizer_config.json for bos/eos, when present), or, when path is a
 * GGUF file, the tokenizer stored in its metadata (tokenizer_gguf.c).
 */
int			r1_tokenizer_load(r1_tokenizer **out, const char *path, r1_error *err);

/* The Hugging Face form alone: DIR/tokenizer.json (+ tokenizer_config.json). */
int			r1_tokenizer_load_dir(r1_tokenizer **out, const char *dir, r1_error *err);

/*
 * A tokenizer from its parts, the one constructor both loaders use: the
 * vocabulary (byte-level token strings and their ids), the merges in rank
 * order, the added tokens, the normalisation and pre-tokenizer splits.
 */
typedef struct r1_tok_str
{
	const char *s;
	size_t		len;
	int32_t		id;				/* vocabulary entries only */
} r1_tok_str;

typedef struct r1_tok_added
{
	const char *content;
	size_t		len;
	int32_t		id;
	int			special,
				lstrip,
				rstrip,
				single_word,
				normalized;
} r1_tok_added;

typedef struct r1_tok_def
{
	const char *what;			/* the source, for error messages */
	const r1_tok_str *vocab;
	size_t		n_vocab;
	const r1_tok_str *merge_a;	/* merge i joins merge_a[i] and merge_b[i] */
	const r1_tok_str *merge_b;
	size_t		n_merges;
	const r1_tok_added *added;
	size_t		n_added;
	int			nfc;			/* NFC-normalise text before splitting */
	int			ignore_merges;
	const char *const *split_regex; /* PCRE2 patterns, applied in order,
									 * behaviour Isolated */
	int			n_split;
	int32_t		bos_id,
				eos_id;			/* -1 when unknown */
} r1_tok_def;

int			r1_tokenizer_create(r1_tokenizer **out, const r1_tok_def *def, r1_error *err);

/* The Qwen2 / DeepSeek-R1-Distill-Qwen pre-tokenizer split regex. */
extern const char r1_qwen2_split_regex[];

/* The Llama 3 / DeepSeek-R1-Distill-Llama one (digits in groups of up to 3). */
extern const char r1_llama3_split_regex[];

/* The GGUF loader (tokenizer_gguf.c). */
int			r1_tokenizer_load_gguf(r1_tokenizer **out, const char *path, r1_error *err);
void		r1_tokenizer_free(r1_tokenizer *tok);

/*
 * Encode UTF-8 text (len bytes, need not be NUL-terminated) into ids; no
 * special tokens are added, but added tokens that occur in the text are
 * recognised.  Invalid UTF-8 is an error.  *ids is malloc'd; free() it.
 * Same as r1_tokenizer_encode_opts with parse_special = 1.
 */
int			r1_tokenizer_encode(const r1_tokenizer *tok, const char *text, size_t len,
								int32_t **ids, size_t *n_ids, r1_error *err);

typedef struct r1_encode_opts
{
	/*
	 * 1: added tokens in the text (<｜User｜>, </think>,
	 * <｜begin▁of▁sentence｜>, ...) become their ids, as Hugging Face's
	 * encode() does.  0: the text is only text, every added token is spelt
	 * with ordinary tokens (stricter than the library's split_special_tokens,
	 * which skips only tokens marked "special": the chat-turn tokens of these
	 * models are not marked).  Text from users is encoded with 0, so it
	 * cannot fake a chat turn.
	 */
	int			parse_special;

	/*
	 * When not NULL: another thread may set *cancel to non-zero (with
	 * __atomic_store_n) and encoding stops soon after, failing with
	 * R1_ENCODE_CANCELLED as the message.  Checked between pre-tokens and
	 * every few thousand BPE merges, so a 16 MB text stops within
	 * milliseconds.
	 */
	const int  *cancel;
} r1_encode_opts;

#define R1_ENCODE_CANCELLED "encoding was cancelled"

int			r1_tokenizer_encode_opts(const r1_tokenizer *tok, const char *text, size_t len,
									 const r1_encode_opts *opts,
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

/*
 * The most bytes of text one id stands for (a vocabulary token or an added
 * token's content): a text of L bytes has at least L / (3 * this) tokens (NFC
 * shortens text at most 3 to 1, Hangul jamo to a syllable).
 */
size_t		r1_tokenizer_max_token_bytes(const r1_tokenizer *tok);

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
