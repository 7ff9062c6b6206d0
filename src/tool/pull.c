/*
 * pull.c - `r1 pull`: models from the Hugging Face hub and Ollama registries
 * into their usual caches (see pull.h; the transfers are fetch.c's).
 *
 * The Hugging Face cache, as huggingface_hub lays it out:
 *
 *   $HF_HUB_CACHE/models--{org}--{name}/
 *     blobs/{sha256 or git blob sha1}           the files' contents, named by digest
 *     blobs/{digest}.incomplete                 a download in progress (resumed)
 *     snapshots/{commit}/{file} -> ../../blobs/{digest}
 *     refs/{revision}                           the commit of a branch or tag
 *
 * A blob that exists with its expected size is trusted (its name is its
 * digest, and only verified files are renamed to that name), so a second pull
 * makes one API request and downloads nothing.  refs/{revision} is written
 * after every file is in place: with it, a pull that cannot reach the hub (or
 * runs with HF_HUB_OFFLINE=1) uses the snapshot as it is.
 *
 * The Ollama store, as Ollama lays it out:
 *
 *   $OLLAMA_MODELS/blobs/sha256-{hex}
 *   $OLLAMA_MODELS/manifests/{registry host}/{namespace}/{name}/{tag}
 *
 * Every layer of the manifest is pulled (the model's GGUF file and the small
 * template, params, license and config blobs), then the manifest is written,
 * so that Ollama itself sees a complete model.
 */
#define _GNU_SOURCE				/* strcasestr */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "fetch.h"
#include "gguf.h"
#include "pull.h"

#define PATH_CAP 4096
#define HF_DEFAULT_ENDPOINT "https://huggingface.co"
#define OLLAMA_DEFAULT_REGISTRY "https://registry.ollama.ai"
#define OLLAMA_MODEL_MEDIA_TYPE "application/vnd.ollama.image.model"
#define OLLAMA_MANIFEST_ACCEPT "application/vnd.docker.distribution.manifest.v2+json"

/* ---------- small helpers ---------- */

static int
__attribute__((format(printf, 4, 5)))
fmt_path(char *buf, size_t cap, r1_error *err, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(buf, cap, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t) n >= cap)
		return r1_fail(err, "path too long: %.80s...", buf);
	return 0;
}

static int
mkdirs(const char *path, r1_error *err)
{
	char		p[PATH_CAP];
	size_t		n = strlen(path);

	if (n >= sizeof(p))
		return r1_fail(err, "path too long: %.80s...", path);
	memcpy(p, path, n + 1);
	for (size_t i = 1; i <= n; i++)
		if (p[i] == '/' || p[i] == '\0')
		{
			char		c = p[i];

			p[i] = '\0';
			if (mkdir(p, 0755) != 0 && errno != EEXIST)
				return r1_fail(err, "%s: cannot create: %s", p, strerror(errno));
			p[i] = c;
		}
	return 0;
}

/* mkdirs of the directory part of path */
static int
mkdirs_parent(const char *path, r1_error *err)
{
	char		p[PATH_CAP];
	char	   *slash;

	snprintf(p, sizeof(p), "%s", path);
	slash = strrchr(p, '/');
	if (!slash || slash == p)
		return 0;
	*slash = '\0';
	return mkdirs(p, err);
}

/* write a small file under a temporary name, then rename it into place */
static int
write_atomic(const char *path, const char *data, size_t len, r1_error *err)
{
	char		tmp[PATH_CAP];
	FILE	   *f;

	if (fmt_path(tmp, sizeof(tmp), err, "%s.tmp%ld", path, (long) getpid()) != 0 ||
		mkdirs_parent(path, err) != 0)
		return -1;
	f = fopen(tmp, "wb");
	if (!f)
		return r1_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
	if (fwrite(data, 1, len, f) != len || fflush(f) != 0 || fsync(fileno(f)) != 0)
	{
		int			e = errno;

		fclose(f);
		unlink(tmp);
		return r1_fail(err, "%s: cannot write: %s", tmp, strerror(e));
	}
	if (fclose(f) != 0 || rename(tmp, path) != 0)
	{
		int			e = errno;

		unlink(tmp);
		return r1_fail(err, "%s: cannot write: %s", path, strerror(e));
	}
	return 0;
}

static int
is_hex(const char *s, size_t n)
{
	if (strlen(s) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char) s[i]) || isupper((unsigned char) s[i]))
			return 0;
	return 1;
}

/* a name of letters, digits, '.', '_' and '-', not "." or ".." */
static int
is_plain_name(const char *s, size_t n)
{
	if (n == 0 || n > 96 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char) s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return 0;
	return 1;
}

/* a relative path without "..", empty or hidden-dot segments (what a server names may not escape) */
static int
is_safe_relpath(const char *s)
{
	size_t		n = strlen(s);

	if (n == 0 || n > 512 || s[0] == '/')
		return 0;
	for (const char *seg = s; *seg;)
	{
		size_t		k = strcspn(seg, "/");

		if (k == 0 || (k == 1 && seg[0] == '.') || (k == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		for (size_t i = 0; i < k; i++)
			if ((unsigned char) seg[i] < 0x20 || seg[i] == '\\' || seg[i] == 0x7f)
				return 0;
		seg += k;
		if (*seg == '/')
			seg++;
	}
	return 1;
}

static int
env_true(const char *name)
{
	const char *v = getenv(name);

	return v && (strcmp(v, "1") == 0 || strcasecmp(v, "on") == 0 || strcasecmp(v, "yes") == 0 ||
				 strcasecmp(v, "true") == 0);
}

static const char *
env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static int
has_suffix_ci(const char *s, const char *suffix)
{
	size_t		n = strlen(s),
				k = strlen(suffix);

	return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

static int
file_size(const char *path, int64_t *size)
{
	struct stat sb;

	if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
		return -1;
	*size = sb.st_size;
	return 0;
}

/* one line on stderr per file: JSON, or words on a terminal */
static void
report(const char *file, int64_t bytes, const char *sha256, const char *status, const char *layer)
{
	if (r1_fetch_tty())
	{
		char		b[16];

		if (strcmp(status, "cached") == 0)
			fprintf(stderr, "%-32.32s %9s  cached\n", file, r1_human_bytes((double) bytes, b));
		return;
	}
	{
		json_t	   *j = json_object();
		char	   *s;

		json_object_set_new(j, "file", json_string(file));
		if (layer)
			json_object_set_new(j, "layer", json_string(layer));
		json_object_set_new(j, "bytes", json_integer((json_int_t) bytes));
		json_object_set_new(j, "sha256", json_string(sha256));
		json_object_set_new(j, "status", json_string(status));
		s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
		if (s)
			fprintf(stderr, "%s\n", s);
		free(s);
		json_decref(j);
	}
}

/* curl-escaped copy of each '/'-separated segment of s into buf */
static int
escape_path(const char *s, char *buf, size_t cap, r1_error *err)
{
	size_t		used = 0;

	buf[0] = '\0';
	while (*s)
	{
		size_t		k = strcspn(s, "/");
		char	   *e = curl_easy_escape(NULL, s, (int) k);
		int			n;

		if (!e)
			return r1_fail(err, "out of memory");
		n = snprintf(buf + used, cap - used, "%s%s", used ? "/" : "", e);
		curl_free(e);
		if (n < 0 || (size_t) n >= cap - used)
			return r1_fail(err, "name too long: %.80s", s);
		used += n;
		s += k;
		if (*s == '/')
			s++;
	}
	return 0;
}

/* ---------- Hugging Face ---------- */

typedef struct hub_file
{
	char	   *name;			/* rfilename: path inside the repository */
	int64_t		size;
	r1_digest_kind kind;
	char		digest[65];		/* blob name: lfs sha256, or the git blob sha1 */
	int			selected;
} hub_file;

typedef struct hub
{
	const char *repo;			/* org/name */
	const char *rev;
	const char *include;
	char		endpoint[1024];
	char		token[1024];	/* "" when none */
	char		repodir[PATH_CAP];	/* cache/models--org--name */
	hub_file   *files;
	int			n_files;
	int			gguf;			/* index of the one GGUF file pulled, or -1 */
} hub;

static void
hub_files_free(hub *h)
{
	for (int i = 0; i < h->n_files; i++)
		free(h->files[i].name);
	free(h->files);
	h->files = NULL;
	h->n_files = 0;
}

static int
hub_add_file(hub *h, const char *name, r1_error *err)
{
	hub_file   *f = realloc(h->files, sizeof(hub_file) * (h->n_files + 1));

	if (!f)
		return r1_fail(err, "out of memory");
	h->files = f;
	f = &h->files[h->n_files];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	if (!f->name)
		return r1_fail(err, "out of memory");
	h->n_files++;
	return 0;
}

static int
is_r1_aux_file(const char *name)
{
	static const char *aux[] = {"config.json", "generation_config.json", "tokenizer.json",
	"tokenizer_config.json"};

	for (size_t i = 0; i < sizeof(aux) / sizeof(aux[0]); i++)
		if (strcmp(name, aux[i]) == 0)
			return 1;
	return 0;
}

/*
 * Mark what to pull.  With --include: every file matching the glob.  Else
 * what r1 loads: config.json, the tokenizer files and the top-level
 * *.safetensors with their index; without safetensors, the one GGUF file (of
 * several, the Q4_K_M one).  h->gguf is set when the pull is one GGUF file.
 */
static int
hub_select(hub *h, r1_error *err)
{
	int			n_st = 0,
				n_gguf = 0,
				n_sel = 0,
				last_gguf = -1,
				q4km = -1,
				n_q4km = 0;
	char		names[256] = "";

	h->gguf = -1;
	if (h->include)
	{
		for (int i = 0; i < h->n_files; i++)
			if (fnmatch(h->include, h->files[i].name, 0) == 0)
			{
				h->files[i].selected = 1;
				n_sel++;
				if (has_suffix_ci(h->files[i].name, ".gguf"))
					last_gguf = i;
			}
		if (n_sel == 0)
			return r1_fail(err, "%s@%s: no file matches --include '%s'", h->repo, h->rev, h->include);
		if (n_sel == 1 && last_gguf >= 0)
			h->gguf = last_gguf;
		return 0;
	}
	for (int i = 0; i < h->n_files; i++)
	{
		const char *nm = h->files[i].name;

		if (strchr(nm, '/'))
			continue;
		if (has_suffix_ci(nm, ".safetensors"))
			n_st++;
		else if (has_suffix_ci(nm, ".gguf"))
		{
			n_gguf++;
			last_gguf = i;
			if (strcasestr(nm, "q4_k_m"))
				q4km = i, n_q4km++;
			if (strlen(names) + strlen(nm) + 8 < sizeof(names))
				snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", names[0] ? ", " : "", nm);
		}
	}
	if (n_st > 0)
	{
		for (int i = 0; i < h->n_files; i++)
		{
			const char *nm = h->files[i].name;

			if (!strchr(nm, '/') && (is_r1_aux_file(nm) || has_suffix_ci(nm, ".safetensors") ||
									 has_suffix_ci(nm, ".safetensors.index.json")))
				h->files[i].selected = 1;
		}
		return 0;
	}
	if (n_gguf == 1 || n_q4km == 1)
	{
		h->gguf = n_gguf == 1 ? last_gguf : q4km;
		h->files[h->gguf].selected = 1;
		return 0;
	}
	if (n_gguf > 1)
		return r1_fail(err, "%s@%s holds %d GGUF files; choose one with --include, e.g. --include '*Q8_0.gguf' "
					   "(%s)", h->repo, h->rev, n_gguf, names);
	return r1_fail(err, "%s@%s has no *.safetensors or .gguf weights that r1 can load (PyTorch .bin "
				   "checkpoints are not read)", h->repo, h->rev);
}

/* Hugging Face's cache root: HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub */
static int
hf_home(char *buf, size_t cap, r1_error *err)
{
	const char *v;

	if ((v = env_nonempty("HF_HOME")))
		return fmt_path(buf, cap, err, "%s", v);
	if ((v = env_nonempty("XDG_CACHE_HOME")))
		return fmt_path(buf, cap, err, "%s/huggingface", v);
	if ((v = env_nonempty("HOME")))
		return fmt_path(buf, cap, err, "%s/.cache/huggingface", v);
	return r1_fail(err, "neither HF_HOME nor HOME is set: give the cache with --dir DIR");
}

/* HF_TOKEN, else the token file `huggingface-cli login` writes */
static void
hf_token(char *buf, size_t cap)
{
	const char *v;
	char		path[PATH_CAP];
	FILE	   *f;

	buf[0] = '\0';
	if ((v = env_nonempty("HF_TOKEN")) || (v = env_nonempty("HUGGING_FACE_HUB_TOKEN")))
	{
		snprintf(buf, cap, "%s", v);
		return;
	}
	if ((v = env_nonempty("HF_TOKEN_PATH")))
		snprintf(path, sizeof(path), "%s", v);
	else if (hf_home(path, sizeof(path) - 8, NULL) == 0)
		strcat(path, "/token");
	else
		return;
	f = fopen(path, "r");
	if (!f)
		return;
	if (fgets(buf, (int) cap, f))
		buf[strcspn(buf, "\r\n \t")] = '\0';
	else
		buf[0] = '\0';
	fclose(f);
}

/* the commit a revision names in the cache: itself when a full sha, else refs/{rev} */
static int
hub_cached_commit(hub *h, char *commit)
{
	char		path[PATH_CAP];
	char	   *buf;
	size_t		len;
	r1_error	e;

	if (is_hex(h->rev, 40))
	{
		strcpy(commit, h->rev);
		return 0;
	}
	if (fmt_path(path, sizeof(path), &e, "%s/refs/%s", h->repodir, h->rev) != 0 ||
		r1_read_file(path, &buf, &len, &e) != 0)
		return -1;
	buf[strcspn(buf, "\r\n")] = '\0';
	if (!is_hex(buf, 40))
	{
		free(buf);
		return -1;
	}
	strcpy(commit, buf);
	free(buf);
	return 0;
}

/* every shard a safetensors index names is present in dir */
static int
index_complete(const char *dir, const char *index, r1_error *err)
{
	char		path[PATH_CAP];
	json_t	   *j,
			   *map,
			   *v;
	const char *k;
	int			ok = 0;

	if (fmt_path(path, sizeof(path), err, "%s/%s", dir, index) != 0)
		return -1;
	j = json_load_file(path, 0, NULL);
	map = j ? json_object_get(j, "weight_map") : NULL;
	if (!json_is_object(map))
		ok = r1_fail(err, "%s: no weight_map", path);
	else
		json_object_foreach(map, k, v)
	{
		int64_t		sz;

		if (!json_is_string(v) || !is_safe_relpath(json_string_value(v)) ||
			fmt_path(path, sizeof(path), err, "%s/%s", dir, json_string_value(v)) != 0 ||
			file_size(path, &sz) != 0)
		{
			ok = r1_fail(err, "%s: shard %s is missing", dir, json_is_string(v) ? json_string_value(v) : "?");
			break;
		}
	}
	json_decref(j);
	return ok;
}

/*
 * The cached snapshot of h->rev, when a pull of it completed before: its
 * top-level files, selected as the hub's list would be.  out: the path.
 */
static int
hub_from_cache(hub *h, char *out, size_t outsize, r1_error *err)
{
	char		commit[41],
				snap[PATH_CAP],
				path[PATH_CAP];
	DIR		   *d;
	struct dirent *de;
	int			rc = 0;

	if (hub_cached_commit(h, commit) != 0)
		return r1_fail(err, "%s@%s is not in the cache %s", h->repo, h->rev, h->repodir);
	if (fmt_path(snap, sizeof(snap), err, "%s/snapshots/%s", h->repodir, commit) != 0)
		return -1;
	d = opendir(snap);
	if (!d)
		return r1_fail(err, "%s@%s is not in the cache (%s: %s)", h->repo, h->rev, snap, strerror(errno));
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && hub_add_file(h, de->d_name, err) != 0)
		{
			rc = -1;
			break;
		}
	closedir(d);
	if (rc != 0 || hub_select(h, err) != 0)
		return -1;
	for (int i = 0; i < h->n_files; i++)
	{
		int64_t		sz;

		if (!h->files[i].selected)
			continue;
		if (fmt_path(path, sizeof(path), err, "%s/%s", snap, h->files[i].name) != 0)
			return -1;
		if (file_size(path, &sz) != 0)
			return r1_fail(err, "%s: %s is missing from the cached snapshot", h->repo, h->files[i].name);
		if (has_suffix_ci(h->files[i].name, ".safetensors.index.json") &&
			index_complete(snap, h->files[i].name, err) != 0)
			return -1;
	}
	if (h->gguf >= 0)
		return fmt_path(out, outsize, err, "%s/%s", snap, h->files[h->gguf].name);
	return fmt_path(out, outsize, err, "%s", snap);
}

/* the model-info API's answer into h->files; the commit into commit */
static int
hub_parse_info(hub *h, const char *body, char *commit, r1_error *err)
{
	json_error_t je;
	json_t	   *j = json_loads(body, 0, &je),
			   *sib,
			   *f;
	size_t		i;
	const char *sha;

	if (!j)
		return r1_fail(err, "%s: the hub's model info is not JSON (%s)", h->repo, je.text);
	sha = json_string_value(json_object_get(j, "sha"));
	sib = json_object_get(j, "siblings");
	if (!sha || !is_hex(sha, 40) || !json_is_array(sib))
	{
		json_decref(j);
		return r1_fail(err, "%s: the hub's model info lacks \"sha\" or \"siblings\" (is HF_ENDPOINT a "
					   "Hugging Face hub?)", h->repo);
	}
	strcpy(commit, sha);
	json_array_foreach(sib, i, f)
	{
		const char *name = json_string_value(json_object_get(f, "rfilename"));
		const char *blob = json_string_value(json_object_get(f, "blobId"));
		json_t	   *lfs = json_object_get(f, "lfs");
		json_t	   *size = json_object_get(f, "size");
		hub_file   *hf;

		if (!name || !is_safe_relpath(name))
		{
			json_decref(j);
			return r1_fail(err, "%s: the hub lists a file with an unusable name \"%.80s\"", h->repo,
						   name ? name : "(none)");
		}
		if (hub_add_file(h, name, err) != 0)
		{
			json_decref(j);
			return -1;
		}
		hf = &h->files[h->n_files - 1];
		hf->size = -1;
		if (json_is_object(lfs))
		{
			const char *s = json_string_value(json_object_get(lfs, "sha256"));

			hf->kind = R1_DIGEST_SHA256;
			if (s && is_hex(s, 64))
				strcpy(hf->digest, s);
			if (json_is_integer(json_object_get(lfs, "size")))
				hf->size = json_integer_value(json_object_get(lfs, "size"));
		}
		else
		{
			hf->kind = R1_DIGEST_GIT_SHA1;
			if (blob && is_hex(blob, 40))
				strcpy(hf->digest, blob);
			if (json_is_integer(size))
				hf->size = json_integer_value(size);
		}
	}
	json_decref(j);
	return 0;
}

/* what a refused model-info request means, in words */
static int
hub_api_error(hub *h, const r1_http_reply *r, r1_error *api_err, r1_error *err)
{
	const char *msg = r->error_message;

	switch (r->status)
	{
		case 401:
			if (h->token[0])
				return r1_fail(err, "%s: the hub refused HF_TOKEN (HTTP 401%s%s): the token is invalid or "
							   "expired, or the repository does not exist", h->repo, msg[0] ? ": " : "", msg);
			return r1_fail(err, "%s: HTTP 401 Unauthorized: the repository is gated or private (or does not "
						   "exist); set HF_TOKEN to a token with access to the gated repository", h->repo);
		case 403:
			return r1_fail(err, "%s: HTTP 403 Forbidden: this token has no access to the gated repository; "
						   "request access on its page (%s/%s) or use another HF_TOKEN", h->repo,
						   h->endpoint, h->repo);
		case 404:
			if (strcmp(r->error_code, "RevisionNotFound") == 0)
				return r1_fail(err, "%s: revision \"%s\" not found (HTTP 404); check --revision", h->repo, h->rev);
			return r1_fail(err, "%s: repository not found on %s (HTTP 404%s%s); check the name", h->repo,
						   h->endpoint, msg[0] ? ": " : "", msg);
		default:
			return r1_fail(err, "%s", api_err->msg);
	}
}

/* snapshots/{commit}/{name} -> ../../blobs/{digest} (one more ../ per directory in name) */
static int
hub_link(hub *h, const char *commit, const hub_file *f, r1_error *err)
{
	char		link[PATH_CAP],
				target[PATH_CAP] = "",
				have[PATH_CAP];
	ssize_t		n;

	if (fmt_path(link, sizeof(link), err, "%s/snapshots/%s/%s", h->repodir, commit, f->name) != 0 ||
		mkdirs_parent(link, err) != 0)
		return -1;
	for (const char *p = f->name; (p = strchr(p, '/')); p++)
		strcat(target, "../");
	strcat(target, "../../blobs/");
	strcat(target, f->digest);
	n = readlink(link, have, sizeof(have) - 1);
	if (n >= 0)
	{
		have[n] = '\0';
		if (strcmp(have, target) == 0)
			return 0;
	}
	if (n >= 0 || errno == EINVAL)
		unlink(link);
	if (symlink(target, link) != 0)
		return r1_fail(err, "%s: cannot create the link: %s", link, strerror(errno));
	return 0;
}

static int
hub_pull_file(hub *h, const char *commit, hub_file *f, r1_error *err)
{
	char		blob[PATH_CAP],
				partial[PATH_CAP],
				url[8192],
				rev_esc[512],
				name_esc[4096],
				sha256[65];
	int64_t		have;
	const char *status = "cached";

	if (f->size < 0 || !f->digest[0])
		return r1_fail(err, "%s: the hub gave no size or digest for %s (the API must be asked with "
					   "?blobs=true)", h->repo, f->name);
	if (fmt_path(blob, sizeof(blob), err, "%s/blobs/%s", h->repodir, f->digest) != 0 ||
		fmt_path(partial, sizeof(partial), err, "%s.incomplete", blob) != 0)
		return -1;
	if (file_size(blob, &have) == 0 && have == f->size)
	{
		if (f->kind == R1_DIGEST_SHA256)
			strcpy(sha256, f->digest);
		else if (r1_digest_file(blob, R1_DIGEST_SHA256, sha256, NULL, err) != 0)
			return -1;
	}
	else
	{
		r1_fetch_file ff;
		r1_http_reply r;

		if (escape_path(commit, rev_esc, sizeof(rev_esc), err) != 0 ||
			escape_path(f->name, name_esc, sizeof(name_esc), err) != 0 ||
			fmt_path(url, sizeof(url), err, "%s/%s/resolve/%s/%s", h->endpoint, h->repo, rev_esc, name_esc) != 0)
			return -1;
		unlink(blob);			/* a blob of the wrong size is not this file */
		memset(&ff, 0, sizeof(ff));
		ff.url = url;
		ff.bearer = h->token[0] ? h->token : NULL;
		ff.label = f->name;
		ff.dest = blob;
		ff.partial = partial;
		ff.size = f->size;
		ff.kind = f->kind;
		ff.digest = f->digest;
		if (r1_fetch(&ff, &r, err) != 0)
		{
			if (r.status == 401 || r.status == 403)
				return r1_fail(err, "%s: HTTP %ld for %s; %s", h->repo, r.status, f->name,
							   h->token[0] ? "this HF_TOKEN has no access to the gated repository" :
							   "set HF_TOKEN to a token with access to the gated repository");
			if (r.status == 404)
				return r1_fail(err, "%s: %s not found at %s (HTTP 404)", h->repo, f->name, url);
			return -1;
		}
		strcpy(sha256, ff.sha256);
		status = ff.resumed ? "resumed" : "downloaded";
	}
	if (hub_link(h, commit, f, err) != 0)
		return -1;
	report(f->name, f->size, sha256, status, NULL);
	return 0;
}

static int
pull_hub(const r1_pull_opts *o, char *out, size_t outsize, r1_error *err)
{
	hub			h;
	char		cache[PATH_CAP],
				home[PATH_CAP],
				url[4096],
				rev_esc[512],
				commit[41],
				path[PATH_CAP];
	const char *slash = strchr(o->spec, '/');
	char	   *body = NULL;
	size_t		len;
	r1_http_reply r;
	r1_error	api_err;
	int			rc = -1;

	memset(&h, 0, sizeof(h));
	h.repo = o->spec;
	h.rev = o->revision ? o->revision : "main";
	h.include = o->include;
	if (!slash || !is_plain_name(o->spec, slash - o->spec) || !is_plain_name(slash + 1, strlen(slash + 1)))
		return r1_fail(err, "\"%s\" is not a Hugging Face repository name (org/name) or ollama:NAME[:TAG]",
					   o->spec);
	if (!is_safe_relpath(h.rev))
		return r1_fail(err, "--revision \"%s\" is not a branch, tag or commit name", h.rev);
	snprintf(h.endpoint, sizeof(h.endpoint), "%s",
			 env_nonempty("HF_ENDPOINT") ? getenv("HF_ENDPOINT") : HF_DEFAULT_ENDPOINT);
	while (strlen(h.endpoint) > 0 && h.endpoint[strlen(h.endpoint) - 1] == '/')
		h.endpoint[strlen(h.endpoint) - 1] = '\0';
	hf_token(h.token, sizeof(h.token));
	if (o->dir)
		snprintf(cache, sizeof(cache), "%s", o->dir);
	else if (env_nonempty("HF_HUB_CACHE"))
		snprintf(cache, sizeof(cache), "%s", getenv("HF_HUB_CACHE"));
	else if (hf_home(home, sizeof(home), err) != 0 || fmt_path(cache, sizeof(cache), err, "%s/hub", home) != 0)
		return -1;
	if (fmt_path(h.repodir, sizeof(h.repodir), err, "%s/models--%.*s--%s", cache, (int) (slash - o->spec),
				 o->spec, slash + 1) != 0)
		return -1;

	if (env_true("HF_HUB_OFFLINE"))
	{
		r1_error	why;

		rc = hub_from_cache(&h, out, outsize, &why);
		if (rc != 0)
			r1_fail(err, "HF_HUB_OFFLINE is set and the cache cannot serve the pull: %s", why.msg);
		hub_files_free(&h);
		return rc;
	}

	/*
	 * the commit, and every file's size and digest (a revision with '/' is
	 * one path segment)
	 */
	{
		char	   *e = curl_easy_escape(NULL, h.rev, 0);

		if (!e)
			return r1_fail(err, "out of memory");
		snprintf(rev_esc, sizeof(rev_esc), "%s", e);
		curl_free(e);
	}
	if (fmt_path(url, sizeof(url), err, "%s/api/models/%s/revision/%s?blobs=true", h.endpoint, h.repo,
				 rev_esc) != 0)
		return -1;
	if (r1_http_get(url, h.token[0] ? h.token : NULL, "application/json", &body, &len, &r, &api_err) != 0)
	{
		if (r.unreachable && hub_from_cache(&h, out, outsize, err) == 0)
		{
			fprintf(stderr, "r1: %s; using the cached snapshot\n", api_err.msg);
			hub_files_free(&h);
			return 0;
		}
		hub_files_free(&h);
		return r.status ? hub_api_error(&h, &r, &api_err, err) : r1_fail(err, "%s", api_err.msg);
	}
	if (hub_parse_info(&h, body, commit, err) != 0 || hub_select(&h, err) != 0)
		goto out;
	if (fmt_path(path, sizeof(path), err, "%s/blobs", h.repodir) != 0 || mkdirs(path, err) != 0 ||
		fmt_path(path, sizeof(path), err, "%s/snapshots/%s", h.repodir, commit) != 0 || mkdirs(path, err) != 0)
		goto out;
	for (int i = 0; i < h.n_files; i++)
		if (h.files[i].selected && hub_pull_file(&h, commit, &h.files[i], err) != 0)
			goto out;
	/* the ref last: a cached ref means a complete snapshot */
	if (strcmp(h.rev, commit) != 0 &&
		(fmt_path(path, sizeof(path), err, "%s/refs/%s", h.repodir, h.rev) != 0 ||
		 write_atomic(path, commit, 40, err) != 0))
		goto out;
	if (h.gguf >= 0)
		rc = fmt_path(out, outsize, err, "%s/snapshots/%s/%s", h.repodir, commit, h.files[h.gguf].name);
	else
		rc = fmt_path(out, outsize, err, "%s/snapshots/%s", h.repodir, commit);
out:
	free(body);
	hub_files_free(&h);
	return rc;
}

/* ---------- Ollama ---------- */

typedef struct ollama
{
	char		ns[128],
				name[128],
				tag[128];
	char		registry[1024]; /* scheme://host[:port], no trailing slash */
	char		host[256];
	char		root[PATH_CAP]; /* $OLLAMA_MODELS */
} ollama;

/* "[ns/]name[:tag]" */
static int
ollama_parse(ollama *ol, const char *s, r1_error *err)
{
	const char *slash = strchr(s, '/');
	const char *colon = strrchr(s, ':');
	const char *name = slash ? slash + 1 : s;
	size_t		nlen;

	if (colon && colon < name)
		colon = NULL;
	nlen = colon ? (size_t) (colon - name) : strlen(name);
	if (slash && strchr(slash + 1, '/'))
		return r1_fail(err, "ollama:%s: give [namespace/]name[:tag]", s);
	if ((slash && !is_plain_name(s, slash - s)) || !is_plain_name(name, nlen) ||
		(colon && !is_plain_name(colon + 1, strlen(colon + 1))))
		return r1_fail(err, "ollama:%s is not a model name: give ollama:[namespace/]name[:tag]", s);
	snprintf(ol->ns, sizeof(ol->ns), "%.*s", slash ? (int) (slash - s) : 7, slash ? s : "library");
	snprintf(ol->name, sizeof(ol->name), "%.*s", (int) nlen, name);
	snprintf(ol->tag, sizeof(ol->tag), "%s", colon ? colon + 1 : "latest");
	return 0;
}

typedef struct layer
{
	const char *media_type;
	const char *digest;			/* "sha256:<hex>" */
	int64_t		size;
} layer;

/* "model", "template", ... of application/vnd.ollama.image.*; "config" for the image config */
static const char *
layer_kind(const char *media_type)
{
	const char *p = strstr(media_type, "ollama.image.");

	return p ? p + strlen("ollama.image.") : "config";
}

static int
ollama_blob(ollama *ol, const layer *l, char *blob, size_t cap, r1_error *err)
{
	char		partial[PATH_CAP],
				url[4096],
				sha256[65];
	int64_t		have;
	const char *hex = l->digest + 7;
	const char *status = "cached";

	if (strncmp(l->digest, "sha256:", 7) != 0 || !is_hex(hex, 64) || l->size < 0)
		return r1_fail(err, "ollama:%s/%s:%s: the manifest has a layer without a sha256 digest and size",
					   ol->ns, ol->name, ol->tag);
	if (fmt_path(blob, cap, err, "%s/blobs/sha256-%s", ol->root, hex) != 0 ||
		fmt_path(partial, sizeof(partial), err, "%s.incomplete", blob) != 0)
		return -1;
	if (file_size(blob, &have) == 0 && have == l->size)
		strcpy(sha256, hex);
	else
	{
		r1_fetch_file ff;
		r1_http_reply r;
		char		label[400];

		if (fmt_path(url, sizeof(url), err, "%s/v2/%s/%s/blobs/%s", ol->registry, ol->ns, ol->name,
					 l->digest) != 0)
			return -1;
		snprintf(label, sizeof(label), "%s:%s %s", ol->name, ol->tag, layer_kind(l->media_type));
		unlink(blob);
		memset(&ff, 0, sizeof(ff));
		ff.url = url;
		ff.label = label;
		ff.dest = blob;
		ff.partial = partial;
		ff.size = l->size;
		ff.kind = R1_DIGEST_SHA256;
		ff.digest = hex;
		if (r1_fetch(&ff, &r, err) != 0)
		{
			if (r.status == 404)
				return r1_fail(err, "ollama:%s/%s:%s: blob %s not found in %s (HTTP 404)", ol->ns, ol->name,
							   ol->tag, l->digest, ol->registry);
			return -1;
		}
		strcpy(sha256, ff.sha256);
		status = ff.resumed ? "resumed" : "downloaded";
	}
	{
		const char *base = strrchr(blob, '/');

		report(base ? base + 1 : blob, l->size, sha256, status, layer_kind(l->media_type));
	}
	return 0;
}

static int
pull_ollama(const r1_pull_opts *o, char *out, size_t outsize, r1_error *err)
{
	ollama		ol;
	const char *v;
	char		url[4096],
				manifest_path[PATH_CAP],
				blob[PATH_CAP],
				model_blob[PATH_CAP] = "";
	char	   *body = NULL;
	size_t		len;
	r1_http_reply r;
	r1_error	get_err;
	json_t	   *j = NULL,
			   *layers;
	layer		ls[64];
	int			n = 0,
				rc = -1,
				from_cache = 0;

	memset(&ol, 0, sizeof(ol));
	if (o->revision || o->include)
		return r1_fail(err, "--revision and --include are for Hugging Face repositories; the tag names an "
					   "Ollama model (ollama:NAME:TAG)");
	if (ollama_parse(&ol, o->spec + strlen("ollama:"), err) != 0)
		return -1;
	v = env_nonempty("R1_OLLAMA_REGISTRY") ? getenv("R1_OLLAMA_REGISTRY") :
		env_nonempty("OLLAMA_REGISTRY") ? getenv("OLLAMA_REGISTRY") : OLLAMA_DEFAULT_REGISTRY;
	snprintf(ol.registry, sizeof(ol.registry), "%s%s", strstr(v, "://") ? "" : "https://", v);
	while (ol.registry[strlen(ol.registry) - 1] == '/')
		ol.registry[strlen(ol.registry) - 1] = '\0';
	{
		const char *h = strstr(ol.registry, "://") + 3;
		size_t		k = strcspn(h, "/");

		snprintf(ol.host, sizeof(ol.host), "%.*s", (int) k, h);
		if (k == 0 || strchr(ol.host, '@') || !is_safe_relpath(ol.host))
			return r1_fail(err, "registry \"%s\" is not a URL (R1_OLLAMA_REGISTRY)", ol.registry);
	}
	if (o->dir)
		snprintf(ol.root, sizeof(ol.root), "%s", o->dir);
	else if (env_nonempty("OLLAMA_MODELS"))
		snprintf(ol.root, sizeof(ol.root), "%s", getenv("OLLAMA_MODELS"));
	else if (env_nonempty("HOME"))
	{
		if (fmt_path(ol.root, sizeof(ol.root), err, "%s/.ollama/models", getenv("HOME")) != 0)
			return -1;
	}
	else
		return r1_fail(err, "neither OLLAMA_MODELS nor HOME is set: give the store with --dir DIR");
	if (fmt_path(manifest_path, sizeof(manifest_path), err, "%s/manifests/%s/%s/%s/%s", ol.root, ol.host,
				 ol.ns, ol.name, ol.tag) != 0 ||
		fmt_path(url, sizeof(url), err, "%s/v2/%s/%s/manifests/%s", ol.registry, ol.ns, ol.name, ol.tag) != 0)
		return -1;

	if (r1_http_get(url, NULL, OLLAMA_MANIFEST_ACCEPT, &body, &len, &r, &get_err) != 0)
	{
		if (r.unreachable && r1_read_file(manifest_path, &body, &len, err) == 0)
		{
			fprintf(stderr, "r1: %s; using the cached manifest\n", get_err.msg);
			from_cache = 1;
		}
		else if (r.status == 404)
			return r1_fail(err, "ollama:%s/%s:%s: no such model or tag in %s (HTTP 404); check the name and tag",
						   ol.ns, ol.name, ol.tag, ol.registry);
		else if (r.status == 401 || r.status == 403)
			return r1_fail(err, "ollama:%s/%s:%s: the registry %s refused access (HTTP %ld); private models "
						   "are not supported", ol.ns, ol.name, ol.tag, ol.registry, r.status);
		else
			return r1_fail(err, "%s", get_err.msg);
	}
	j = json_loadb(body, len, 0, NULL);
	layers = j ? json_object_get(j, "layers") : NULL;
	if (!json_is_array(layers))
	{
		r1_fail(err, "ollama:%s/%s:%s: the manifest from %s has no layers", ol.ns, ol.name, ol.tag, ol.registry);
		goto out;
	}
	{
		json_t	   *cfg = json_object_get(j, "config");
		size_t		i;
		json_t	   *l;

		json_array_foreach(layers, i, l)
		{
			if (n == (int) (sizeof(ls) / sizeof(ls[0])))
				break;
			ls[n].media_type = json_string_value(json_object_get(l, "mediaType"));
			ls[n].digest = json_string_value(json_object_get(l, "digest"));
			ls[n].size = json_is_integer(json_object_get(l, "size")) ?
				json_integer_value(json_object_get(l, "size")) : -1;
			if (!ls[n].media_type || !ls[n].digest)
			{
				r1_fail(err, "ollama:%s/%s:%s: a manifest layer lacks mediaType or digest", ol.ns, ol.name, ol.tag);
				goto out;
			}
			n++;
		}
		if (json_is_object(cfg) && n < (int) (sizeof(ls) / sizeof(ls[0])) &&
			json_string_value(json_object_get(cfg, "digest")))
		{
			ls[n].media_type = json_string_value(json_object_get(cfg, "mediaType"));
			if (!ls[n].media_type)
				ls[n].media_type = "config";
			ls[n].digest = json_string_value(json_object_get(cfg, "digest"));
			ls[n].size = json_is_integer(json_object_get(cfg, "size")) ?
				json_integer_value(json_object_get(cfg, "size")) : -1;
			n++;
		}
	}
	{
		int			has_model = 0;

		for (int i = 0; i < n; i++)
			has_model |= strcmp(ls[i].media_type, OLLAMA_MODEL_MEDIA_TYPE) == 0;
		if (!has_model)
		{
			r1_fail(err, "ollama:%s/%s:%s: the manifest has no model layer (%s)", ol.ns, ol.name, ol.tag,
					OLLAMA_MODEL_MEDIA_TYPE);
			goto out;
		}
	}
	if (fmt_path(blob, sizeof(blob), err, "%s/blobs", ol.root) != 0 || mkdirs(blob, err) != 0)
		goto out;
	for (int i = 0; i < n; i++)
	{
		if (ollama_blob(&ol, &ls[i], blob, sizeof(blob), err) != 0)
			goto out;
		if (!model_blob[0] && strcmp(ls[i].media_type, OLLAMA_MODEL_MEDIA_TYPE) == 0)
			strcpy(model_blob, blob);
	}
	if (!r1_gguf_is_gguf(model_blob))
	{
		r1_fail(err, "ollama:%s/%s:%s: the model layer %s is not a GGUF file", ol.ns, ol.name, ol.tag, model_blob);
		goto out;
	}
	if (!from_cache && write_atomic(manifest_path, body, len, err) != 0)
		goto out;
	rc = fmt_path(out, outsize, err, "%s", model_blob);
out:
	json_decref(j);
	free(body);
	return rc;
}

/* ---------- entry ---------- */

int
r1_pull(const r1_pull_opts *o, char *out, size_t outsize, r1_error *err)
{
	int			rc;

	if (r1_http_init(err) != 0)
		return -1;
	if (strncmp(o->spec, "ollama:", 7) == 0)
		rc = pull_ollama(o, out, outsize, err);
	else
		rc = pull_hub(o, out, outsize, err);
	r1_http_cleanup();
	return rc;
}
