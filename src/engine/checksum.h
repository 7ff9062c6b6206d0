/*
 * checksum.h - a checksum of a model's weight bytes, so that a stored trace
 * can say which weights produced it (r1.traces, r1_replay).
 *
 * The hash is XXH64 (the xxHash 64-bit algorithm, implemented here): about
 * 10 GB/s on one core, no dependency.  The weights checksum is XXH64, seed 0,
 * over the little-endian 8-byte XXH64 (seed 0) of every tensor's bytes, in
 * model order: embed_tokens, then per layer input_layernorm, q/k/v weights
 * and biases, o_proj, post_attention_layernorm, gate/up/down; norm; lm_head
 * (left out when tied to embed_tokens).  Any changed byte changes it; file
 * layout, shard count and tensor names do not.  0 means it could not be
 * computed (out of memory).
 */
#ifndef R1_CHECKSUM_H
#define R1_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

uint64_t	r1_xxh64(const void *data, size_t len, uint64_t seed);

/* Checksum of every weight byte of m (see above); reads all weights once. */
uint64_t	r1_weights_checksum(const r1_model *m);

/* 16 lowercase hex digits and a NUL into out[17]. */
void		r1_checksum_hex(uint64_t h, char out[17]);

#endif							/* R1_CHECKSUM_H */
