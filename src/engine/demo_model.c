/*
 * demo_model.c - a one-layer Qwen2 model that spells a fixed token chain.
 *
 * All attention and MLP weights are zero, so the residual stream at the last
 * layer is the token's embedding.  Token chain[i] embeds as the one-hot e_i;
 * after RMSNorm that is sqrt(H) e_i, and lm_head row chain[i+1] holds S at
 * dimension i, so chain[i+1] wins by S*sqrt(H) (> 50) over every other token:
 * greedy, and in practice any temperature below ~5, follows the chain.
 */
#include "demo_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define DEMO_LOGIT_SCALE 8.0f

int
r1_demo_model_write(const char *dir, const int32_t *chain, int n, int vocab, int bos_id,
					int eos_id, r1_error *err)
{
	return r1_demo_model_write_forks(dir, chain, n, vocab, bos_id, eos_id, NULL, NULL, 0, err);
}

int
r1_demo_model_write_forks(const char *dir, const int32_t *chain, int n, int vocab, int bos_id,
						  int eos_id, const int32_t *fork_at, const int32_t *fork_id, int n_forks,
						  r1_error *err)
{
	int			H,
				heads = 2,
				kv_heads = 1,
				hd,
				inter = 64;
	char		path[4096];
	FILE	   *f;
	uint16_t   *embed = NULL,
			   *head = NULL,
			   *zeros = NULL,
			   *ones = NULL;
	r1_tensor	t[16];
	int			nt = 0,
				rc = -1;
	size_t		zero_elems;

	if (!chain || n < 2)
		return r1_fail(err, "demo model: the chain needs at least 2 tokens");
	if (n > 4096)
		return r1_fail(err, "demo model: a chain of %d tokens is too long (at most 4096)", n);
	if (vocab < 1 || vocab > (1 << 22))
		return r1_fail(err, "demo model: vocab_size %d out of range [1, %d]", vocab, 1 << 22);
	for (int i = 0; i < n; i++)
	{
		if (chain[i] < 0 || chain[i] >= vocab)
			return r1_fail(err, "demo model: token id %d out of range [0, %d)", chain[i], vocab);
		for (int j = 0; j < i && i < n - 1; j++)
			if (chain[j] == chain[i])
				return r1_fail(err, "demo model: token id %d occurs twice in the chain; each token can have only one successor",
							   chain[i]);
	}
	for (int f = 0; f < n_forks; f++)
	{
		if (fork_at[f] < 1 || fork_at[f] >= n - 1)
			return r1_fail(err, "demo model: fork position %d out of range [1, %d)", fork_at[f], n - 1);
		if (fork_id[f] < 0 || fork_id[f] >= vocab)
			return r1_fail(err, "demo model: token id %d out of range [0, %d)", fork_id[f], vocab);
		for (int i = 0; i < n; i++)
			if (chain[i] == fork_id[f])
				return r1_fail(err, "demo model: fork token %d is in the chain", fork_id[f]);
	}
	H = ((n + 63) / 64) * 64;
	hd = H / heads;
	embed = calloc((size_t) vocab * H, sizeof(uint16_t));
	head = calloc((size_t) vocab * H, sizeof(uint16_t));
	zero_elems = (size_t) (H > inter ? H : inter) * (H > inter ? H : inter);
	zeros = calloc(zero_elems, sizeof(uint16_t));
	ones = malloc(sizeof(uint16_t) * H);
	if (!embed || !head || !zeros || !ones)
	{
		r1_fail(err, "demo model: out of memory");
		goto done;
	}
	for (int i = 0; i < H; i++)
		ones[i] = r1_f32_to_bf16(1.0f);
	for (int i = 0; i + 1 < n; i++)
	{
		embed[(size_t) chain[i] * H + i] = r1_f32_to_bf16(1.0f);
		head[(size_t) chain[i + 1] * H + i] = r1_f32_to_bf16(DEMO_LOGIT_SCALE);
	}

	/*
	 * a fork: as likely a successor of chain[at - 1] as chain[at], then
	 * continues like it
	 */
	for (int f = 0; f < n_forks; f++)
	{
		int			at = fork_at[f];

		head[(size_t) fork_id[f] * H + at - 1] = r1_f32_to_bf16(DEMO_LOGIT_SCALE);
		embed[(size_t) fork_id[f] * H + at] = r1_f32_to_bf16(1.0f);
	}

#define T(nm, ptr, d0, d1) \
	do { memset(&t[nt], 0, sizeof(r1_tensor)); t[nt].name = (nm); t[nt].dtype = R1_BF16; \
		 t[nt].ndim = ((d1) != 0) ? 2 : 1; t[nt].shape[0] = (d0); t[nt].shape[1] = (d1); \
		 t[nt].data = (ptr); t[nt].nbytes = (size_t) (d0) * (((d1) != 0) ? (d1) : 1) * 2; nt++; } while (0)
	T("model.embed_tokens.weight", embed, vocab, H);
	T("lm_head.weight", head, vocab, H);
	T("model.norm.weight", ones, H, 0);
	T("model.layers.0.input_layernorm.weight", ones, H, 0);
	T("model.layers.0.post_attention_layernorm.weight", ones, H, 0);
	T("model.layers.0.self_attn.q_proj.weight", zeros, heads * hd, H);
	T("model.layers.0.self_attn.q_proj.bias", zeros, heads * hd, 0);
	T("model.layers.0.self_attn.k_proj.weight", zeros, kv_heads * hd, H);
	T("model.layers.0.self_attn.k_proj.bias", zeros, kv_heads * hd, 0);
	T("model.layers.0.self_attn.v_proj.weight", zeros, kv_heads * hd, H);
	T("model.layers.0.self_attn.v_proj.bias", zeros, kv_heads * hd, 0);
	T("model.layers.0.self_attn.o_proj.weight", zeros, H, heads * hd);
	T("model.layers.0.mlp.gate_proj.weight", zeros, inter, H);
	T("model.layers.0.mlp.up_proj.weight", zeros, inter, H);
	T("model.layers.0.mlp.down_proj.weight", zeros, H, inter);
#undef T
	if (r1_path_join(path, sizeof(path), dir, "model.safetensors", err) != 0 ||
		r1_st_write(path, t, nt, err) != 0)
		goto done;
	if (r1_path_join(path, sizeof(path), dir, "config.json", err) != 0)
		goto done;
	f = fopen(path, "w");
	if (!f)
	{
		r1_fail(err, "%s: cannot create: %s", path, strerror(errno));
		goto done;
	}
	fprintf(f,
			"{\n  \"architectures\": [\"Qwen2ForCausalLM\"],\n  \"model_type\": \"qwen2\",\n"
			"  \"_comment\": \"r1 demo-model: generated weights that spell a fixed chain of tokens\",\n"
			"  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
			"  \"num_hidden_layers\": 1,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n"
			"  \"max_position_embeddings\": 8192,\n  \"rope_theta\": 10000.0,\n  \"rms_norm_eps\": 1e-06,\n"
			"  \"tie_word_embeddings\": false,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
			"  \"torch_dtype\": \"bfloat16\"\n}\n",
			vocab, H, inter, heads, kv_heads, bos_id, eos_id);
	if (fclose(f) != 0)
	{
		r1_fail(err, "%s: write failed", path);
		goto done;
	}
	rc = 0;
done:
	free(embed);
	free(head);
	free(zeros);
	free(ones);
	return rc;
}
