/*
 * tokenizer.c - byte-level BPE as Hugging Face `tokenizers` runs a Qwen2 /
 * DeepSeek-R1-Distill-Qwen tokenizer.json.
 *
 * Encoding follows the library's pipeline step by step:
 *
 *	1. added tokens whose "normalized" flag is false are found in the raw text
 *	   (leftmost-longest, non-overlapping, as the library's Aho-Corasick does),
 *	   honouring single_word / lstrip / rstrip;
 *	2. the text between them is NFC-normalised (utf8proc), then searched for the
 *	   added tokens whose "normalized" flag is true;
 *	3. what remains is split by the Split pre-tokenizer regexes (PCRE2 with
 *	   UTF + UCP, JIT-compiled; behaviour "Isolated": matches and the gaps
 *	   between them are both pieces);
 *	4. each piece's bytes are merged by BPE, lowest merge rank first and the
 *	   leftmost pair among equal ranks, exactly like the library's heap.
 *
 * The byte-level step (GPT-2's bytes_to_unicode) is folded into the tables at
 * load: BPE starts from the id of each byte's character and merges id pairs,
 * so no strings are built while encoding.  Each id's decoded bytes are
 * precomputed too.
 *
 * Everything built at load is read-only afterwards and encoding keeps its
 * scratch space per call, so encode/decode on one tokenizer are thread-safe.
 * There is no pre-token cache (it would need a lock); BPE is fast enough.
 */
#include "tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <jansson.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

/* Ids must stay below this: sanity bound against absurd tokenizer files. */
#define MAX_TOKEN_ID (1 << 26)

/* ---------------------------------------------------------------------------
 * String -> id hash table (open addressing, linear probing)
 * ------------------------------------------------------------------------- */

typedef struct strtab_entry
{
	uint32_t	off;			/* into arena */
	uint32_t	len;
	int32_t		id;
} strtab_entry;

typedef struct strtab
{
	char	   *arena;
	size_t		arena_len;
	size_t		arena_cap;
	strtab_entry *entries;
	uint32_t	n;
	uint32_t	cap;
	int32_t    *slots;			/* entry index, or -1 */
	uint32_t	mask;
} strtab;

static uint64_t
hash_bytes(const char *s, size_t len)
{
	/* FNV-1a, then a final mix so the low bits used for the slot are good */
	uint64_t	h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++)
	{
		h ^= (unsigned char) s[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 32;
	h *= 0x9e3779b97f4a7c15ULL;
	h ^= h >> 29;
	return h;
}

static void
strtab_free(strtab *t)
{
	free(t->arena);
	free(t->entries);
	free(t->slots);
	memset(t, 0, sizeof(*t));
}

static int
strtab_init(strtab *t, uint32_t expected, r1_error *err)
{
	uint32_t	size = 16;

	memset(t, 0, sizeof(*t));
	while (size < expected * 2u + 16u)
		size *= 2;
	t->slots = r1_malloc(sizeof(int32_t) * size, err);
	if (!t->slots)
		return -1;
	memset(t->slots, 0xff, sizeof(int32_t) * size);
	t->mask = size - 1;
	return 0;
}

static int32_t
strtab_find_entry(const strtab *t, const char *s, size_t len, uint32_t *slot_out)
{
	uint32_t	i = (uint32_t) hash_bytes(s, len) & t->mask;

	for (;;)
	{
		int32_t		e = t->slots[i];

		if (e < 0)
		{
			if (slot_out)
				*slot_out = i;
			return -1;
		}
		if (t->entries[e].len == len &&
			memcmp(t->arena + t->entries[e].off, s, len) == 0)
			return e;
		i = (i + 1) & t->mask;
	}
}

static int32_t
strtab_get(const strtab *t, const char *s, size_t len)
{
	int32_t		e;

	if (!t->slots)
		return -1;
	e = strtab_find_entry(t, s, len, NULL);
	return e < 0 ? -1 : t->entries[e].id;
}

static int
strtab_grow(strtab *t, r1_error *err)
{
	uint32_t	size = (t->mask + 1) * 2;
	int32_t    *slots = r1_malloc(sizeof(int32_t) * size, err);

	if (!slots)
		return -1;
	memset(slots, 0xff, sizeof(int32_t) * size);
	free(t->slots);
	t->slots = slots;
	t->mask = size - 1;
	for (uint32_t e = 0; e < t->n; e++)
	{
		uint32_t	i = (uint32_t) hash_bytes(t->arena + t->entries[e].off,
											  t->entries[e].len) & t->mask;

		while (t->slots[i] >= 0)
			i = (i + 1) & t->mask;
		t->slots[i] = (int32_t) e;
	}
	return 0;
}

/* Insert or overwrite; returns the entry index, or -1 on failure. */
static int32_t
strtab_put(strtab *t, const char *s, size_t len, int32_t id, r1_error *err)
{
	uint32_t	slot;
	int32_t		e;

	if (len > UINT32_MAX / 2)
		return r1_fail(err, "token string too long");
	e = strtab_find_entry(t, s, len, &slot);
	if (e >= 0)
	{
		t->entries[e].id = id;
		return e;
	}
	if ((size_t) (t->n + 1) * 2 > (size_t) t->mask + 1)
	{
		if (strtab_grow(t, err) != 0)
			return -1;
		(void) strtab_find_entry(t, s, len, &slot);
	}
	if (t->n == t->cap)
	{
		uint32_t	ncap = t->cap ? t->cap * 2 : 1024;
		strtab_entry *ne = realloc(t->entries, sizeof(strtab_entry) * ncap);

		if (!ne)
			return r1_fail(err, "out of memory building token table");
		t->entries = ne;
		t->cap = ncap;
	}
	if (!t->arena || t->arena_len + len > t->arena_cap)
	{
		size_t		ncap = t->arena_cap ? t->arena_cap * 2 : 65536;
		char	   *na;

		while (ncap < t->arena_len + len)
			ncap *= 2;
		if (ncap > UINT32_MAX)
			return r1_fail(err, "token strings too large");
		na = realloc(t->arena, ncap);
		if (!na)
			return r1_fail(err, "out of memory building token table");
		t->arena = na;
		t->arena_cap = ncap;
	}
	memcpy(t->arena + t->arena_len, s, len);
	e = (int32_t) t->n++;
	t->entries[e].off = (uint32_t) t->arena_len;
	t->entries[e].len = (uint32_t) len;
	t->entries[e].id = id;
	t->arena_len += len;
	t->slots[slot] = e;
	return e;
}

/* ---------------------------------------------------------------------------
 * (left id, right id) -> (rank, merged id) hash table
 * ------------------------------------------------------------------------- */

typedef struct merge_slot
{
	uint64_t	key;			/* MERGE_EMPTY when free */
	int32_t		rank;
	int32_t		new_id;
} merge_slot;

#define MERGE_EMPTY UINT64_MAX

static inline uint64_t
merge_key(int32_t a, int32_t b)
{
	return ((uint64_t) (uint32_t) a << 32) | (uint32_t) b;
}

static inline uint32_t
merge_hash(uint64_t key)
{
	return (uint32_t) ((key * 0x9e3779b97f4a7c15ULL) >> 32);
}

/* ---------------------------------------------------------------------------
 * The tokenizer
 * ------------------------------------------------------------------------- */

typedef struct added_token
{
	char	   *content;		/* as in tokenizer.json */
	size_t		len;
	char	   *match;			/* what is searched for: NFC of content if
								 * normalized */
	size_t		match_len;
	int32_t		id;
	bool		special;
	bool		lstrip;
	bool		rstrip;
	bool		single_word;
	bool		normalized;
} added_token;

/* One of the two searches for added tokens (raw text, or normalised text). */
typedef struct match_set
{
	int		   *idx;			/* into added[], longest match first */
	int			n;
	uint8_t		first[32];		/* bitmap of first bytes */
} match_set;

struct r1_tokenizer
{
	int32_t		n_tokens;		/* highest id + 1 */
	size_t		max_token_bytes;	/* longest tok_len */
	int32_t		bos_id;
	int32_t		eos_id;

	/*
	 * bytes of each id: tok_bytes + tok_off[id], tok_len[id] (UINT32_MAX: no
	 * token)
	 */
	char	   *tok_bytes;
	uint32_t   *tok_off;
	uint32_t   *tok_len;

	strtab		vocab;			/* byte-level token string -> id (model vocab) */
	strtab		added_tab;		/* added token content -> id */
	int32_t    *vocab_entry;	/* id -> vocab entry index, or -1 */

	merge_slot *merges;
	uint32_t	merge_mask;
	int32_t		n_merges;
	bool		ignore_merges;

	int32_t		byte_id[256];	/* id of each byte's byte-level character */
	char		byte_chr[256][3];	/* UTF-8 of each byte's byte-level
									 * character */
	uint8_t		byte_chr_len[256];

	added_token *added;
	int			n_added;
	match_set	raw_set;		/* added tokens with normalized = false */
	match_set	norm_set;		/* added tokens with normalized = true */

	bool		nfc;
	pcre2_code **split_re;		/* applied in sequence; behaviour Isolated */
	int			n_split;
	pcre2_code *ws_re;			/* one White_Space char (Rust's
								 * char::is_whitespace) */
	pcre2_code *word_re;		/* one alphanumeric-or-_ char (for
								 * single_word) */
};

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes map to themselves, the
 * rest to 256, 257, ... in byte order. */
static void
bytes_to_unicode(int32_t cp_of_byte[256])
{
	int			n = 0;

	for (int b = 0; b < 256; b++)
	{
		bool		printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) ||
		(b >= 0xae && b <= 0xff);

		cp_of_byte[b] = printable ? b : 256 + n++;
	}
}

/* ---------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------- */

enum
{
	U8_COMPLETE,				/* a whole valid character of *n bytes */
	U8_INCOMPLETE,				/* all len bytes are a valid but unfinished
								 * prefix */
	U8_INVALID					/* *n bytes form a maximal invalid subpart */
};

/* Classify the character starting at s[0] (len >= 1). */
static int
utf8_scan(const unsigned char *s, size_t len, size_t *n)
{
	unsigned char c = s[0];
	size_t		need;
	unsigned char lo = 0x80,
				hi = 0xbf;

	if (c < 0x80)
	{
		*n = 1;
		return U8_COMPLETE;
	}
	if (c >= 0xc2 && c <= 0xdf)
		need = 2;
	else if (c >= 0xe0 && c <= 0xef)
	{
		need = 3;
		if (c == 0xe0)
			lo = 0xa0;			/* no overlongs */
		else if (c == 0xed)
			hi = 0x9f;			/* no surrogates */
	}
	else if (c >= 0xf0 && c <= 0xf4)
	{
		need = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;			/* nothing above U+10FFFF */
	}
	else
	{
		*n = 1;
		return U8_INVALID;
	}
	for (size_t i = 1; i < need; i++)
	{
		if (i >= len)
		{
			*n = len;
			return U8_INCOMPLETE;
		}
		if (s[i] < lo || s[i] > hi)
		{
			*n = i;
			return U8_INVALID;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	*n = need;
	return U8_COMPLETE;
}

static int
utf8_validate(const char *text, size_t len, r1_error *err)
{
	size_t		i = 0;

	while (i < len)
	{
		size_t		n;

		if ((unsigned char) text[i] < 0x80)
		{
			i++;
			continue;
		}
		if (utf8_scan((const unsigned char *) text + i, len - i, &n) != U8_COMPLETE)
			return r1_fail(err, "invalid UTF-8 at byte %zu", i);
		i += n;
	}
	return 0;
}

/* ---------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------- */

static int
load_json(const char *path, json_t **out, r1_error *err)
{
	char	   *buf;
	size_t		len;
	json_error_t jerr;

	*out = NULL;
	if (r1_read_file(path, &buf, &len, err) != 0)
		return -1;
	*out = json_loadb(buf, len, JSON_ALLOW_NUL, &jerr);
	free(buf);
	if (!*out)
		return r1_fail(err, "%s: invalid JSON at line %d, column %d: %s",
					   path, jerr.line, jerr.column, jerr.text);
	return 0;
}

static const char *
json_type_name(json_t *obj)
{
	json_t	   *t = json_is_object(obj) ? json_object_get(obj, "type") : NULL;

	return json_is_string(t) ? json_string_value(t) : "";
}

static bool
json_flag(json_t *obj, const char *key)
{
	return json_is_true(json_object_get(obj, key));
}

static int
compile_re(pcre2_code **out, const char *pattern, size_t len, uint32_t extra_opts,
		   const char *what, r1_error *err)
{
	int			ec;
	PCRE2_SIZE	eoff;
	pcre2_code *re;

	re = pcre2_compile((PCRE2_SPTR) pattern, len, PCRE2_UTF | PCRE2_UCP | extra_opts,
					   &ec, &eoff, NULL);
	if (!re)
	{
		PCRE2_UCHAR msg[256];

		pcre2_get_error_message(ec, msg, sizeof(msg));
		return r1_fail(err, "cannot compile %s at offset %zu: %s", what, (size_t) eoff,
					   (char *) msg);
	}
	/* JIT is only a speed-up: without it pcre2_match interprets */
	(void) pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	*out = re;
	return 0;
}

static int
add_split_re(r1_tokenizer *tok, json_t *pt, const char *path, r1_error *err)
{
	json_t	   *pat = json_object_get(pt, "pattern");
	json_t	   *re_str = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
	json_t	   *lit_str = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
	json_t	   *beh = json_object_get(pt, "behavior");
	pcre2_code **nre;
	json_t	   *s = re_str ? re_str : lit_str;

	if (!json_is_string(s))
		return r1_fail(err, "%s: Split pre-tokenizer without a Regex or String pattern", path);
	if (!json_is_string(beh) || strcmp(json_string_value(beh), "Isolated") != 0)
		return r1_fail(err, "%s: Split behavior \"%s\" is not supported (only Isolated)",
					   path, json_is_string(beh) ? json_string_value(beh) : "?");
	if (json_flag(pt, "invert"))
		return r1_fail(err, "%s: inverted Split is not supported", path);
	nre = realloc(tok->split_re, sizeof(pcre2_code *) * (tok->n_split + 1));
	if (!nre)
		return r1_fail(err, "out of memory");
	tok->split_re = nre;
	if (compile_re(&tok->split_re[tok->n_split], json_string_value(s), json_string_length(s),
				   re_str ? 0 : PCRE2_LITERAL, "the pre-tokenizer regex", err) != 0)
		return -1;
	tok->n_split++;
	return 0;
}

static int
parse_pre_tokenizer(r1_tokenizer *tok, json_t *pt, const char *path, r1_error *err)
{
	const char *type;

	if (json_is_null(pt) || !pt)
		return 0;
	type = json_type_name(pt);
	if (strcmp(type, "Sequence") == 0)
	{
		json_t	   *list = json_object_get(pt, "pretokenizers");
		size_t		i;
		json_t	   *v;

		if (!json_is_array(list))
			return r1_fail(err, "%s: Sequence pre-tokenizer without a list", path);
		json_array_foreach(list, i, v)
		{
			if (parse_pre_tokenizer(tok, v, path, err) != 0)
				return -1;
		}
		return 0;
	}
	if (strcmp(type, "Split") == 0)
		return add_split_re(tok, pt, path, err);
	if (strcmp(type, "ByteLevel") == 0)
	{
		if (json_flag(pt, "add_prefix_space"))
			return r1_fail(err, "%s: ByteLevel add_prefix_space is not supported", path);
		if (json_flag(pt, "use_regex"))
		{
			/* the GPT-2 split the library builds in */
			static const char gpt2[] =
			"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
			pcre2_code **nre = realloc(tok->split_re, sizeof(pcre2_code *) * (tok->n_split + 1));

			if (!nre)
				return r1_fail(err, "out of memory");
			tok->split_re = nre;
			if (compile_re(&tok->split_re[tok->n_split], gpt2, sizeof(gpt2) - 1, 0,
						   "the ByteLevel regex", err) != 0)
				return -1;
			tok->n_split++;
		}
		return 0;
	}
	return r1_fail(err, "%s: pre-tokenizer type \"%s\" is not supported", path, type);
}

static int
parse_normalizer(r1_tokenizer *tok, json_t *nm, const char *path, r1_error *err)
{
	const char *type;

	if (!nm || json_is_null(nm))
		return 0;
	type = json_type_name(nm);
	if (strcmp(type, "NFC") == 0)
	{
		tok->nfc = true;
		return 0;
	}
	if (strcmp(type, "Sequence") == 0)
	{
		json_t	   *list = json_object_get(nm, "normalizers");
		size_t		i;
		json_t	   *v;

		if (!json_is_array(list))
			return r1_fail(err, "%s: Sequence normalizer without a list", path);
		json_array_foreach(list, i, v)
		{
			if (parse_normalizer(tok, v, path, err) != 0)
				return -1;
		}
		return 0;
	}
	return r1_fail(err, "%s: normalizer type \"%s\" is not supported", path, type);
}

/* Split a merge (either "a b" or ["a", "b"]) into its two token strings. */
static int
merge_parts(json_t *m, const char **a, size_t *alen, const char **b, size_t *blen)
{
	if (json_is_string(m))
	{
		const char *s = json_string_value(m);
		size_t		len = json_string_length(m);
		const char *sp = memchr(s, ' ', len);

		if (!sp)
			return -1;
		*a = s;
		*alen = (size_t) (sp - s);
		*b = sp + 1;
		*blen = len - *alen - 1;
		if (memchr(*b, ' ', *blen))
			return -1;
		return 0;
	}
	if (json_is_array(m) && json_array_size(m) == 2 &&
		json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1)))
	{
		*a = json_string_value(json_array_get(m, 0));
		*alen = json_string_length(json_array_get(m, 0));
		*b = json_string_value(json_array_get(m, 1));
		*blen = json_string_length(json_array_get(m, 1));
		return 0;
	}
	return -1;
}

static int
build_merges(r1_tokenizer *tok, const r1_tok_def *def, r1_error *err)
{
	size_t		n = def->n_merges;
	uint32_t	size = 16;
	char	   *cat = NULL;
	size_t		cat_cap = 0;

	if (n >= (size_t) INT32_MAX / 4)
		return r1_fail(err, "%s: too many merges", def->what);
	while (size < n * 2 + 16)
		size *= 2;
	tok->merges = r1_malloc(sizeof(merge_slot) * size, err);
	if (!tok->merges)
		return -1;
	for (uint32_t k = 0; k < size; k++)
		tok->merges[k].key = MERGE_EMPTY;
	tok->merge_mask = size - 1;
	tok->n_merges = (int32_t) n;

	for (size_t i = 0; i < n; i++)
	{
		const char *a = def->merge_a[i].s,
				   *b = def->merge_b[i].s;
		size_t		alen = def->merge_a[i].len,
					blen = def->merge_b[i].len;
		int32_t		ia,
					ib,
					inew;
		uint64_t	key;
		uint32_t	slot;

		ia = strtab_get(&tok->vocab, a, alen);
		ib = strtab_get(&tok->vocab, b, blen);
		if (alen + blen > cat_cap)
		{
			char	   *nc = realloc(cat, alen + blen + 64);

			if (!nc)
			{
				free(cat);
				return r1_fail(err, "out of memory");
			}
			cat = nc;
			cat_cap = alen + blen + 64;
		}
		memcpy(cat, a, alen);
		memcpy(cat + alen, b, blen);
		inew = strtab_get(&tok->vocab, cat, alen + blen);
		if (ia < 0 || ib < 0 || inew < 0)
		{
			free(cat);
			return r1_fail(err, "%s: merge %zu (\"%.*s\" + \"%.*s\") uses a token missing from the vocabulary",
						   def->what, i, (int) alen, a, (int) blen, b);
		}
		key = merge_key(ia, ib);
		slot = merge_hash(key) & tok->merge_mask;
		while (tok->merges[slot].key != MERGE_EMPTY && tok->merges[slot].key != key)
			slot = (slot + 1) & tok->merge_mask;
		/* a repeated pair keeps the later rank, as the library's HashMap does */
		tok->merges[slot].key = key;
		tok->merges[slot].rank = (int32_t) i;
		tok->merges[slot].new_id = inew;
	}
	free(cat);
	return 0;
}

static inline const merge_slot *
merge_get(const r1_tokenizer *tok, int32_t a, int32_t b)
{
	uint64_t	key = merge_key(a, b);
	uint32_t	slot = merge_hash(key) & tok->merge_mask;

	if (!tok->merges)
		return NULL;
	for (;;)
	{
		const merge_slot *s = &tok->merges[slot];

		if (s->key == key)
			return s;
		if (s->key == MERGE_EMPTY)
			return NULL;
		slot = (slot + 1) & tok->merge_mask;
	}
}

typedef struct len_idx
{
	size_t		len;
	int			idx;
} len_idx;

/* longest first, then in file order */
static int
cmp_len_idx(const void *pa, const void *pb)
{
	const len_idx *a = pa;
	const len_idx *b = pb;

	if (a->len != b->len)
		return a->len > b->len ? -1 : 1;
	return a->idx - b->idx;
}

static int
build_match_set(r1_tokenizer *tok, match_set *set, bool normalized, r1_error *err)
{
	len_idx    *order = r1_malloc(sizeof(len_idx) * (tok->n_added + 1), err);

	set->idx = r1_malloc(sizeof(int) * (tok->n_added + 1), err);
	if (!set->idx || !order)
	{
		free(order);
		return -1;
	}
	set->n = 0;
	memset(set->first, 0, sizeof(set->first));
	for (int i = 0; i < tok->n_added; i++)
	{
		const added_token *a = &tok->added[i];

		if (a->normalized != normalized || a->match_len == 0)
			continue;
		order[set->n].len = a->match_len;
		order[set->n].idx = i;
		set->n++;
		set->first[(unsigned char) a->match[0] >> 3] |= 1 << ((unsigned char) a->match[0] & 7);
	}
	qsort(order, set->n, sizeof(len_idx), cmp_len_idx);
	for (int k = 0; k < set->n; k++)
		set->idx[k] = order[k].idx;
	free(order);
	return 0;
}

static int
build_added(r1_tokenizer *tok, const r1_tok_def *def, r1_error *err)
{
	tok->added = r1_calloc(def->n_added + 1, sizeof(added_token), err);
	if (!tok->added)
		return -1;
	for (size_t i = 0; i < def->n_added; i++)
	{
		const r1_tok_added *d = &def->added[i];
		added_token *a = &tok->added[tok->n_added];

		if (d->id < 0 || d->id >= MAX_TOKEN_ID || !d->content)
			return r1_fail(err, "%s: added token %zu needs an id in range and a content string",
						   def->what, i);
		a->len = d->len;
		a->content = r1_malloc(a->len + 1, err);
		if (!a->content)
			return -1;
		memcpy(a->content, d->content, a->len);
		a->content[a->len] = '\0';
		tok->n_added++;
		a->id = d->id;
		a->special = d->special;
		a->lstrip = d->lstrip;
		a->rstrip = d->rstrip;
		a->single_word = d->single_word;
		a->normalized = d->normalized;
		if (a->normalized && tok->nfc)
		{
			utf8proc_uint8_t *nfc;
			utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *) a->content,
											  (utf8proc_ssize_t) a->len, &nfc,
											  UTF8PROC_STABLE | UTF8PROC_COMPOSE);

			if (n < 0)
				return r1_fail(err, "%s: added token %zu: %s", def->what, i, utf8proc_errmsg(n));
			a->match = (char *) nfc;
			a->match_len = (size_t) n;
		}
		else
		{
			a->match = r1_malloc(a->len + 1, err);
			if (!a->match)
				return -1;
			memcpy(a->match, a->content, a->len + 1);
			a->match_len = a->len;
		}
		if (strtab_put(&tok->added_tab, a->content, a->len, a->id, err) < 0)
			return -1;
	}
	if (build_match_set(tok, &tok->raw_set, false, err) != 0 ||
		build_match_set(tok, &tok->norm_set, true, err) != 0)
		return -1;
	return 0;
}

/*
 * Per-id bytes.  A vocabulary token maps back through the byte-level table;
 * like the library's ByteLevel decoder, a token with a character outside the
 * table decodes to its own UTF-8.  Added tokens decode to their content.
 */
static int
build_token_bytes(r1_tokenizer *tok, const int16_t *byte_of_cp, r1_error *err)
{
	size_t		total = 0;
	size_t		off = 0;

	tok->tok_off = r1_calloc(tok->n_tokens, sizeof(uint32_t), err);
	tok->tok_len = r1_malloc(sizeof(uint32_t) * tok->n_tokens, err);
	if (!tok->tok_off || !tok->tok_len)
		return -1;
	memset(tok->tok_len, 0xff, sizeof(uint32_t) * tok->n_tokens);
	/* decoded bytes are never longer than the token strings */
	total = tok->vocab.arena_len;
	for (int i = 0; i < tok->n_added; i++)
		total += tok->added[i].len;
	if (total >= UINT32_MAX)
		return r1_fail(err, "token strings too large");
	tok->tok_bytes = r1_malloc(total + 1, err);
	if (!tok->tok_bytes)
		return -1;

	for (int32_t id = 0; id < tok->n_tokens; id++)
	{
		int32_t		e = tok->vocab_entry[id];
		const unsigned char *s;
		size_t		len,
					i = 0,
					start = off;
		bool		mapped = true;

		if (e < 0)
			continue;
		s = (const unsigned char *) tok->vocab.arena + tok->vocab.entries[e].off;
		len = tok->vocab.entries[e].len;
		while (i < len)
		{
			utf8proc_int32_t cp;
			utf8proc_ssize_t n = utf8proc_iterate(s + i, (utf8proc_ssize_t) (len - i), &cp);

			if (n <= 0 || cp >= 512 || byte_of_cp[cp] < 0)
			{
				mapped = false;
				break;
			}
			tok->tok_bytes[off++] = (char) byte_of_cp[cp];
			i += (size_t) n;
		}
		if (!mapped)
		{
			off = start;
			memcpy(tok->tok_bytes + off, s, len);
			off += len;
		}
		tok->tok_off[id] = (uint32_t) start;
		tok->tok_len[id] = (uint32_t) (off - start);
		if (off - start > tok->max_token_bytes)
			tok->max_token_bytes = off - start;
	}
	for (int i = 0; i < tok->n_added; i++)
	{
		const added_token *a = &tok->added[i];

		memcpy(tok->tok_bytes + off, a->content, a->len);
		tok->tok_off[a->id] = (uint32_t) off;
		tok->tok_len[a->id] = (uint32_t) a->len;
		off += a->len;
		if (a->len > tok->max_token_bytes)
			tok->max_token_bytes = a->len;
	}
	return 0;
}

/* bos_token / eos_token: a string, an object with "content", or null. */
static int32_t
config_token_id(const r1_tokenizer *tok, json_t *cfg, const char *key)
{
	json_t	   *v = json_object_get(cfg, key);

	if (json_is_object(v))
		v = json_object_get(v, "content");
	if (!json_is_string(v))
		return -1;
	return r1_tokenizer_token_id(tok, json_string_value(v));
}

static int
load_config(r1_tokenizer *tok, const char *dir, r1_error *err)
{
	char		path[4096];
	json_t	   *cfg;

	if (r1_path_join(path, sizeof(path), dir, "tokenizer_config.json", err) != 0)
		return -1;
	if (access(path, F_OK) != 0)
		return 0;				/* optional */
	if (load_json(path, &cfg, err) != 0)
		return -1;
	if (!json_is_object(cfg))
	{
		json_decref(cfg);
		return r1_fail(err, "%s: not a JSON object", path);
	}
	tok->bos_id = config_token_id(tok, cfg, "bos_token");
	tok->eos_id = config_token_id(tok, cfg, "eos_token");
	json_decref(cfg);
	return 0;
}

/*
 * Everything after normalisation and pre-tokenization are set up: the
 * vocabulary, added tokens, byte-level tables, merges and per-id bytes.
 */
static int
build_core(r1_tokenizer *tok, const r1_tok_def *def, r1_error *err)
{
	int32_t		max_id = -1;
	int32_t		cp_of_byte[256];
	int16_t		byte_of_cp[512];

	tok->ignore_merges = def->ignore_merges;
	if (def->n_vocab >= (size_t) MAX_TOKEN_ID || def->n_added >= (size_t) MAX_TOKEN_ID)
		return r1_fail(err, "%s: too many tokens", def->what);
	if (strtab_init(&tok->vocab, (uint32_t) def->n_vocab, err) != 0 ||
		strtab_init(&tok->added_tab, 64, err) != 0)
		return -1;
	for (size_t i = 0; i < def->n_vocab; i++)
	{
		const r1_tok_str *v = &def->vocab[i];

		if (v->id < 0 || v->id >= MAX_TOKEN_ID || !v->s)
			return r1_fail(err, "%s: vocabulary entry \"%.*s\" has no valid id", def->what,
						   v->s ? (int) (v->len > 64 ? 64 : v->len) : 0, v->s ? v->s : "");
		if (strtab_put(&tok->vocab, v->s, v->len, v->id, err) < 0)
			return -1;
		if (v->id > max_id)
			max_id = v->id;
	}
	if (build_added(tok, def, err) != 0)
		return -1;
	for (int i = 0; i < tok->n_added; i++)
		if (tok->added[i].id > max_id)
			max_id = tok->added[i].id;
	tok->n_tokens = max_id + 1;

	tok->vocab_entry = r1_malloc(sizeof(int32_t) * (tok->n_tokens + 1), err);
	if (!tok->vocab_entry)
		return -1;
	for (int32_t i = 0; i < tok->n_tokens; i++)
		tok->vocab_entry[i] = -1;
	for (uint32_t e = 0; e < tok->vocab.n; e++)
		tok->vocab_entry[tok->vocab.entries[e].id] = (int32_t) e;

	/* byte-level tables */
	bytes_to_unicode(cp_of_byte);
	for (int i = 0; i < 512; i++)
		byte_of_cp[i] = -1;
	for (int b = 0; b < 256; b++)
	{
		utf8proc_uint8_t u[4];
		utf8proc_ssize_t n = utf8proc_encode_char(cp_of_byte[b], u);

		byte_of_cp[cp_of_byte[b]] = (int16_t) b;
		memcpy(tok->byte_chr[b], u, (size_t) n);
		tok->byte_chr_len[b] = (uint8_t) n;
		tok->byte_id[b] = strtab_get(&tok->vocab, (const char *) u, (size_t) n);
	}

	if (build_merges(tok, def, err) != 0 ||
		build_token_bytes(tok, byte_of_cp, err) != 0)
		return -1;

	if (compile_re(&tok->ws_re, "\\p{White_Space}", PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED,
				   "the whitespace class", err) != 0 ||
		compile_re(&tok->word_re, "[\\p{Alphabetic}\\p{Nd}\\p{Nl}\\p{No}_]",
				   PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, "the word class", err) != 0)
		return -1;
	if (def->bos_id >= 0)
		tok->bos_id = def->bos_id;
	if (def->eos_id >= 0)
		tok->eos_id = def->eos_id;
	return 0;
}

const char	r1_qwen2_split_regex[] =
"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const char	r1_llama3_split_regex[] =
"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static r1_tokenizer *
tokenizer_new(r1_error *err)
{
	r1_tokenizer *tok = r1_calloc(1, sizeof(r1_tokenizer), err);

	if (tok)
	{
		tok->bos_id = -1;
		tok->eos_id = -1;
	}
	return tok;
}

int
r1_tokenizer_create(r1_tokenizer **out, const r1_tok_def *def, r1_error *err)
{
	r1_tokenizer *tok;

	*out = NULL;
	tok = tokenizer_new(err);
	if (!tok)
		return -1;
	tok->nfc = def->nfc;
	if (def->n_split > 0)
	{
		tok->split_re = r1_calloc(def->n_split, sizeof(pcre2_code *), err);
		if (!tok->split_re)
			goto fail;
		for (int i = 0; i < def->n_split; i++)
		{
			if (compile_re(&tok->split_re[i], def->split_regex[i], PCRE2_ZERO_TERMINATED, 0,
						   "the pre-tokenizer regex", err) != 0)
				goto fail;
			tok->n_split++;
		}
	}
	if (build_core(tok, def, err) != 0)
		goto fail;
	*out = tok;
	return 0;
fail:
	r1_tokenizer_free(tok);
	return -1;
}

static int
load_tokenizer_json(r1_tokenizer *tok, const char *path, r1_error *err)
{
	json_t	   *root;
	json_t	   *model,
			   *vocab,
			   *merges,
			   *added,
			   *v;
	const char *key;
	r1_tok_def	def;
	r1_tok_str *vs = NULL,
			   *ma = NULL,
			   *mb = NULL;
	r1_tok_added *ad = NULL;
	size_t		i;
	int			rc = -1;

	if (load_json(path, &root, err) != 0)
		return -1;
	model = json_object_get(root, "model");
	vocab = json_object_get(model, "vocab");
	merges = json_object_get(model, "merges");
	if (!json_is_object(model) || !json_is_object(vocab) || !json_is_array(merges))
	{
		r1_fail(err, "%s: no BPE model with a vocab and merges", path);
		goto out;
	}
	if (json_is_string(json_object_get(model, "type")) &&
		strcmp(json_type_name(model), "BPE") != 0)
	{
		r1_fail(err, "%s: model type \"%s\" is not supported (only BPE)", path,
				json_type_name(model));
		goto out;
	}
	{
		json_t	   *pfx = json_object_get(model, "continuing_subword_prefix");
		json_t	   *sfx = json_object_get(model, "end_of_word_suffix");
		json_t	   *drop = json_object_get(model, "dropout");

		if ((json_is_string(pfx) && json_string_length(pfx) > 0) ||
			(json_is_string(sfx) && json_string_length(sfx) > 0))
		{
			r1_fail(err, "%s: BPE subword prefix/suffix is not supported", path);
			goto out;
		}
		if (json_is_number(drop) && json_number_value(drop) > 0.0)
		{
			r1_fail(err, "%s: BPE dropout is not supported", path);
			goto out;
		}
	}

	if (parse_normalizer(tok, json_object_get(root, "normalizer"), path, err) != 0 ||
		parse_pre_tokenizer(tok, json_object_get(root, "pre_tokenizer"), path, err) != 0)
		goto out;

	memset(&def, 0, sizeof(def));
	def.what = path;
	def.ignore_merges = json_flag(model, "ignore_merges");
	def.nfc = tok->nfc;
	def.bos_id = def.eos_id = -1;

	/* vocabulary */
	vs = r1_malloc(sizeof(r1_tok_str) * (json_object_size(vocab) + 1), err);
	ma = r1_malloc(sizeof(r1_tok_str) * (json_array_size(merges) + 1), err);
	mb = r1_malloc(sizeof(r1_tok_str) * (json_array_size(merges) + 1), err);
	if (!vs || !ma || !mb)
		goto out;
	json_object_foreach(vocab, key, v)
	{
		json_int_t	id = json_is_integer(v) ? json_integer_value(v) : -1;

		if (id < 0 || id >= MAX_TOKEN_ID)
		{
			r1_fail(err, "%s: vocabulary entry \"%s\" has no valid id", path, key);
			goto out;
		}
		vs[def.n_vocab].s = key;
		vs[def.n_vocab].len = strlen(key);
		vs[def.n_vocab].id = (int32_t) id;
		def.n_vocab++;
	}
	def.vocab = vs;

	/* merges */
	json_array_foreach(merges, i, v)
	{
		if (merge_parts(v, &ma[i].s, &ma[i].len, &mb[i].s, &mb[i].len) != 0)
		{
			r1_fail(err, "%s: merge %zu is malformed", path, i);
			goto out;
		}
	}
	def.merge_a = ma;
	def.merge_b = mb;
	def.n_merges = json_array_size(merges);

	/* added tokens */
	added = json_object_get(root, "added_tokens");
	if (added && !json_is_null(added))
	{
		if (!json_is_array(added))
		{
			r1_fail(err, "%s: added_tokens is not an array", path);
			goto out;
		}
		ad = r1_calloc(json_array_size(added) + 1, sizeof(r1_tok_added), err);
		if (!ad)
			goto out;
		json_array_foreach(added, i, v)
		{
			json_t	   *id = json_object_get(v, "id");
			json_t	   *content = json_object_get(v, "content");

			if (!json_is_integer(id) || json_integer_value(id) < 0 ||
				json_integer_value(id) >= MAX_TOKEN_ID || !json_is_string(content))
			{
				r1_fail(err, "%s: added token %zu needs an id in range and a content string",
						path, i);
				goto out;
			}
			ad[i].id = (int32_t) json_integer_value(id);
			ad[i].content = json_string_value(content);
			ad[i].len = json_string_length(content);
			ad[i].special = json_flag(v, "special");
			ad[i].lstrip = json_flag(v, "lstrip");
			ad[i].rstrip = json_flag(v, "rstrip");
			ad[i].single_word = json_flag(v, "single_word");
			ad[i].normalized = json_flag(v, "normalized");
		}
		def.added = ad;
		def.n_added = json_array_size(added);
	}
	rc = build_core(tok, &def, err);
out:
	free(vs);
	free(ma);
	free(mb);
	free(ad);
	json_decref(root);
	return rc;
}

int
r1_tokenizer_load_dir(r1_tokenizer **out, const char *dir, r1_error *err)
{
	r1_tokenizer *tok;
	char		path[4096];

	*out = NULL;
	if (r1_path_join(path, sizeof(path), dir, "tokenizer.json", err) != 0)
		return -1;
	tok = tokenizer_new(err);
	if (!tok)
		return -1;
	if (load_tokenizer_json(tok, path, err) != 0 ||
		load_config(tok, dir, err) != 0)
	{
		r1_tokenizer_free(tok);
		return -1;
	}
	*out = tok;
	return 0;
}

void
r1_tokenizer_free(r1_tokenizer *tok)
{
	if (!tok)
		return;
	free(tok->tok_bytes);
	free(tok->tok_off);
	free(tok->tok_len);
	strtab_free(&tok->vocab);
	strtab_free(&tok->added_tab);
	free(tok->vocab_entry);
	free(tok->merges);
	for (int i = 0; i < tok->n_added; i++)
	{
		free(tok->added[i].content);
		free(tok->added[i].match);	/* malloc'd by us or by utf8proc */
	}
	free(tok->added);
	free(tok->raw_set.idx);
	free(tok->norm_set.idx);
	for (int i = 0; i < tok->n_split; i++)
		pcre2_code_free(tok->split_re[i]);
	free(tok->split_re);
	pcre2_code_free(tok->ws_re);
	pcre2_code_free(tok->word_re);
	free(tok);
}

/* ---------------------------------------------------------------------------
 * Encoding
 * ------------------------------------------------------------------------- */

typedef struct heap_item
{
	int32_t		rank;
	int32_t		pos;
	int32_t		new_id;
} heap_item;

typedef struct enc_ctx
{
	const r1_tokenizer *tok;
	r1_error   *err;
	int32_t    *ids;
	size_t		n_ids;
	size_t		cap_ids;
	pcre2_match_data *md;
	pcre2_match_context *mctx;	/* no match limit: see re_match */
	const int  *cancel;			/* r1_encode_opts.cancel */
	bool		parse_special;	/* r1_encode_opts.parse_special */
	/* BPE scratch, grown as needed */
	int32_t    *sym;			/* id of each symbol, -1 once merged away */
	int32_t    *prev;
	int32_t    *next;
	size_t		cap_sym;
	heap_item  *heap;
	size_t		n_heap;
	size_t		cap_heap;
	char	   *str;			/* byte-level string of a piece
								 * (ignore_merges) */
	size_t		cap_str;
} enc_ctx;

typedef struct split
{
	size_t		start;
	size_t		end;
	int32_t		id;				/* added token id, or -1 for plain text */
} split;

typedef struct split_list
{
	split	   *v;
	size_t		n;
	size_t		cap;
} split_list;

static int
push_id(enc_ctx *cx, int32_t id)
{
	if (cx->n_ids == cx->cap_ids)
	{
		size_t		ncap = cx->cap_ids ? cx->cap_ids * 2 : 64;
		int32_t    *nv = realloc(cx->ids, sizeof(int32_t) * ncap);

		if (!nv)
			return r1_fail(cx->err, "out of memory encoding text");
		cx->ids = nv;
		cx->cap_ids = ncap;
	}
	cx->ids[cx->n_ids++] = id;
	return 0;
}

/* Has another thread asked this encoding to stop? */
static inline bool
cancelled(enc_ctx *cx)
{
	return cx->cancel && __atomic_load_n(cx->cancel, __ATOMIC_RELAXED) != 0;
}

static int
fail_cancelled(enc_ctx *cx)
{
	return r1_fail(cx->err, R1_ENCODE_CANCELLED);
}

static int
push_split(split_list *l, size_t start, size_t end, int32_t id, r1_error *err)
{
	if (l->n == l->cap)
	{
		size_t		ncap = l->cap ? l->cap * 2 : 16;
		split	   *nv = realloc(l->v, sizeof(split) * ncap);

		if (!nv)
			return r1_fail(err, "out of memory encoding text");
		l->v = nv;
		l->cap = ncap;
	}
	l->v[l->n].start = start;
	l->v[l->n].end = end;
	l->v[l->n].id = id;
	l->n++;
	return 0;
}

static inline bool
heap_less(const heap_item *a, const heap_item *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int
heap_push(enc_ctx *cx, int32_t rank, int32_t pos, int32_t new_id)
{
	size_t		i;

	if (cx->n_heap == cx->cap_heap)
	{
		size_t		ncap = cx->cap_heap ? cx->cap_heap * 2 : 64;
		heap_item  *nh = realloc(cx->heap, sizeof(heap_item) * ncap);

		if (!nh)
			return r1_fail(cx->err, "out of memory encoding text");
		cx->heap = nh;
		cx->cap_heap = ncap;
	}
	i = cx->n_heap++;
	cx->heap[i].rank = rank;
	cx->heap[i].pos = pos;
	cx->heap[i].new_id = new_id;
	while (i > 0)
	{
		size_t		p = (i - 1) / 2;
		heap_item	t;

		if (!heap_less(&cx->heap[i], &cx->heap[p]))
			break;
		t = cx->heap[i];
		cx->heap[i] = cx->heap[p];
		cx->heap[p] = t;
		i = p;
	}
	return 0;
}

static heap_item
heap_pop(enc_ctx *cx)
{
	heap_item	top = cx->heap[0];
	size_t		i = 0,
				n = --cx->n_heap;

	cx->heap[0] = cx->heap[n];
	for (;;)
	{
		size_t		l = 2 * i + 1,
					r = l + 1,
					m = i;
		heap_item	t;

		if (l < n && heap_less(&cx->heap[l], &cx->heap[m]))
			m = l;
		if (r < n && heap_less(&cx->heap[r], &cx->heap[m]))
			m = r;
		if (m == i)
			break;
		t = cx->heap[i];
		cx->heap[i] = cx->heap[m];
		cx->heap[m] = t;
		i = m;
	}
	return top;
}

static int
push_pair(enc_ctx *cx, int32_t left)
{
	const merge_slot *m;

	if (left < 0 || cx->next[left] < 0)
		return 0;
	m = merge_get(cx->tok, cx->sym[left], cx->sym[cx->next[left]]);
	return m ? heap_push(cx, m->rank, left, m->new_id) : 0;
}

/*
 * BPE of one pre-token.  Like the library's Word::merge_all: a min-heap of
 * (rank, position) over adjacent pairs; stale entries (a symbol merged away,
 * or a pair that no longer yields the entry's token) are skipped.
 */
static int
bpe(enc_ctx *cx, const unsigned char *s, size_t len)
{
	const r1_tokenizer *tok = cx->tok;
	int32_t		n = 0;

	if (len == 0)
		return 0;
	if (tok->ignore_merges)
	{
		size_t		need = len * 2;
		size_t		sl = 0;
		int32_t		id;

		if (need > cx->cap_str)
		{
			char	   *ns = realloc(cx->str, need);

			if (!ns)
				return r1_fail(cx->err, "out of memory encoding text");
			cx->str = ns;
			cx->cap_str = need;
		}
		for (size_t i = 0; i < len; i++)
		{
			memcpy(cx->str + sl, tok->byte_chr[s[i]], tok->byte_chr_len[s[i]]);
			sl += tok->byte_chr_len[s[i]];
		}
		id = strtab_get(&tok->vocab, cx->str, sl);
		if (id >= 0)
			return push_id(cx, id);
	}
	if (len == 1)
		return tok->byte_id[s[0]] >= 0 ? push_id(cx, tok->byte_id[s[0]]) : 0;
	if (len > (size_t) INT32_MAX)
		return r1_fail(cx->err, "pre-token too long");
	if (len > cx->cap_sym)
	{
		size_t		ncap = len < 256 ? 256 : len;
		int32_t    *a = realloc(cx->sym, sizeof(int32_t) * ncap);

		if (!a)
			return r1_fail(cx->err, "out of memory encoding text");
		cx->sym = a;
		a = realloc(cx->prev, sizeof(int32_t) * ncap);
		if (!a)
			return r1_fail(cx->err, "out of memory encoding text");
		cx->prev = a;
		a = realloc(cx->next, sizeof(int32_t) * ncap);
		if (!a)
			return r1_fail(cx->err, "out of memory encoding text");
		cx->next = a;
		cx->cap_sym = ncap;
	}
	/* one symbol per byte; a byte without a vocabulary entry is dropped */
	for (size_t i = 0; i < len; i++)
	{
		int32_t		id = tok->byte_id[s[i]];

		if (id < 0)
			continue;
		cx->sym[n] = id;
		cx->prev[n] = n - 1;
		cx->next[n] = -1;
		if (n > 0)
			cx->next[n - 1] = n;
		n++;
	}
	cx->n_heap = 0;
	for (int32_t i = 0; i + 1 < n; i++)
	{
		if ((i & 65535) == 65535 && cancelled(cx))
			return fail_cancelled(cx);
		if (push_pair(cx, i) != 0)
			return -1;
	}
	for (uint32_t step = 0; cx->n_heap > 0; step++)
	{
		heap_item	top;
		int32_t		pos,
					right;
		const merge_slot *m;

		if ((step & 4095) == 4095 && cancelled(cx))
			return fail_cancelled(cx);
		top = heap_pop(cx);
		pos = top.pos;
		if (cx->sym[pos] < 0 || cx->next[pos] < 0)
			continue;
		right = cx->next[pos];
		m = merge_get(tok, cx->sym[pos], cx->sym[right]);
		if (!m || m->new_id != top.new_id)
			continue;
		cx->sym[pos] = top.new_id;
		cx->sym[right] = -1;
		cx->next[pos] = cx->next[right];
		if (cx->next[right] >= 0)
			cx->prev[cx->next[right]] = pos;
		if (push_pair(cx, cx->prev[pos]) != 0 || push_pair(cx, pos) != 0)
			return -1;
	}
	for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = cx->next[i])
		if (push_id(cx, cx->sym[i]) != 0)
			return -1;
	return 0;
}

/*
 * One match.  The match context lifts PCRE2's match limit (10 million steps
 * by default): the split regexes backtrack at most once over a run of the
 * characters one of their repeats took (\s*[\r\n]+ over a run of spaces
 * with no newline), so the work stays linear in the text, but a run of 16
 * million spaces is 16 million steps and hit the limit ("match limit
 * exceeded") where Hugging Face's regex engine splits it.
 */
static int
re_match(enc_ctx *cx, const pcre2_code *re, const char *s, size_t len, size_t pos,
		 uint32_t opts, size_t *ms, size_t *me)
{
	int			rc = pcre2_match(re, (PCRE2_SPTR) s, len, pos, opts | PCRE2_NO_UTF_CHECK,
								 cx->md, cx->mctx);
	PCRE2_SIZE *ov;

	/*
	 * the JIT's default stack is small; the interpreter keeps its state on
	 * the heap
	 */
	if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
		rc = pcre2_match(re, (PCRE2_SPTR) s, len, pos, opts | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
						 cx->md, cx->mctx);
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (rc < 0)
	{
		PCRE2_UCHAR msg[256];

		pcre2_get_error_message(rc, msg, sizeof(msg));
		return r1_fail(cx->err, "pre-tokenizer regex failed: %s", (char *) msg);
	}
	ov = pcre2_get_ovector_pointer(cx->md);
	*ms = ov[0];
	*me = ov[1];
	return 1;
}

/* Split s by split_re[level] (Isolated: matches and gaps are pieces), then by
 * the next levels, and BPE the final pieces. */
static int
pre_tokenize(enc_ctx *cx, int level, const char *s, size_t len)
{
	const r1_tokenizer *tok = cx->tok;
	size_t		pos = 0,
				last = 0;

	if (len == 0)
		return 0;
	if (level == tok->n_split)
		return bpe(cx, (const unsigned char *) s, len);
	while (pos < len)
	{
		size_t		ms,
					me;
		int			rc;

		if (cancelled(cx))
			return fail_cancelled(cx);
		rc = re_match(cx, tok->split_re[level], s, len, pos, 0, &ms, &me);
		if (rc < 0)
			return -1;
		if (rc == 0)
			break;
		if (me == ms)
		{
			/* empty match: make no piece of it; step over one character */
			size_t		n = 1;

			if (ms >= len)
				break;
			while (ms + n < len && ((unsigned char) s[ms + n] & 0xc0) == 0x80)
				n++;
			pos = ms + n;
			continue;
		}
		if (ms > last && pre_tokenize(cx, level + 1, s + last, ms - last) != 0)
			return -1;
		if (pre_tokenize(cx, level + 1, s + ms, me - ms) != 0)
			return -1;
		last = pos = me;
	}
	if (last < len)
		return pre_tokenize(cx, level + 1, s + last, len - last);
	return 0;
}

/* Does the one character at s[off] (off < len) match the class regex? */
static bool
char_is(enc_ctx *cx, const pcre2_code *re, const char *s, size_t len, size_t off)
{
	size_t		ms,
				me;

	return re_match(cx, re, s, len, off, PCRE2_ANCHORED, &ms, &me) == 1 && me > ms;
}

static size_t
char_start_before(const char *s, size_t off)
{
	do
		off--;
	while (off > 0 && ((unsigned char) s[off] & 0xc0) == 0x80);
	return off;
}

static size_t
char_len_at(const char *s, size_t len, size_t off)
{
	size_t		n = 1;

	while (off + n < len && ((unsigned char) s[off + n] & 0xc0) == 0x80)
		n++;
	return n;
}

/*
 * The library's AddedVocabulary::find_matches: leftmost-longest,
 * non-overlapping matches; a single_word match not delimited by non-word
 * characters is dropped (its span is still skipped, as the automaton's
 * iterator has moved past it); lstrip/rstrip widen a match over whitespace.
 */
static int
find_added(enc_ctx *cx, const match_set *set, const char *s, size_t len, split_list *out)
{
	const r1_tokenizer *tok = cx->tok;
	size_t		start_offset = 0;
	size_t		pos = 0;

	out->n = 0;
	while (set->n > 0 && pos < len)
	{
		unsigned char c = (unsigned char) s[pos];
		const added_token *hit = NULL;
		size_t		start,
					stop;

		if (set->first[c >> 3] & (1 << (c & 7)))
		{
			for (int k = 0; k < set->n; k++)
			{
				const added_token *a = &tok->added[set->idx[k]];

				if (a->match_len <= len - pos && memcmp(s + pos, a->match, a->match_len) == 0)
				{
					hit = a;
					break;
				}
			}
		}
		if (!hit)
		{
			pos++;
			continue;
		}
		start = pos;
		stop = pos + hit->match_len;
		pos = stop;
		if (start < start_offset)
			continue;			/* inside whitespace an rstrip already took */
		if (hit->single_word)
		{
			bool		start_space = start == 0 ||
			!char_is(cx, tok->word_re, s, len, char_start_before(s, start));
			bool		stop_space = stop == len || !char_is(cx, tok->word_re, s, len, stop);

			if (!start_space || !stop_space)
				continue;
		}
		if (hit->lstrip)
		{
			size_t		ns = start;

			while (ns > 0)
			{
				size_t		p = char_start_before(s, ns);

				if (!char_is(cx, tok->ws_re, s, len, p))
					break;
				ns = p;
			}
			start = ns > start_offset ? ns : start_offset;
		}
		if (hit->rstrip)
		{
			while (stop < len && char_is(cx, tok->ws_re, s, len, stop))
				stop += char_len_at(s, len, stop);
		}
		if (start_offset < start && push_split(out, start_offset, start, -1, cx->err) != 0)
			return -1;
		if (push_split(out, start, stop, hit->id, cx->err) != 0)
			return -1;
		start_offset = stop;
	}
	if (start_offset < len && push_split(out, start_offset, len, -1, cx->err) != 0)
		return -1;
	return 0;
}

/*
 * Text made only of characters below U+0300 is already in NFC (that is where
 * NFC_Quick_Check stops being Yes), and such characters have UTF-8 lead bytes
 * below 0xcc: plain ASCII and Latin text skips utf8proc.
 */
static bool
needs_nfc(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) s[i] >= 0xcc)
			return true;
	return false;
}

/* Normalise a stretch of plain text, find normalized added tokens, pre-tokenize the rest. */
static int
encode_plain(enc_ctx *cx, const char *s, size_t len, split_list *splits)
{
	const r1_tokenizer *tok = cx->tok;
	utf8proc_uint8_t *nfc = NULL;
	int			rc = 0;

	if (tok->nfc && needs_nfc(s, len))
	{
		utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *) s, (utf8proc_ssize_t) len,
										  &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);

		if (n < 0)
			return r1_fail(cx->err, "cannot normalise text: %s", utf8proc_errmsg(n));
		s = (const char *) nfc;
		len = (size_t) n;
	}
	if (tok->norm_set.n == 0 || !cx->parse_special)
		rc = pre_tokenize(cx, 0, s, len);
	else if ((rc = find_added(cx, &tok->norm_set, s, len, splits)) == 0)
	{
		for (size_t i = 0; i < splits->n && rc == 0; i++)
		{
			if (splits->v[i].id >= 0)
				rc = push_id(cx, splits->v[i].id);
			else
				rc = pre_tokenize(cx, 0, s + splits->v[i].start,
								  splits->v[i].end - splits->v[i].start);
		}
	}
	free(nfc);
	return rc;
}

int
r1_tokenizer_encode(const r1_tokenizer *tok, const char *text, size_t len,
					int32_t **ids, size_t *n_ids, r1_error *err)
{
	r1_encode_opts opts = {.parse_special = 1};

	return r1_tokenizer_encode_opts(tok, text, len, &opts, ids, n_ids, err);
}

int
r1_tokenizer_encode_opts(const r1_tokenizer *tok, const char *text, size_t len,
						 const r1_encode_opts *opts,
						 int32_t **ids, size_t *n_ids, r1_error *err)
{
	enc_ctx		cx;
	split_list	raw = {0},
				norm = {0};
	int			rc = 0;

	*ids = NULL;
	*n_ids = 0;
	if (len > 0 && !text)
		return r1_fail(err, "no text to encode");
	if (utf8_validate(text, len, err) != 0)
		return -1;
	memset(&cx, 0, sizeof(cx));
	cx.tok = tok;
	cx.err = err;
	cx.parse_special = opts->parse_special != 0;
	cx.cancel = opts->cancel;
	cx.md = pcre2_match_data_create(4, NULL);
	cx.mctx = pcre2_match_context_create(NULL);
	if (!cx.md || !cx.mctx)
	{
		pcre2_match_data_free(cx.md);
		pcre2_match_context_free(cx.mctx);
		return r1_fail(err, "out of memory encoding text");
	}
	pcre2_set_match_limit(cx.mctx, UINT32_MAX);

	if (cx.parse_special)
		rc = find_added(&cx, &tok->raw_set, text, len, &raw);
	else
		rc = len > 0 ? push_split(&raw, 0, len, -1, err) : 0;
	for (size_t i = 0; i < raw.n && rc == 0; i++)
	{
		if (raw.v[i].id >= 0)
			rc = push_id(&cx, raw.v[i].id);
		else
			rc = encode_plain(&cx, text + raw.v[i].start, raw.v[i].end - raw.v[i].start, &norm);
	}

	pcre2_match_data_free(cx.md);
	pcre2_match_context_free(cx.mctx);
	free(cx.sym);
	free(cx.prev);
	free(cx.next);
	free(cx.heap);
	free(cx.str);
	free(raw.v);
	free(norm.v);
	if (rc != 0)
	{
		free(cx.ids);
		return -1;
	}
	if (!cx.ids)
	{
		/* callers may free() the result either way */
		cx.ids = r1_malloc(sizeof(int32_t), err);
		if (!cx.ids)
			return -1;
	}
	*ids = cx.ids;
	*n_ids = cx.n_ids;
	return 0;
}

/* ---------------------------------------------------------------------------
 * Decoding and lookups
 * ------------------------------------------------------------------------- */

const char *
r1_tokenizer_token_bytes(const r1_tokenizer *tok, int32_t id, size_t *len)
{
	if (id < 0 || id >= tok->n_tokens || tok->tok_len[id] == UINT32_MAX)
	{
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = tok->tok_len[id];
	return tok->tok_bytes + tok->tok_off[id];
}

static int
bad_id(const r1_tokenizer *tok, int32_t id, r1_error *err)
{
	if (id < 0 || id >= tok->n_tokens)
		return r1_fail(err, "token id %d out of range (0..%d)", id, tok->n_tokens - 1);
	return r1_fail(err, "token id %d has no token", id);
}

int
r1_tokenizer_decode(const r1_tokenizer *tok, const int32_t *ids, size_t n_ids,
					char **text, size_t *len, r1_error *err)
{
	size_t		total = 0,
				off = 0;
	char	   *out;

	*text = NULL;
	if (len)
		*len = 0;
	for (size_t i = 0; i < n_ids; i++)
	{
		size_t		n;

		if (!r1_tokenizer_token_bytes(tok, ids[i], &n))
			return bad_id(tok, ids[i], err);
		total += n;
	}
	out = r1_malloc(total + 1, err);
	if (!out)
		return -1;
	for (size_t i = 0; i < n_ids; i++)
	{
		size_t		n;
		const char *b = r1_tokenizer_token_bytes(tok, ids[i], &n);

		memcpy(out + off, b, n);
		off += n;
	}
	out[off] = '\0';
	*text = out;
	if (len)
		*len = off;
	return 0;
}

int32_t
r1_tokenizer_token_id(const r1_tokenizer *tok, const char *token)
{
	size_t		len = strlen(token);
	int32_t		id = strtab_get(&tok->added_tab, token, len);

	/* added tokens first, as the library's token_to_id does */
	return id >= 0 ? id : strtab_get(&tok->vocab, token, len);
}

size_t
r1_tokenizer_max_token_bytes(const r1_tokenizer *tok)
{
	return tok->max_token_bytes;
}

int32_t
r1_tokenizer_n_tokens(const r1_tokenizer *tok)
{
	return tok->n_tokens;
}

int32_t
r1_tokenizer_bos_id(const r1_tokenizer *tok)
{
	return tok->bos_id;
}

int32_t
r1_tokenizer_eos_id(const r1_tokenizer *tok)
{
	return tok->eos_id;
}

/* ---------------------------------------------------------------------------
 * Streaming decode
 *
 * Complete characters are emitted as soon as their last byte arrives; a valid
 * but unfinished prefix is held in st->pending.  Bytes that can never become
 * a character (a maximal invalid subpart, in Unicode's terms: a bad lead
 * byte, or a lead byte and the continuation bytes that fit it before one that
 * does not) are emitted as one U+FFFD each, as the library's
 * String::from_utf8_lossy does, so everything pushed out is valid UTF-8.
 * flush turns a still-unfinished tail into U+FFFD for the same reason.
 * ------------------------------------------------------------------------- */

static int
buf_append(char **buf, size_t *len, size_t *cap, const char *s, size_t n, r1_error *err)
{
	if (!*buf || *len + n + 1 > *cap)
	{
		size_t		ncap = *cap > 64 ? *cap : 64;
		char	   *nb;

		while (ncap < *len + n + 1)
			ncap *= 2;
		nb = realloc(*buf, ncap);
		if (!nb)
			return r1_fail(err, "out of memory decoding tokens");
		*buf = nb;
		*cap = ncap;
	}
	if (n)
		memcpy(*buf + *len, s, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

static const char replacement[] = "\xef\xbf\xbd";

int
r1_detok_push(r1_detok *st, const r1_tokenizer *tok, int32_t id,
			  char **buf, size_t *len, size_t *cap, r1_error *err)
{
	size_t		n,
				i = 0,
				run = 0;		/* start of the run of valid bytes not yet
								 * copied */
	const unsigned char *b = (const unsigned char *) r1_tokenizer_token_bytes(tok, id, &n);

	if (!b)
		return bad_id(tok, id, err);
	if (st->n_pending < 0 || st->n_pending > 3)
		st->n_pending = 0;

	/* first finish (or give up on) the held character */
	if (st->n_pending > 0)
	{
		unsigned char tmp[8];
		size_t		take = n < 4 ? n : 4,
					used;
		int			k;

		memcpy(tmp, st->pending, st->n_pending);
		memcpy(tmp + st->n_pending, b, take);
		k = utf8_scan(tmp, st->n_pending + take, &used);
		if (k == U8_INCOMPLETE)
		{
			/* still unfinished: everything (fewer than 4 bytes) is held */
			memcpy(st->pending + st->n_pending, b, n);
			st->n_pending += (int) n;
			return buf_append(buf, len, cap, "", 0, err);
		}
		if (buf_append(buf, len, cap, k == U8_COMPLETE ? (const char *) tmp : replacement,
					   k == U8_COMPLETE ? used : 3, err) != 0)
			return -1;
		/* the subpart always covers the held bytes; the rest came from b */
		i = used - (size_t) st->n_pending;
		st->n_pending = 0;
		run = i;
	}
	while (i < n)
	{
		size_t		used;
		int			k;

		if (b[i] < 0x80)
		{
			i++;
			continue;
		}
		k = utf8_scan(b + i, n - i, &used);
		if (k == U8_COMPLETE)
		{
			i += used;
			continue;
		}
		if (buf_append(buf, len, cap, (const char *) b + run, i - run, err) != 0)
			return -1;
		if (k == U8_INCOMPLETE)
		{
			memcpy(st->pending, b + i, used);
			st->n_pending = (int) used;
			return 0;
		}
		if (buf_append(buf, len, cap, replacement, 3, err) != 0)
			return -1;
		i += used;
		run = i;
	}
	return buf_append(buf, len, cap, (const char *) b + run, n - run, err);
}

int
r1_detok_flush(r1_detok *st, char **buf, size_t *len, size_t *cap, r1_error *err)
{
	bool		tail = st->n_pending > 0;

	st->n_pending = 0;
	return buf_append(buf, len, cap, replacement, tail ? 3 : 0, err);
}
