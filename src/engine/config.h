/*
 * config.h - the model hyper-parameters of a Qwen2ForCausalLM config.json.
 */
#ifndef R1_CONFIG_H
#define R1_CONFIG_H

#include "util.h"

typedef struct r1_config
{
	int			vocab_size;		/* rows of embed_tokens and lm_head */
	int			hidden_size;	/* d_model */
	int			intermediate_size;	/* FFN width */
	int			n_layers;
	int			n_heads;		/* query heads */
	int			n_kv_heads;		/* key/value heads (grouped-query attention) */
	int			head_dim;		/* hidden_size / n_heads */
	int			max_position;	/* max_position_embeddings */
	float		rope_theta;		/* top-level rope_theta or rope_parameters.rope_theta */
	float		rms_norm_eps;
	int			tie_embeddings; /* lm_head shares embed_tokens */
	int			bos_id;			/* -1 if absent */
	int			eos_id;			/* -1 if absent (first of a list) */
	char		torch_dtype[16];	/* as written, "" if absent */
} r1_config;

/* Parse and validate DIR/config.json-style file at path. */
int			r1_config_load(r1_config *cfg, const char *path, r1_error *err);
int			r1_config_parse(r1_config *cfg, const char *json, size_t len, const char *what, r1_error *err);

/*
 * The published DeepSeek-R1-Distill-Qwen shapes: "1.5b", "7b", "14b", "32b";
 * anything else is read as a config.json path.
 */
int			r1_config_preset(r1_config *cfg, const char *shape, r1_error *err);

/* Check internal consistency (positive sizes, heads divide, ...). */
int			r1_config_validate(const r1_config *cfg, const char *what, r1_error *err);

#endif							/* R1_CONFIG_H */
