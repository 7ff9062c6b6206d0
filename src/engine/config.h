/*
 * config.h - the model hyper-parameters of a Qwen2ForCausalLM or
 * LlamaForCausalLM config.json (DeepSeek-R1-Distill-Qwen and -Llama).
 */
#ifndef R1_CONFIG_H
#define R1_CONFIG_H

#include "util.h"

typedef enum r1_arch
{
	R1_ARCH_QWEN2 = 0,			/* q/k/v biases, rope_theta 10000 or 1e6 */
	R1_ARCH_LLAMA = 1			/* no biases, llama3 rope scaling */
} r1_arch;

#define R1_MAX_HEAD_DIM 1024

typedef struct r1_config
{
	r1_arch		arch;
	int			attn_bias;		/* q/k/v projections have biases */
	int			vocab_size;		/* rows of embed_tokens and lm_head */
	int			hidden_size;	/* d_model */
	int			intermediate_size;	/* FFN width */
	int			n_layers;
	int			n_heads;		/* query heads */
	int			n_kv_heads;		/* key/value heads (grouped-query attention) */
	int			head_dim;		/* hidden_size / n_heads */
	int			max_position;	/* max_position_embeddings */
	float		rope_theta;		/* top-level rope_theta or
								 * rope_parameters.rope_theta */
	float		rms_norm_eps;
	int			tie_embeddings; /* lm_head shares embed_tokens */
	int			bos_id;			/* -1 if absent */
	int			eos_id;			/* -1 if absent (first of a list) */
	char		torch_dtype[16];	/* as written, "" if absent */

	/*
	 * Rope scaling: frequency i is theta^(-2i/head_dim) / rope_factor[i]
	 * (llama3 scaling from config.json, or a GGUF's rope_freqs tensor).
	 */
	int			rope_scaled;
	double		rope_factor[R1_MAX_HEAD_DIM / 2];

	/*
	 * FP8 weights (config.json quantization_config): 0 none; 1
	 * compressed-tensors float-quantized, 8-bit float weights with a
	 * "weight_scale" per output channel or per tensor; 2 quant_method "fp8"
	 * with weight_block_size: "weight_scale_inv" per fp8_block[0] x
	 * fp8_block[1] block.  The matrices are dequantised to bf16 at load.
	 */
	int			fp8;
	int			fp8_block[2];
} r1_config;

/* The rotary frequency of pair i (0 <= i < head_dim/2), in double. */
double		r1_rope_inv_freq(const r1_config *cfg, int i);

/* The architecture's name: "qwen2" or "llama" (GGUF's general.architecture). */
const char *r1_arch_name(r1_arch arch);

/* Parse and validate DIR/config.json-style file at path. */
int			r1_config_load(r1_config *cfg, const char *path, r1_error *err);
int			r1_config_parse(r1_config *cfg, const char *json, size_t len, const char *what, r1_error *err);

/*
 * The published DeepSeek-R1-Distill shapes: Qwen "1.5b", "7b", "14b", "32b",
 * Llama "llama-8b", "llama-70b"; anything else is read as a config.json path.
 */
int			r1_config_preset(r1_config *cfg, const char *shape, r1_error *err);

/* Check internal consistency (positive sizes, heads divide, ...). */
int			r1_config_validate(const r1_config *cfg, const char *what, r1_error *err);

#endif							/* R1_CONFIG_H */
