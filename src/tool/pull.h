/*
 * pull.h - `r1 pull`: a model from the Hugging Face hub or an Ollama registry
 * into the local cache, verified.
 *
 * Hugging Face (SPEC "org/name"): the hub's model-info API gives the commit
 * and every file's size and digest (sha256 for LFS files, the git blob sha1
 * for small ones); the files r1 needs are downloaded into huggingface_hub's
 * cache layout (models--org--name/{blobs,snapshots,refs}), so existing caches
 * are reused and a second pull downloads nothing.  Environment: HF_ENDPOINT,
 * HF_TOKEN (or the token file of `huggingface-cli login`), HF_HUB_CACHE,
 * HF_HOME, HF_HUB_OFFLINE.
 *
 * Ollama (SPEC "ollama:[namespace/]name[:tag]"): the registry's manifest, then
 * its blobs (digest-verified) into Ollama's own layout under $OLLAMA_MODELS
 * or ~/.ollama/models; the model layer is a GGUF file.  Registry:
 * R1_OLLAMA_REGISTRY (or OLLAMA_REGISTRY), default https://registry.ollama.ai.
 */
#ifndef R1_PULL_H
#define R1_PULL_H

#include <stddef.h>

#include "util.h"

typedef struct r1_pull_opts
{
	const char *spec;			/* "org/name" or "ollama:name[:tag]" */
	const char *revision;		/* hub branch, tag or commit; NULL: main */
	const char *dir;			/* cache root instead of the default; NULL:
								 * default */
	const char *include;		/* glob of the files to pull instead of r1's
								 * choice; NULL */
} r1_pull_opts;

/*
 * Pull; on success out holds the model's path: the snapshot directory, or
 * the .gguf file when the pull is one GGUF file.  Progress on stderr.
 */
int			r1_pull(const r1_pull_opts *o, char *out, size_t outsize, r1_error *err);

#endif							/* R1_PULL_H */
