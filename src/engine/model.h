/*
 * model.h - a Qwen2ForCausalLM or LlamaForCausalLM checkpoint (safetensors,
 * FP8 safetensors or GGUF): hyper-parameters and weights.
 *
 * Weights stay in the file's dtype (F32, F16 or BF16), memory-mapped from the
 * safetensors files, or in heap memory for generated (random) weights.  Shapes
 * follow the Hugging Face layout: a linear layer's weight is [out, in].
 */
#ifndef R1_MODEL_H
#define R1_MODEL_H

#include "config.h"
#include "safetensors.h"

typedef struct r1_layer_weights
{
	r1_tensor	attn_norm;		/* input_layernorm.weight [hidden] */
	r1_tensor	wq;				/* self_attn.q_proj.weight [n_heads*head_dim,
								 * hidden] */
	r1_tensor	bq;				/* self_attn.q_proj.bias [n_heads*head_dim] */
	r1_tensor	wk;				/* self_attn.k_proj.weight
								 * [n_kv_heads*head_dim, hidden] */
	r1_tensor	bk;				/* self_attn.k_proj.bias [n_kv_heads*head_dim] */
	r1_tensor	wv;				/* self_attn.v_proj.weight
								 * [n_kv_heads*head_dim, hidden] */
	r1_tensor	bv;				/* self_attn.v_proj.bias [n_kv_heads*head_dim] */
	r1_tensor	wo;				/* self_attn.o_proj.weight [hidden,
								 * n_heads*head_dim] */
	r1_tensor	ffn_norm;		/* post_attention_layernorm.weight [hidden] */
	r1_tensor	w_gate;			/* mlp.gate_proj.weight [intermediate, hidden] */
	r1_tensor	w_up;			/* mlp.up_proj.weight [intermediate, hidden] */
	r1_tensor	w_down;			/* mlp.down_proj.weight [hidden, intermediate] */
} r1_layer_weights;

typedef struct r1_model
{
	r1_config	cfg;
	char		name[256];		/* directory base name, or "random-<shape>" */
	char		path[4096];		/* checkpoint directory, "" for random weights */
	r1_dtype	dtype;			/* dtype of the matrices (of the FFN's for a
								 * GGUF mix) */
	int			quantized;		/* some matrix is block-quantised (GGUF; CPU
								 * only) */
	r1_tensor	embed;			/* model.embed_tokens.weight [vocab, hidden] */
	r1_layer_weights *layers;	/* [n_layers] */
	r1_tensor	final_norm;		/* model.norm.weight [hidden] */
	r1_tensor	lm_head;		/* lm_head.weight [vocab, hidden] (= embed
								 * when tied) */
	size_t		weight_bytes;	/* total bytes of all weights */
	/* storage */
	r1_safetensors *files;
	int			n_files;
	void	   *owned;			/* heap block of generated weights */
	void	  **dequant;		/* bf16 copies of FP8 matrices (model_fp8.c) */
	int			n_dequant;
	int			lazy;			/* r1_model_random_lazy: no tensor holds data */
	struct r1_gguf *gguf;		/* the mapped file of a GGUF checkpoint */
} r1_model;

/*
 * Load a Hugging Face checkpoint directory: config.json plus model.safetensors
 * or the shards listed in model.safetensors.index.json; or a .gguf file.
 * Every tensor the model needs is checked for presence, dtype and shape.
 */
int			r1_model_load(r1_model **out, const char *dir, r1_error *err);

/*
 * Load a GGUF file (llama.cpp / Ollama): architecture "qwen2", hyper-parameters
 * from its metadata, tensors in llama.cpp's names.  r1_model_load calls it for
 * a path that is a file; m->path is set.
 */
int			r1_model_load_gguf(r1_model *m, r1_error *err);
void		r1_model_free_gguf(r1_model *m);

/*
 * Random weights at the shape of cfg (normal-ish, scaled like the HF init),
 * in dtype (R1_F32, R1_F16 or R1_BF16), reproducible from seed.
 */
/*
 * Random weights made on demand, never held: every tensor has data NULL and
 * r1_model_rows gives its rows, the same values r1_model_random(..., R1_F32,
 * seed) holds.  For r1 convert of shapes larger than memory (70B); the
 * backends refuse such a model.
 */
int			r1_model_random_lazy(r1_model **out, const r1_config *cfg, uint64_t seed, r1_error *err);

/* rows [r0, r0 + nr) of t (2-D, or 1-D as one row) as floats, from any model */
int			r1_model_rows(const r1_tensor *t, int64_t r0, int64_t nr, float *out, r1_error *err);

int			r1_model_random(r1_model **out, const r1_config *cfg, r1_dtype dtype,
							uint64_t seed, r1_error *err);

void		r1_model_free(r1_model *m);

#endif							/* R1_MODEL_H */
