/*
 * config.c - Qwen2ForCausalLM hyper-parameters from config.json, and the
 * published DeepSeek-R1-Distill-Qwen shapes.
 */
#include "config.h"

#include <jansson.h>
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
	if (c->head_dim < 2 || c->head_dim % 2 != 0 || c->head_dim > 1024)
		return r1_fail(err, "%s: head_dim %d must be even and in [2, 1024]", what, c->head_dim);
	if (c->max_position < 2)
		return r1_fail(err, "%s: max_position_embeddings %d too small", what, c->max_position);
	if (!(c->rope_theta > 0) || !(c->rms_norm_eps > 0))
		return r1_fail(err, "%s: rope_theta and rms_norm_eps must be positive", what);
	return 0;
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
			if (json_is_string(json_array_get(v, i)) &&
				strcmp(json_string_value(json_array_get(v, i)), "Qwen2ForCausalLM") == 0)
				known = 1;
	}
	else if (json_is_string(json_object_get(root, "model_type")) &&
			 strcmp(json_string_value(json_object_get(root, "model_type")), "qwen2") == 0)
		known = 1;
	if (!known)
	{
		const char *arch = "(none)";

		if (json_is_array(v) && json_is_string(json_array_get(v, 0)))
			arch = json_string_value(json_array_get(v, 0));
		else if (json_is_string(json_object_get(root, "model_type")))
			arch = json_string_value(json_object_get(root, "model_type"));
		r1_fail(err, "%s: unknown architecture %s: r1_pg supports Qwen2ForCausalLM (DeepSeek-R1-Distill-Qwen)",
				what, arch);
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
		json_t	   *rt = json_object_get(v, "rope_type");

		if (get_float(v, "rope_theta", &c->rope_theta, what, err))
			goto done;
		if (json_is_string(rt) && strcmp(json_string_value(rt), "default") != 0)
		{
			r1_fail(err, "%s: rope_type \"%s\" is not supported (only the default rotary embedding)",
					what, json_string_value(rt));
			goto done;
		}
	}
	v = json_object_get(root, "rope_scaling");
	if (v && !json_is_null(v))
	{
		json_t	   *rt = json_is_object(v) ? json_object_get(v, "rope_type") : NULL;

		if (!rt && json_is_object(v))
			rt = json_object_get(v, "type");
		if (!json_is_string(rt) || strcmp(json_string_value(rt), "default") != 0)
		{
			r1_fail(err, "%s: rope_scaling is not supported (only the default rotary embedding)", what);
			goto done;
		}
	}
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
		int			hidden,
					layers,
					heads,
					kv,
					ffn,
					vocab;
	}			presets[] = {
		{"1.5b", 1536, 28, 12, 2, 8960, 151936},
		{"7b", 3584, 28, 28, 4, 18944, 152064},
		{"14b", 5120, 48, 40, 8, 13824, 152064},
		{"32b", 5120, 64, 40, 8, 27648, 152064},
	};

	for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
		if (strcasecmp(shape, presets[i].name) == 0)
		{
			memset(c, 0, sizeof(*c));
			c->vocab_size = presets[i].vocab;
			c->hidden_size = presets[i].hidden;
			c->intermediate_size = presets[i].ffn;
			c->n_layers = presets[i].layers;
			c->n_heads = presets[i].heads;
			c->n_kv_heads = presets[i].kv;
			c->head_dim = 128;
			c->max_position = 131072;
			c->rope_theta = 10000.0f;
			c->rms_norm_eps = 1e-6f;
			c->bos_id = 151646;
			c->eos_id = 151643;
			snprintf(c->torch_dtype, sizeof(c->torch_dtype), "bfloat16");
			return 0;
		}
	return r1_config_load(c, shape, err);
}
