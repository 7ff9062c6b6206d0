/*
 * config.c - Qwen2ForCausalLM / LlamaForCausalLM hyper-parameters from
 * config.json, and the published DeepSeek-R1-Distill shapes.
 */
#include "config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int
get_int(json_t *root, const char *key, int *out, int required, const char *what, r1_error *err)
{
	json_t	   *v = json_object_get(root, key);

	if (!v || json_is_null(v))
	{
		if (required)
			return r1_fail(err, "%s: missing \"%s\"", what, key);
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < -1 || json_integer_value(v) > (1 << 30))
		return r1_fail(err, "%s: \"%s\" must be an integer", what, key);
	*out = (int) json_integer_value(v);
	return 0;
}

static int
get_float(json_t *root, const char *key, float *out, const char *what, r1_error *err)
{
	json_t	   *v = json_object_get(root, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return r1_fail(err, "%s: \"%s\" must be a number", what, key);
	*out = (float) json_number_value(v);
	return 0;
}

int
r1_config_validate(const r1_config *c, const char *what, r1_error *err)
{
	if (c->vocab_size < 1 || c->vocab_size > (1 << 22))
		return r1_fail(err, "%s: vocab_size %d out of range [1, %d]", what, c->vocab_size, 1 << 22);
	if (c->hidden_size < 1 || c->hidden_size > 65536)
		return r1_fail(err, "%s: hidden_size %d out of range [1, 65536]", what, c->hidden_size);
	if (c->intermediate_size < 1 || c->intermediate_size > 1 << 20)
		return r1_fail(err, "%s: intermediate_size %d out of range", what, c->intermediate_size);
	if (c->n_layers < 1 || c->n_layers > 512)
		return r1_fail(err, "%s: num_hidden_layers %d out of range [1, 512]", what, c->n_layers);
	if (c->n_heads < 1 || c->n_kv_heads < 1 || c->n_heads > 1024)
		return r1_fail(err, "%s: num_attention_heads %d / num_key_value_heads %d must be positive",
					   what, c->n_heads, c->n_kv_heads);
	if (c->n_heads % c->n_kv_heads != 0)
		return r1_fail(err, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
					   what, c->n_heads, c->n_kv_heads);
	if (c->head_dim < 2 || c->head_dim % 2 != 0 || c->head_dim > R1_MAX_HEAD_DIM)
		return r1_fail(err, "%s: head_dim %d must be even and in [2, %d]", what, c->head_dim,
					   R1_MAX_HEAD_DIM);
	if (c->max_position < 2)
		return r1_fail(err, "%s: max_position_embeddings %d too small", what, c->max_position);
	if (!(c->rope_theta > 0) || !(c->rms_norm_eps > 0))
		return r1_fail(err, "%s: rope_theta and rms_norm_eps must be positive", what);
	if (c->rope_scaled)
		for (int i = 0; i < c->head_dim / 2; i++)
			if (!(c->rope_factor[i] > 0) || !isfinite(c->rope_factor[i]))
				return r1_fail(err, "%s: rope frequency factor %d is %g: must be positive", what, i,
							   c->rope_factor[i]);
	return 0;
}

double
r1_rope_inv_freq(const r1_config *c, int i)
{
	double		inv = 1.0 / pow((double) c->rope_theta, (2.0 * i) / c->head_dim);

	return c->rope_scaled ? inv / c->rope_factor[i] : inv;
}

const char *
r1_arch_name(r1_arch arch)
{
	return arch == R1_ARCH_LLAMA ? "llama" : "qwen2";
}

/*
 * Llama 3.1's rope scaling (transformers' _compute_llama3_parameters): long
 * wavelengths are divided by factor, short ones kept, the band between
 * interpolated.
 */
static void
llama3_factors(r1_config *c, double factor, double low, double high, double orig)
{
	double		low_wl = orig / low,
				high_wl = orig / high;

	for (int i = 0; i < c->head_dim / 2; i++)
	{
		double		inv = 1.0 / pow((double) c->rope_theta, (2.0 * i) / c->head_dim);
		double		wl = 2.0 * M_PI / inv;

		if (wl > low_wl)
			c->rope_factor[i] = factor;
		else if (wl < high_wl)
			c->rope_factor[i] = 1.0;
		else
		{
			double		smooth = (orig / wl - low) / (high - low);

			c->rope_factor[i] = 1.0 / ((1.0 - smooth) / factor + smooth);
		}
	}
	c->rope_scaled = 1;
}

static int
get_double(json_t *o, const char *key, double *out, const char *what, r1_error *err)
{
	json_t	   *v = json_object_get(o, key);

	if (!json_is_number(v) || !(json_number_value(v) > 0))
		return r1_fail(err, "%s: rope_scaling needs a positive number \"%s\"", what, key);
	*out = json_number_value(v);
	return 0;
}

/* rope_scaling (or rope_parameters) of type default or llama3; others fail. */
static int
parse_rope_scaling(r1_config *c, json_t *v, const char *what, r1_error *err)
{
	json_t	   *rt = json_object_get(v, "rope_type");
	const char *type;
	double		factor,
				low,
				high,
				orig;

	if (!rt)
		rt = json_object_get(v, "type");
	type = json_is_string(rt) ? json_string_value(rt) : "default";
	if (strcmp(type, "default") == 0)
		return 0;
	if (strcmp(type, "llama3") != 0)
		return r1_fail(err, "%s: rope scaling type \"%s\" is not supported (default and llama3 are)",
					   what, type);
	if (get_double(v, "factor", &factor, what, err) ||
		get_double(v, "low_freq_factor", &low, what, err) ||
		get_double(v, "high_freq_factor", &high, what, err) ||
		get_double(v, "original_max_position_embeddings", &orig, what, err))
		return -1;
	if (!(high > low))
		return r1_fail(err, "%s: rope_scaling high_freq_factor %g must exceed low_freq_factor %g",
					   what, high, low);
	if (c->head_dim < 2 || c->head_dim > R1_MAX_HEAD_DIM || c->head_dim % 2 != 0)
		return 0;				/* r1_config_validate says why */
	llama3_factors(c, factor, low, high, orig);
	return 0;
}

/*
 * quantization_config: the FP8 checkpoints published for the distills
 * (compressed-tensors "float-quantized": llm-compressor's FP8 and
 * FP8-dynamic, channel or tensor weight scales; activation settings are
 * ignored, activations stay in bf16/f32) and quant_method "fp8" with block
 * scales (DeepSeek-V3 style).  Anything else fails by name.
 */
static int
parse_quantization(r1_config *c, json_t *q, const char *what, r1_error *err)
{
	const char *method = json_string_value(json_object_get(q, "quant_method"));
	const char *hint = "supported: FP8 weights (compressed-tensors float-quantized, or quant_method fp8), "
	"or a GGUF file for 4- to 8-bit formats";

	if (!json_is_object(q) || !method)
		return r1_fail(err, "%s: quantization_config needs a quant_method", what);
	if (strcmp(method, "compressed-tensors") == 0)
	{
		const char *format = json_string_value(json_object_get(q, "format"));
		json_t	   *groups = json_object_get(q, "config_groups");
		const char *gname;
		json_t	   *g;

		if (!format || strcmp(format, "float-quantized") != 0)
			return r1_fail(err, "%s: quantization_config: compressed-tensors format \"%s\" is not supported; %s",
						   what, format ? format : "(none)", hint);
		if (!json_is_object(groups) || json_object_size(groups) == 0)
			return r1_fail(err, "%s: quantization_config: config_groups is missing", what);
		json_object_foreach(groups, gname, g)
		{
			json_t	   *w = json_object_get(g, "weights");
			const char *type = json_string_value(json_object_get(w, "type"));
			const char *strategy = json_string_value(json_object_get(w, "strategy"));
			json_t	   *bits = json_object_get(w, "num_bits");

			if (!json_is_object(w) || !type || strcmp(type, "float") != 0 || !json_is_integer(bits) ||
				json_integer_value(bits) != 8 || !strategy ||
				(strcmp(strategy, "channel") != 0 && strcmp(strategy, "tensor") != 0) ||
				json_is_true(json_object_get(w, "dynamic")))
				return r1_fail(err, "%s: quantization_config: group \"%s\": only static 8-bit float weights "
							   "with channel or tensor scales are supported; %s", what, gname, hint);
		}
		c->fp8 = 1;
		return 0;
	}
	if (strcmp(method, "fp8") == 0)
	{
		json_t	   *bs = json_object_get(q, "weight_block_size");
		const char *fmt = json_string_value(json_object_get(q, "fmt"));

		if (fmt && strcmp(fmt, "e4m3") != 0)
			return r1_fail(err, "%s: quantization_config: fp8 fmt \"%s\" is not supported (e4m3 is)", what, fmt);
		if (!json_is_array(bs) || json_array_size(bs) != 2 ||
			!json_is_integer(json_array_get(bs, 0)) || !json_is_integer(json_array_get(bs, 1)) ||
			json_integer_value(json_array_get(bs, 0)) < 1 || json_integer_value(json_array_get(bs, 1)) < 1 ||
			json_integer_value(json_array_get(bs, 0)) > 65536 || json_integer_value(json_array_get(bs, 1)) > 65536)
			return r1_fail(err, "%s: quantization_config: fp8 needs weight_block_size [rows, cols]", what);
		c->fp8 = 2;
		c->fp8_block[0] = (int) json_integer_value(json_array_get(bs, 0));
		c->fp8_block[1] = (int) json_integer_value(json_array_get(bs, 1));
		return 0;
	}
	return r1_fail(err, "%s: quantization_config: quant_method \"%s\" is not supported; %s", what, method, hint);
}

int
r1_config_parse(r1_config *c, const char *json, size_t len, const char *what, r1_error *err)
{
	json_error_t jerr;
	json_t	   *root = json_loadb(json, len, 0, &jerr);
	json_t	   *v;
	int			known = 0;
	int			rc = -1;

	memset(c, 0, sizeof(*c));
	c->bos_id = c->eos_id = -1;
	c->rope_theta = 10000.0f;
	c->rms_norm_eps = 1e-6f;
	c->max_position = 32768;
	if (!root)
		return r1_fail(err, "%s: invalid JSON at line %d column %d: %s", what, jerr.line, jerr.column, jerr.text);
	if (!json_is_object(root))
	{
		r1_fail(err, "%s: not a JSON object", what);
		goto done;
	}
	/* architecture */
	v = json_object_get(root, "architectures");
	if (json_is_array(v))
	{
		for (size_t i = 0; i < json_array_size(v); i++)
		{
			const char *a = json_string_value(json_array_get(v, i));

			if (a && strcmp(a, "Qwen2ForCausalLM") == 0)
				known = 1, c->arch = R1_ARCH_QWEN2;
			else if (a && strcmp(a, "LlamaForCausalLM") == 0)
				known = 1, c->arch = R1_ARCH_LLAMA;
		}
	}
	else if (json_is_string(json_object_get(root, "model_type")))
	{
		const char *mt = json_string_value(json_object_get(root, "model_type"));

		if (strcmp(mt, "qwen2") == 0)
			known = 1, c->arch = R1_ARCH_QWEN2;
		else if (strcmp(mt, "llama") == 0)
			known = 1, c->arch = R1_ARCH_LLAMA;
	}
	if (!known)
	{
		const char *arch = "(none)";

		if (json_is_array(v) && json_is_string(json_array_get(v, 0)))
			arch = json_string_value(json_array_get(v, 0));
		else if (json_is_string(json_object_get(root, "model_type")))
			arch = json_string_value(json_object_get(root, "model_type"));
		r1_fail(err, "%s: unknown architecture %s: r1_pg supports Qwen2ForCausalLM and LlamaForCausalLM (DeepSeek-R1-Distill-Qwen and -Llama)",
				what, arch);
		goto done;
	}

	/*
	 * Qwen2 always has q/k/v biases; Llama has them when attention_bias is
	 * true
	 */
	c->attn_bias = c->arch == R1_ARCH_QWEN2;
	if (c->arch == R1_ARCH_LLAMA)
	{
		v = json_object_get(root, "attention_bias");
		c->attn_bias = json_is_true(v);
		if (json_is_true(json_object_get(root, "mlp_bias")))
		{
			r1_fail(err, "%s: mlp_bias is not supported (the Llama distills have none)", what);
			goto done;
		}
	}
	v = json_object_get(root, "hidden_act");
	if (json_is_string(v) && strcmp(json_string_value(v), "silu") != 0)
	{
		r1_fail(err, "%s: hidden_act \"%s\" is not supported (only silu)", what, json_string_value(v));
		goto done;
	}
	if (get_int(root, "vocab_size", &c->vocab_size, 1, what, err) ||
		get_int(root, "hidden_size", &c->hidden_size, 1, what, err) ||
		get_int(root, "intermediate_size", &c->intermediate_size, 1, what, err) ||
		get_int(root, "num_hidden_layers", &c->n_layers, 1, what, err) ||
		get_int(root, "num_attention_heads", &c->n_heads, 1, what, err) ||
		get_int(root, "max_position_embeddings", &c->max_position, 0, what, err) ||
		get_float(root, "rms_norm_eps", &c->rms_norm_eps, what, err) ||
		get_float(root, "rope_theta", &c->rope_theta, what, err) ||
		get_int(root, "bos_token_id", &c->bos_id, 0, what, err))
		goto done;
	c->n_kv_heads = c->n_heads;
	if (get_int(root, "num_key_value_heads", &c->n_kv_heads, 0, what, err))
		goto done;
	c->head_dim = c->n_heads > 0 ? c->hidden_size / c->n_heads : 0;
	if (get_int(root, "head_dim", &c->head_dim, 0, what, err))
		goto done;
	/* newer writers keep rope settings under rope_parameters */
	v = json_object_get(root, "rope_parameters");
	if (json_is_object(v))
	{
		if (get_float(v, "rope_theta", &c->rope_theta, what, err) ||
			parse_rope_scaling(c, v, what, err))
			goto done;
	}
	v = json_object_get(root, "rope_scaling");
	if (v && !json_is_null(v))
	{
		if (!json_is_object(v))
		{
			r1_fail(err, "%s: rope_scaling must be an object or null", what);
			goto done;
		}
		if (parse_rope_scaling(c, v, what, err))
			goto done;
	}
	v = json_object_get(root, "quantization_config");
	if (v && !json_is_null(v) && parse_quantization(c, v, what, err))
		goto done;
	v = json_object_get(root, "eos_token_id");
	if (json_is_integer(v))
		c->eos_id = (int) json_integer_value(v);
	else if (json_is_array(v) && json_is_integer(json_array_get(v, 0)))
		c->eos_id = (int) json_integer_value(json_array_get(v, 0));
	v = json_object_get(root, "tie_word_embeddings");
	c->tie_embeddings = json_is_true(v);
	v = json_object_get(root, "torch_dtype");
	if (!json_is_string(v))
		v = json_object_get(root, "dtype");
	if (json_is_string(v))
		snprintf(c->torch_dtype, sizeof(c->torch_dtype), "%s", json_string_value(v));
	rc = r1_config_validate(c, what, err);
done:
	json_decref(root);
	return rc;
}

int
r1_config_load(r1_config *cfg, const char *path, r1_error *err)
{
	char	   *buf;
	size_t		len;
	int			rc;

	if (r1_read_file(path, &buf, &len, err) != 0)
		return -1;
	rc = r1_config_parse(cfg, buf, len, path, err);
	free(buf);
	return rc;
}

int
r1_config_preset(r1_config *c, const char *shape, r1_error *err)
{
	static const struct
	{
		const char *name;
		r1_arch		arch;
		int			hidden,
					layers,
					heads,
					kv,
					ffn,
					vocab;
	}			presets[] = {
		{"1.5b", R1_ARCH_QWEN2, 1536, 28, 12, 2, 8960, 151936},
		{"7b", R1_ARCH_QWEN2, 3584, 28, 28, 4, 18944, 152064},
		{"14b", R1_ARCH_QWEN2, 5120, 48, 40, 8, 13824, 152064},
		{"32b", R1_ARCH_QWEN2, 5120, 64, 40, 8, 27648, 152064},
		{"llama-8b", R1_ARCH_LLAMA, 4096, 32, 32, 8, 14336, 128256},
		{"llama-70b", R1_ARCH_LLAMA, 8192, 80, 64, 8, 28672, 128256},
	};

	for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
		if (strcasecmp(shape, presets[i].name) == 0)
		{
			memset(c, 0, sizeof(*c));
			c->arch = presets[i].arch;
			c->vocab_size = presets[i].vocab;
			c->hidden_size = presets[i].hidden;
			c->intermediate_size = presets[i].ffn;
			c->n_layers = presets[i].layers;
			c->n_heads = presets[i].heads;
			c->n_kv_heads = presets[i].kv;
			c->head_dim = 128;
			c->max_position = 131072;
			snprintf(c->torch_dtype, sizeof(c->torch_dtype), "bfloat16");
			if (c->arch == R1_ARCH_QWEN2)
			{
				c->attn_bias = 1;
				c->rope_theta = 10000.0f;
				c->rms_norm_eps = 1e-6f;
				c->bos_id = 151646;
				c->eos_id = 151643;
			}
			else
			{
				/*
				 * DeepSeek-R1-Distill-Llama's config.json (Llama 3.1's rope
				 * scaling)
				 */
				c->rope_theta = 500000.0f;
				c->rms_norm_eps = 1e-5f;
				c->bos_id = 128000;
				c->eos_id = 128001;
				llama3_factors(c, 8.0, 1.0, 4.0, 8192.0);
			}
			return 0;
		}
	return r1_config_load(c, shape, err);
}
