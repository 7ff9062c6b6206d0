/*
 * checksum.c - XXH64 and the weights checksum (see checksum.h).
 */
#include "checksum.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL
#define P4 0x85EBCA77C2B2AE63ULL
#define P5 0x27D4EB2F165667C5ULL

static inline uint64_t
rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/* little-endian loads whatever the alignment (tensors are only element-aligned) */
static inline uint64_t
rd64(const unsigned char *p)
{
	uint64_t	v;

	memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline uint32_t
rd32(const unsigned char *p)
{
	uint32_t	v;

	memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

static inline uint64_t
round64(uint64_t acc, uint64_t in)
{
	acc += in * P2;
	acc = rotl(acc, 31);
	return acc * P1;
}

static inline uint64_t
merge64(uint64_t acc, uint64_t v)
{
	acc ^= round64(0, v);
	return acc * P1 + P4;
}

uint64_t
r1_xxh64(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	const unsigned char *end = p + len;
	uint64_t	h;

	if (len >= 32)
	{
		const unsigned char *limit = end - 32;
		uint64_t	v1 = seed + P1 + P2,
					v2 = seed + P2,
					v3 = seed,
					v4 = seed - P1;

		do
		{
			v1 = round64(v1, rd64(p));
			v2 = round64(v2, rd64(p + 8));
			v3 = round64(v3, rd64(p + 16));
			v4 = round64(v4, rd64(p + 24));
			p += 32;
		} while (p <= limit);
		h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
		h = merge64(h, v1);
		h = merge64(h, v2);
		h = merge64(h, v3);
		h = merge64(h, v4);
	}
	else
		h = seed + P5;
	h += (uint64_t) len;
	while (p + 8 <= end)
	{
		h ^= round64(0, rd64(p));
		h = rotl(h, 27) * P1 + P4;
		p += 8;
	}
	if (p + 4 <= end)
	{
		h ^= (uint64_t) rd32(p) * P1;
		h = rotl(h, 23) * P2 + P3;
		p += 4;
	}
	while (p < end)
	{
		h ^= (uint64_t) (*p) * P5;
		h = rotl(h, 11) * P1;
		p++;
	}
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	h ^= h >> 32;
	return h;
}

static void
add(unsigned char *buf, size_t *n, const r1_tensor *t)
{
	uint64_t	th = r1_xxh64(t->data, t->data ? t->nbytes : 0, 0);

	for (int i = 0; i < 8; i++)
		buf[(*n)++] = (unsigned char) (th >> (8 * i));
}

uint64_t
r1_weights_checksum(const r1_model *m)
{
	size_t		n = 0;
	unsigned char *buf = malloc(8 * (12 * (size_t) m->cfg.n_layers + 4));
	uint64_t	h;

	if (!buf)
		return 0;
	add(buf, &n, &m->embed);
	for (int l = 0; l < m->cfg.n_layers; l++)
	{
		const r1_layer_weights *w = &m->layers[l];

		add(buf, &n, &w->attn_norm);
		add(buf, &n, &w->wq);
		add(buf, &n, &w->bq);
		add(buf, &n, &w->wk);
		add(buf, &n, &w->bk);
		add(buf, &n, &w->wv);
		add(buf, &n, &w->bv);
		add(buf, &n, &w->wo);
		add(buf, &n, &w->ffn_norm);
		add(buf, &n, &w->w_gate);
		add(buf, &n, &w->w_up);
		add(buf, &n, &w->w_down);
	}
	add(buf, &n, &m->final_norm);
	if (m->lm_head.data != m->embed.data)
		add(buf, &n, &m->lm_head);
	h = r1_xxh64(buf, n, 0);
	free(buf);
	return h;
}

void
r1_checksum_hex(uint64_t h, char out[17])
{
	snprintf(out, 17, "%016llx", (unsigned long long) h);
}
