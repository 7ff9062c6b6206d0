/*
 * demo_model.h - a tiny generated Qwen2 model whose greedy output is known:
 * it maps each token of a chain to the next, so a prompt ending with chain[0]
 * generates chain[1..].  The SQL tests and the demo use it to check real
 * think / answer / boxed values without downloading weights.
 */
#ifndef R1_DEMO_MODEL_H
#define R1_DEMO_MODEL_H

#include <stdint.h>

#include "util.h"

/*
 * Write DIR/config.json and DIR/model.safetensors (BF16).  chain[0..n-2] must
 * be distinct (each token has one successor) and every id in [0, vocab_size).
 */
int			r1_demo_model_write(const char *dir, const int32_t *chain, int n_chain, int vocab_size,
								int bos_id, int eos_id, r1_error *err);

/*
 * The same with forks: fork_id[f] (not in the chain) is exactly as likely a
 * successor of chain[fork_at[f] - 1] as chain[fork_at[f]] is, and continues
 * like it (its successor is chain[fork_at[f] + 1]).  Sampling then picks a
 * branch by the seed: a model whose answer depends on the seed (voting
 * tests).  Greedy decoding takes the lowest id among equal logits.
 */
int			r1_demo_model_write_forks(const char *dir, const int32_t *chain, int n_chain,
									  int vocab_size, int bos_id, int eos_id,
									  const int32_t *fork_at, const int32_t *fork_id, int n_forks,
									  r1_error *err);

#endif							/* R1_DEMO_MODEL_H */
