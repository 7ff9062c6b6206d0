/*
 * tokenizer_load.c - a model's tokenizer from wherever the model keeps it: a
 * Hugging Face directory (tokenizer.c) or a GGUF file (tokenizer_gguf.c).
 */
#include <sys/stat.h>

#include "tokenizer.h"

int
r1_tokenizer_load(r1_tokenizer **out, const char *path, r1_error *err)
{
	struct stat sb;

	if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
		return r1_tokenizer_load_gguf(out, path, err);
	return r1_tokenizer_load_dir(out, path, err);
}
