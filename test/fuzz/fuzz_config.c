/*
 * fuzz_config.c - arbitrary bytes as config.json (r1_config_parse).
 *
 * Either a one-line error, or a configuration that r1_config_validate
 * accepts, with sizes whose products the engine computes without overflow.
 */
#include "config.h"
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	r1_config	cfg;
	r1_error	err;

	err.msg[0] = '\0';
	if (r1_config_parse(&cfg, (const char *) data, size, "config.json", &err) != 0)
	{
		FUZZ_CHECK(err.msg[0] != '\0', "failure without a message");
		FUZZ_CHECK(strchr(err.msg, '\n') == NULL, "error is not one line: %s", err.msg);
		return 0;
	}
	FUZZ_CHECK(r1_config_validate(&cfg, "config.json", &err) == 0, "parse accepted what validate rejects: %s",
			   err.msg);
	FUZZ_CHECK(cfg.n_heads % cfg.n_kv_heads == 0, "heads");
	FUZZ_CHECK(cfg.head_dim > 0 && cfg.hidden_size > 0 && cfg.vocab_size > 0, "sizes");
	FUZZ_CHECK(memchr(cfg.torch_dtype, '\0', sizeof(cfg.torch_dtype)) != NULL, "torch_dtype not terminated");
	/* the products the loader and the KV cache compute must fit in 64 bits */
	{
		int64_t		embed = (int64_t) cfg.vocab_size * cfg.hidden_size;
		int64_t		q = (int64_t) cfg.n_heads * cfg.head_dim * cfg.hidden_size;
		int64_t		ffn = (int64_t) cfg.intermediate_size * cfg.hidden_size * 3;

		FUZZ_CHECK(embed > 0 && q > 0 && ffn > 0, "size products");
	}
	return 0;
}
