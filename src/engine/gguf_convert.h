/*
 * gguf_convert.h - writing a model (and its tokenizer) as a GGUF file in
 * llama.cpp's layout, quantising the matrices (`r1 convert`).
 */
#ifndef R1_GGUF_CONVERT_H
#define R1_GGUF_CONVERT_H

#include "model.h"

/*
 * type: "f32", "f16", "bf16", "q8_0", "q4_k", "q5_k", "q6_k" (every matrix
 * in that type) or "q4_k_m" (llama.cpp's mix: Q6_K for output.weight and for
 * attn_v / ffn_down of some layers, Q4_K elsewhere).  A matrix whose rows
 * are not whole blocks of its type falls back to Q8_0 (rows of a multiple of
 * 32) or else F16; vectors (norms, biases) are always F32, as llama.cpp
 * writes them.  tokdir: a directory with tokenizer.json (and
 * tokenizer_config.json), or NULL for a file without a tokenizer.
 */
int			r1_gguf_convert(const r1_model *m, const char *tokdir, const char *path,
							const char *type, r1_error *err);

#endif							/* R1_GGUF_CONVERT_H */
