/*
 * r1.c - the r1 command-line tool: the engine without PostgreSQL.
 *
 * Every subcommand prints JSON on stdout (pull: the model's path, for
 * R1_MODEL=$(r1 pull ...)); bad input exits 1 (2 for usage)
 * with a one-line error on stderr.  Scripts and tests depend on this
 * interface: keep it stable.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat.h"
#include "checksum.h"
#include "cpu_features.h"
#include "demo_model.h"
#include "engine.h"
#include "gguf_convert.h"
#include "pull.h"
#include "server.h"				/* src/serve: r1 serve */
#include "version.h"

static const char *usage_text =
"usage: r1 COMMAND [OPTIONS]    (r1 --version: the build)\n"
"  tokenize   --model DIR [TEXT]            ids of TEXT (stdin when absent)\n"
"  detokenize --model DIR IDS               text of comma-separated ids\n"
"  logits     --model DIR --ids 1,2,3 [--device D]   logits at every position\n"
"  generate   --model DIR (--prompt TEXT | --ids 1,2,3) [--raw] [--system TEXT]\n"
"             [--max-tokens N] [--temperature T] [--top-p P] [--top-k K] [--min-p P]\n"
"             [--seed S] [--ignore-eos] [--device cpu|cuda|auto] [--threads N]\n"
"             [--max-think-tokens N] [--batch-invariant]\n"
"             [--repetition-max-span N] [--repetition-min-repeats N] [--repetition-min-tokens N]\n"
"  bench      (--model DIR | --random-weights 1.5b|7b|14b|32b|llama-8b|llama-70b|CONFIG.json) [--device D]\n"
"             [--batch N] [--prompt-len N] [--gen-len N] [--threads N] [--dtype bf16|f16|f32]\n"
"             [--batch-invariant]\n"
"  checksum   --model DIR                   checksum of the weight bytes (as r1_status() reports it)\n"
"  demo-model --out DIR [--tokenizer DIR] [--text TEXT] [--loop | --cycle]   write a tiny model with\n"
"             a known output (--loop: repeat the text's last token forever instead of ending;\n"
"             --cycle: repeat the whole text forever, a loop for loop detection;\n"
"             --answers DIGITS: the text's last digit may as likely be any of DIGITS, so a\n"
"             sampled answer depends on the seed, e.g. --answers 13: 41, 42 or 43)\n"
"  convert    (--model DIR | --random-weights SHAPE [--seed S]) --out FILE.gguf\n"
"             --type f32|f16|bf16|q8_0|q4_0|q5_0|q4_k|q5_k|q6_k|q4_k_m [--tokenizer-from DIR]\n"
"                                           write a checkpoint as GGUF (llama.cpp layout)\n"
"  (--model also takes a .gguf file: Qwen2 and Llama GGUF files from llama.cpp / Ollama)\n"
"  pull       ORG/NAME [--revision REV] [--include GLOB] [--dir DIR]\n"
"             ollama:[NS/]NAME[:TAG] [--dir DIR]\n"
"                                           download a model (Hugging Face hub, Ollama registry),\n"
"                                           verified, into the cache; prints its path\n"
"  serve      --socket PATH (--model DIR | --random-weights SHAPE) [OPTIONS]\n"
"                                           the engine host of the r1_pg extension\n"
"                                           (r1 serve --help: its options)\n"
"  --max-think-tokens N  close the think section with </think> after N tokens\n"
"                        (finish_reason \"think_budget\" when the answer then ends)\n"
"  --batch-invariant     results bitwise independent of the rest of the batch\n"
"  --repetition-max-span N, --repetition-min-repeats N, --repetition-min-tokens N\n"
"                        loop detection: stop (finish_reason \"repetition\") when the output\n"
"                        ends with a span of <= N tokens repeated back to back (defaults\n"
"                        512, 4, 256; --repetition-max-span 0 turns it off; so does --ignore-eos)\n"
"  --kv-cache-dtype f16|bf16|f32  (logits, generate, bench, serve) CPU KV cache type (default f16)\n"
"  --cpu-precision fast|exact  (logits, generate, bench, serve) CPU arithmetic: fast (default)\n"
"                        multiplies quantised weights with 8-bit activations and bf16 weights\n"
"                        with bf16 activations (llama.cpp's way); exact keeps float32\n";

static void
__attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "r1: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	exit(1);
}

/* a usage error is one line too; the full text only for --help */
static void
__attribute__((noreturn))
usage(const char *msg)
{
	if (msg)
		fprintf(stderr, "r1: %s (see r1 --help)\n", msg);
	else
		fputs(usage_text, stderr);
	exit(2);
}

/* ---------- options ---------- */

typedef struct opts
{
	const char *model;
	const char *random;
	const char *device;
	const char *prompt;
	const char *ids;
	const char *system;
	const char *out;
	const char *tokenizer;
	const char *text;
	const char *dtype;
	const char *type;
	const char *tokenizer_from;
	const char *revision;
	const char *dir;
	const char *include;
	const char *cpu_precision;
	const char *kv_cache_dtype;
	const char *positional;
	const char *answers;		/* demo-model --answers */
	const char *socket;			/* serve */
	int			help;			/* --help after the command (serve) */
	int			raw,
				ignore_eos,
				batch_invariant,
				loop,
				cycle;
	long		max_tokens,
				max_think_tokens,
				top_k,
				threads,
				batch,
				prompt_len,
				gen_len;
	double		temperature,
				top_p,
				min_p;
	/* serve; -1 = not given (the engine's default) */
	long		max_seqs,
				max_queued,
				max_ctx,
				kv_memory,
				max_clients,
				status_fd;
	double		gpu_memory_fraction;	/* serve; < 0 = not given */
	unsigned long long seed;
	int			has_seed;
	r1_repetition_opts repetition;	/* generate: loop detection */
} opts;

static long
parse_long(const char *name, const char *v, long lo, long hi)
{
	char	   *end;
	long		x;

	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi)
		die("%s must be an integer in [%ld, %ld], got \"%s\"", name, lo, hi, v);
	return x;
}

static double
parse_double(const char *name, const char *v)
{
	char	   *end;
	double		x;

	errno = 0;
	x = strtod(v, &end);
	if (errno || end == v || *end)
		die("%s must be a number, got \"%s\"", name, v);
	return x;
}

/*
 * The options of every command, argv[2...] (argv[1] is the command).  One
 * table for all: an option means the same to every command that takes it.
 */
static void
parse_opts(int argc, char **argv, opts *o)
{
	int			serve = strcmp(argv[1], "serve") == 0;

	memset(o, 0, sizeof(*o));
	o->max_seqs = o->max_queued = o->max_ctx = o->kv_memory = o->max_clients = o->status_fd = -1;
	o->gpu_memory_fraction = -1;
	o->device = "auto";
	o->max_tokens = 4096;
	o->temperature = R1_DEFAULT_TEMPERATURE;
	o->top_p = R1_DEFAULT_TOP_P;
	o->batch = 1;
	o->prompt_len = 128;
	o->gen_len = 128;
	r1_repetition_defaults(&o->repetition);
	for (int i = 2; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

#define VALUE() (v ? (i++, v) : (usage("option needs a value"), (const char *) NULL))
		if (strcmp(a, "--model") == 0)
			o->model = VALUE();
		else if (strcmp(a, "--random-weights") == 0 ||
				 (serve && strcmp(a, "--random") == 0)) /* serve's old spelling */
			o->random = VALUE();
		else if (strcmp(a, "--device") == 0)
			o->device = VALUE();
		else if (strcmp(a, "--prompt") == 0)
			o->prompt = VALUE();
		else if (strcmp(a, "--ids") == 0)
			o->ids = VALUE();
		else if (strcmp(a, "--system") == 0)
			o->system = VALUE();
		else if (strcmp(a, "--out") == 0)
			o->out = VALUE();
		else if (strcmp(a, "--tokenizer") == 0)
			o->tokenizer = VALUE();
		else if (strcmp(a, "--text") == 0)
			o->text = VALUE();
		else if (strcmp(a, "--loop") == 0)
			o->loop = 1;
		else if (strcmp(a, "--cycle") == 0)
			o->cycle = 1;
		else if (strcmp(a, "--answers") == 0)
			o->answers = VALUE();
		else if (strcmp(a, "--dtype") == 0)
			o->dtype = VALUE();
		else if (strcmp(a, "--type") == 0)
			o->type = VALUE();
		else if (strcmp(a, "--kv-cache-dtype") == 0)
			o->kv_cache_dtype = VALUE();
		else if (strcmp(a, "--cpu-precision") == 0)
			o->cpu_precision = VALUE();
		else if (strcmp(a, "--tokenizer-from") == 0)
			o->tokenizer_from = VALUE();
		else if (strcmp(a, "--revision") == 0)
			o->revision = VALUE();
		else if (strcmp(a, "--dir") == 0)
			o->dir = VALUE();
		else if (strcmp(a, "--include") == 0)
			o->include = VALUE();
		else if (strcmp(a, "--raw") == 0)
			o->raw = 1;
		else if (strcmp(a, "--ignore-eos") == 0)
			o->ignore_eos = 1;
		else if (strcmp(a, "--batch-invariant") == 0)
			o->batch_invariant = 1;
		else if (strcmp(a, "--max-think-tokens") == 0)
			o->max_think_tokens = parse_long("--max-think-tokens", VALUE(), 1, INT_MAX);
		else if (strcmp(a, "--repetition-max-span") == 0)
			o->repetition.max_span = (int) parse_long(a, VALUE(), 0, R1_REPETITION_SPAN_LIMIT);
		else if (strcmp(a, "--repetition-min-repeats") == 0)
			o->repetition.min_repeats = (int) parse_long(a, VALUE(), 2, INT_MAX);
		else if (strcmp(a, "--repetition-min-tokens") == 0)
			o->repetition.min_tokens = (int) parse_long(a, VALUE(), 1, INT_MAX);
		else if (strcmp(a, "--max-tokens") == 0)
			o->max_tokens = parse_long("--max-tokens", VALUE(), 1, INT_MAX);
		else if (strcmp(a, "--top-k") == 0)
			o->top_k = parse_long("--top-k", VALUE(), 0, INT_MAX);
		else if (strcmp(a, "--threads") == 0)
			o->threads = parse_long("--threads", VALUE(), 0, 4096); /* r1.threads: 4096 */
		else if (strcmp(a, "--batch") == 0)
			o->batch = parse_long("--batch", VALUE(), 1, 4096);
		else if (strcmp(a, "--prompt-len") == 0)
			o->prompt_len = parse_long("--prompt-len", VALUE(), 1, 1 << 20);
		else if (strcmp(a, "--gen-len") == 0)
			o->gen_len = parse_long("--gen-len", VALUE(), 1, 1 << 20);
		else if (strcmp(a, "--temperature") == 0)
			o->temperature = parse_double("--temperature", VALUE());
		else if (strcmp(a, "--top-p") == 0)
			o->top_p = parse_double("--top-p", VALUE());
		else if (strcmp(a, "--min-p") == 0)
			o->min_p = parse_double("--min-p", VALUE());
		else if (strcmp(a, "--socket") == 0)
			o->socket = VALUE();
		else if (strcmp(a, "--max-seqs") == 0)
			o->max_seqs = parse_long(a, VALUE(), 0, INT_MAX);
		else if (strcmp(a, "--max-queued") == 0)
			o->max_queued = parse_long(a, VALUE(), 0, INT_MAX);
		else if (strcmp(a, "--max-ctx") == 0)
			o->max_ctx = parse_long(a, VALUE(), 0, INT_MAX);
		else if (strcmp(a, "--kv-memory") == 0)
			o->kv_memory = parse_long(a, VALUE(), 0, LONG_MAX >> 20);
		else if (strcmp(a, "--max-clients") == 0)
			o->max_clients = parse_long(a, VALUE(), INT_MIN, INT_MAX);
		else if (strcmp(a, "--status-fd") == 0)
			o->status_fd = parse_long(a, VALUE(), -1, INT_MAX);
		else if (strcmp(a, "--gpu-memory-fraction") == 0)
			o->gpu_memory_fraction = parse_double(a, VALUE());
		else if (strcmp(a, "--cluster") == 0)
			(void) VALUE();		/* a label for ps: which server's host this is */
		else if (serve && (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0))
			o->help = 1;
		else if (strcmp(a, "--seed") == 0)
		{
			const char *s = VALUE();
			char	   *end;

			errno = 0;
			o->seed = strtoull(s, &end, 10);
			if (errno || end == s || *end || s[0] == '-')
				die("--seed must be a non-negative integer, got \"%s\"", s);
			o->has_seed = 1;
		}
		else if (a[0] == '-' && a[1] == '-')
			die("unknown option %s (see r1 --help)", a);
		else if (!o->positional)
			o->positional = a;
		else
			die("unexpected argument \"%s\"", a);
#undef VALUE
	}
}

/* "1,2,3" -> ids; whitespace around numbers allowed */
static int32_t *
parse_ids(const char *s, size_t *n)
{
	size_t		cap = 16;
	int32_t    *ids = malloc(sizeof(int32_t) * cap);
	const char *p = s;

	*n = 0;
	if (!ids)
		die("out of memory");
	while (*p)
	{
		char	   *end;
		long		v;

		errno = 0;
		v = strtol(p, &end, 10);
		if (errno || end == p || v < 0 || v > INT32_MAX)
			die("bad id list \"%s\": expected comma-separated non-negative integers", s);
		if (*n == cap)
		{
			cap *= 2;
			ids = realloc(ids, sizeof(int32_t) * cap);
			if (!ids)
				die("out of memory");
		}
		ids[(*n)++] = (int32_t) v;
		p = end;
		while (*p == ' ')
			p++;
		if (*p == ',')
			p++;
		else if (*p)
			die("bad id list \"%s\": expected comma-separated non-negative integers", s);
	}
	if (*n == 0)
		die("empty id list");
	return ids;
}

static char *
read_stdin(size_t *len)
{
	size_t		cap = 65536,
				n = 0;
	char	   *buf = malloc(cap + 1);

	if (!buf)
		die("out of memory");
	for (;;)
	{
		size_t		got = fread(buf + n, 1, cap - n, stdin);

		n += got;
		if (got == 0)
			break;
		if (n == cap)
		{
			cap *= 2;
			buf = realloc(buf, cap + 1);
			if (!buf)
				die("out of memory");
		}
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

static void
print_json(json_t *j)
{
	char	   *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY);

	if (!s)
		die("cannot format the result as JSON");
	puts(s);
	free(s);
	json_decref(j);
}

static json_t *
json_str_or_null(const char *s)
{
	return s ? json_stringn(s, strlen(s)) : json_null();
}

/* the engine options every command that runs the model shares */
static void
engine_opts(const opts *o, r1_engine_opts *eo_out)
{
	r1_engine_opts eo = *eo_out;

	if (!o->model && !o->random)
		usage("--model DIR is required");
	eo.model_dir = o->model;
	eo.random_shape = o->model ? NULL : o->random;
	eo.device = o->device;
	eo.threads = (int) o->threads;
	eo.batch_invariant = o->batch_invariant;
	if (o->cpu_precision)
	{
		if (strcmp(o->cpu_precision, "fast") != 0 && strcmp(o->cpu_precision, "exact") != 0)
			usage("--cpu-precision must be fast or exact");
		eo.cpu_exact = strcmp(o->cpu_precision, "exact") == 0;
	}
	if (o->kv_cache_dtype && r1_kv_cache_dtype_parse(o->kv_cache_dtype, &eo.kv_cache_dtype) != 0)
		usage("--kv-cache-dtype must be f32, f16 or bf16");
	if (o->dtype)
	{
		if (strcmp(o->dtype, "bf16") == 0)
			eo.random_dtype = R1_BF16;
		else if (strcmp(o->dtype, "f16") == 0)
			eo.random_dtype = R1_F16;
		else if (strcmp(o->dtype, "f32") == 0)
			eo.random_dtype = R1_F32;
		else
			die("--dtype must be bf16, f16 or f32");
	}
	*eo_out = eo;
}

static r1_engine *
open_engine(const opts *o, int max_seqs, int max_ctx, int prefill_chunk)
{
	r1_engine_opts eo;
	r1_engine  *e;
	r1_error	err;

	r1_engine_opts_defaults(&eo);
	engine_opts(o, &eo);
	eo.max_seqs = max_seqs;
	eo.max_ctx = max_ctx;
	if (prefill_chunk > 0)
		eo.prefill_chunk = prefill_chunk;
	if (r1_engine_open(&e, &eo, &err) != 0)
		die("%s", err.msg);
	return e;
}

/*
 * The log line of --device auto falling back to the CPU; printed when the
 * command has succeeded, so that an error stays the only line on stderr.
 */
static void
close_engine(r1_engine *e)
{
	if (r1_engine_note(e)[0])
		fprintf(stderr, "r1: %s\n", r1_engine_note(e));
	r1_engine_close(e);
}

/* ---------- subcommands ---------- */

static int
cmd_tokenize(const opts *o)
{
	r1_tokenizer *tok;
	r1_error	err;
	int32_t    *ids;
	size_t		n,
				len;
	char	   *text;
	json_t	   *arr;

	if (!o->model)
		usage("--model DIR is required");
	if (r1_tokenizer_load(&tok, o->model, &err) != 0)
		die("%s", err.msg);
	text = o->positional ? strdup(o->positional) : read_stdin(&len);
	if (!text)
		die("out of memory");
	len = strlen(text);
	if (r1_tokenizer_encode(tok, text, len, &ids, &n, &err) != 0)
		die("%s", err.msg);
	arr = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(arr, json_integer(ids[i]));
	print_json(arr);
	free(ids);
	free(text);
	r1_tokenizer_free(tok);
	return 0;
}

static int
cmd_detokenize(const opts *o)
{
	r1_tokenizer *tok;
	r1_error	err;
	int32_t    *ids;
	size_t		n,
				len;
	char	   *text;
	json_t	   *s;

	if (!o->model)
		usage("--model DIR is required");
	if (!o->positional && !o->ids)
		usage("give the ids, comma-separated");
	ids = parse_ids(o->positional ? o->positional : o->ids, &n);
	if (r1_tokenizer_load(&tok, o->model, &err) != 0)
		die("%s", err.msg);
	if (r1_tokenizer_decode(tok, ids, n, &text, &len, &err) != 0)
		die("%s", err.msg);

	/*
	 * a split character cannot be JSON: show it as U+FFFD like `tokenizers`
	 * does
	 */
	s = r1_utf8_valid(text, len) ? json_stringn(text, len) : NULL;
	if (!s)
	{
		json_t	   *fixed;
		char	   *buf = malloc(len * 3 + 1);
		size_t		j = 0;

		if (!buf)
			die("out of memory");
		for (size_t i = 0; i < len;)
		{
			size_t		k = 1;

			while (k <= 4 && i + k <= len && !r1_utf8_valid(text + i, k))
				k++;
			if (k <= 4 && i + k <= len)
			{
				memcpy(buf + j, text + i, k);
				j += k;
				i += k;
			}
			else
			{
				memcpy(buf + j, "\xef\xbf\xbd", 3);
				j += 3;
				i++;
			}
		}
		fixed = json_stringn(buf, j);
		free(buf);
		s = fixed;
	}
	print_json(s);
	free(text);
	free(ids);
	r1_tokenizer_free(tok);
	return 0;
}

static int
cmd_logits(const opts *o)
{
	r1_engine  *e;
	r1_error	err;
	size_t		n;
	int32_t    *ids;
	float	   *logits;
	int			vocab;

	if (!o->ids)
		usage("--ids is required");
	ids = parse_ids(o->ids, &n);
	e = open_engine(o, 1, (int) n + 1, 0);
	vocab = r1_engine_model(e)->cfg.vocab_size;
	for (size_t i = 0; i < n; i++)
		if (ids[i] >= vocab)
			die("token id %d at position %zu is out of range [0, %d)", ids[i], i, vocab);
	logits = malloc(sizeof(float) * n * vocab);
	if (!logits)
		die("out of memory for %zu rows of logits", n);
	{
		int			slot = 0,
					pos = 0,
					nt = (int) n;
		r1_batch	b = {1, &slot, &pos, &nt, ids, 1, NULL, NULL, 0};

		if (r1_engine_forward(e, &b, logits, &err) != 0)
			die("%s", err.msg);
	}
	fputc('[', stdout);
	for (size_t t = 0; t < n; t++)
	{
		fputs(t ? ",\n[" : "[", stdout);
		for (int v = 0; v < vocab; v++)
			printf(v ? ",%.9g" : "%.9g", logits[t * vocab + v]);
		fputc(']', stdout);
	}
	fputs("]\n", stdout);
	free(logits);
	free(ids);
	close_engine(e);
	return 0;
}

static int
cmd_generate(const opts *o)
{
	r1_engine  *e;
	r1_error	err;
	r1_request	rq;
	r1_completion c;
	int32_t    *ids;
	size_t		n;
	json_t	   *j,
			   *arr;

	if (!!o->prompt == !!o->ids)
		usage("give exactly one of --prompt TEXT and --ids 1,2,3");
	e = open_engine(o, 1, 0, 0);
	if (o->prompt)
	{
		if (r1_engine_encode_prompt(e, o->system, o->prompt, o->raw, &ids, &n, &err) != 0)
			die("%s", err.msg);
	}
	else
		ids = parse_ids(o->ids, &n);
	memset(&rq, 0, sizeof(rq));
	rq.prompt_ids = ids;
	rq.n_prompt = n;
	r1_sampling_defaults(&rq.sampling);
	rq.sampling.temperature = (float) o->temperature;
	rq.sampling.top_p = (float) o->top_p;
	rq.sampling.top_k = (int) o->top_k;
	rq.sampling.min_p = (float) o->min_p;
	rq.sampling.seed = o->has_seed ? o->seed : (unsigned long long) (r1_now_ms() * 1000.0);
	rq.max_tokens = (int) o->max_tokens;
	rq.ignore_eos = o->ignore_eos;
	rq.max_think_tokens = (int) o->max_think_tokens;
	rq.repetition = o->repetition;
	if (r1_engine_run(e, &rq, &c, &err) != 0)
		die("%s", err.msg);
	j = json_object();
	json_object_set_new(j, "think", json_str_or_null(c.think ? c.think : ""));
	json_object_set_new(j, "answer", json_str_or_null(c.answer));
	json_object_set_new(j, "boxed", json_str_or_null(c.boxed));
	arr = json_array();
	for (int i = 0; i < c.n_ids; i++)
		json_array_append_new(arr, json_integer(c.ids[i]));
	json_object_set_new(j, "ids", arr);
	json_object_set_new(j, "text", json_str_or_null(c.text));
	json_object_set_new(j, "prompt_tokens", json_integer(c.prompt_tokens));
	json_object_set_new(j, "completion_tokens", json_integer(c.completion_tokens));
	json_object_set_new(j, "think_tokens", json_integer(c.think_tokens));
	json_object_set_new(j, "finish_reason", json_string(c.finish_reason));
	json_object_set_new(j, "think_budget_hit", json_boolean(c.think_budget_hit));
	json_object_set_new(j, "repetition_span", json_integer(c.repetition_span));
	json_object_set_new(j, "ms", json_real(c.ms));
	json_object_set_new(j, "device", json_string(r1_engine_device(e)));
	print_json(j);
	r1_completion_free(&c);
	free(ids);
	close_engine(e);
	return 0;
}

/* a greedy bench sequence of plen random prompt ids (from seed) and max_tokens, submitted */
static void
bench_submit(r1_engine *e, int32_t *prompt, int plen, int vocab, uint64_t seed, int max_tokens)
{
	r1_request	rq;
	r1_error	err;

	for (int i = 0; i < plen; i++)
		prompt[i] = (int32_t) (r1_rng_uniform(seed, i) * (vocab - 1));
	memset(&rq, 0, sizeof(rq));
	rq.prompt_ids = prompt;
	rq.n_prompt = plen;
	r1_sampling_defaults(&rq.sampling);
	rq.sampling.temperature = 0;
	rq.max_tokens = max_tokens;
	rq.ignore_eos = 1;
	if (r1_engine_submit(e, &rq, NULL, &err) != 0)
		die("%s", err.msg);
}

/* step e until it is idle, then drop its completions; the steps taken */
static int
bench_drain(r1_engine *e)
{
	r1_error	err;
	r1_completion c;
	int			steps = 0;

	while (r1_engine_busy(e))
	{
		if (r1_engine_step(e, &err) != 0)
			die("%s", err.msg);
		steps++;
	}
	while (r1_engine_poll(e, &c))
		r1_completion_free(&c);
	return steps;
}

static int
cmd_bench(const opts *o)
{
	r1_engine  *e;
	r1_error	err;
	r1_engine_stats st;
	double		t0,
				t_loaded,
				t_first,
				t_warm,
				t_prefilled,
				t_end;
	int			batch = (int) o->batch,
				plen = (int) o->prompt_len,
				glen = (int) o->gen_len;
	int			vocab;
	int32_t    *prompt;
	int			steps;
	json_t	   *j;
	double		decode_s;
	double		kv_bytes_per_pos;

	t0 = r1_now_ms();
	/* the whole prompt of every sequence is prefilled in one step */
	e = open_engine(o, batch, plen + glen + 1, plen * batch);
	t_loaded = r1_now_ms();
	vocab = r1_engine_model(e)->cfg.vocab_size;
	prompt = malloc(sizeof(int32_t) * plen);
	if (!prompt)
		die("out of memory");

	/*
	 * A warm-up sequence of the same prompt length, two tokens, run to its
	 * end first: the first pass of a process pays one-time costs (the CUDA
	 * driver loading kernels on first use, library heuristics) that a serving
	 * engine pays before its first request.  It is timed apart
	 * (first_prefill_ms); prefill_ms and the decode figures are warm.
	 */
	bench_submit(e, prompt, plen, vocab, 99, 2);
	if (r1_engine_step(e, &err) != 0)
		die("%s", err.msg);
	t_first = r1_now_ms() - t_loaded;
	bench_drain(e);
	t_warm = r1_now_ms();
	for (int b = 0; b < batch; b++)
		bench_submit(e, prompt, plen, vocab, 1234 + b, glen);
	if (r1_engine_step(e, &err) != 0)	/* prefill + first token */
		die("%s", err.msg);
	t_prefilled = r1_now_ms();
	steps = bench_drain(e);
	t_end = r1_now_ms();
	r1_engine_stats_get(e, &st);
	decode_s = (t_end - t_prefilled) / 1e3;
	{
		const r1_config *c = &r1_engine_model(e)->cfg;

		r1_dtype	kvdt = R1_F16;

		if (o->kv_cache_dtype)
			r1_kv_cache_dtype_parse(o->kv_cache_dtype, &kvdt);
		kv_bytes_per_pos = 2.0 * c->n_layers * c->n_kv_heads * c->head_dim *
			(strcmp(r1_engine_device(e), "cpu") == 0 && kvdt == R1_F32 ? 4 : 2);
	}
	j = json_object();
	json_object_set_new(j, "model", json_string(r1_engine_model(e)->name));
	json_object_set_new(j, "device", json_string(r1_engine_device(e)));
	json_object_set_new(j, "weights_dtype", json_string(r1_dtype_name(r1_engine_model(e)->dtype)));
	json_object_set_new(j, "cpu_path", json_string(r1_cpu_path_name(r1_cpu()->path)));
	json_object_set_new(j, "cpu_features", json_string(r1_cpu_features_string()));
	json_object_set_new(j, "kv_cache_dtype", json_string(strcmp(r1_engine_device(e), "cpu") != 0 ? "bf16" :
														 o->kv_cache_dtype ? o->kv_cache_dtype : "f16"));
	json_object_set_new(j, "cpu_precision", json_string(o->cpu_precision && strcmp(o->cpu_precision, "exact") == 0 ? "exact" : "fast"));
	json_object_set_new(j, "batch", json_integer(batch));
	json_object_set_new(j, "prompt_len", json_integer(plen));
	json_object_set_new(j, "gen_len", json_integer(glen));
	json_object_set_new(j, "load_s", json_real((t_loaded - t0) / 1e3));
	json_object_set_new(j, "first_prefill_ms", json_real(t_first));
	json_object_set_new(j, "prefill_ms", json_real(t_prefilled - t_warm));
	json_object_set_new(j, "prefill_tok_s", json_real(batch * (double) plen / ((t_prefilled - t_warm) / 1e3)));
	json_object_set_new(j, "decode_steps", json_integer(steps));
	json_object_set_new(j, "ms_per_step", json_real(steps ? (t_end - t_prefilled) / steps : 0));
	json_object_set_new(j, "decode_tok_s", json_real(steps ? batch * (double) steps / decode_s : 0));

	/*
	 * bytes a decode step must read: every weight once, plus the KV cache so
	 * far
	 */
	{
		double		avg_ctx = plen + glen / 2.0;
		double		bytes = (double) st.weight_bytes + batch * avg_ctx * kv_bytes_per_pos;

		json_object_set_new(j, "decode_gb_s", json_real(steps ? bytes * steps / decode_s / 1e9 : 0));
	}
	json_object_set_new(j, "weight_bytes", json_integer((json_int_t) st.weight_bytes));
	json_object_set_new(j, "backend_memory_bytes", json_integer((json_int_t) st.memory_used));
	json_object_set_new(j, "threads", json_integer(o->threads));
	json_object_set_new(j, "batch_invariant", json_boolean(o->batch_invariant));
	print_json(j);
	free(prompt);
	close_engine(e);
	return 0;
}

/* think trace, </think>, answer: every token distinct, so a bigram model can spell it */
#define DEMO_TEXT "Okay, six times seven equals forty-two.\n</think>\n\nThe answer is $\\boxed{42}$."

static int
copy_file(const char *from_dir, const char *to_dir, const char *name)
{
	char		src[4096],
				dst[4096];
	char	   *buf;
	size_t		len;
	r1_error	err;
	FILE	   *f;

	snprintf(src, sizeof(src), "%s/%s", from_dir, name);
	snprintf(dst, sizeof(dst), "%s/%s", to_dir, name);
	if (r1_read_file(src, &buf, &len, &err) != 0)
		die("%s", err.msg);
	f = fopen(dst, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
		die("%s: cannot write: %s", dst, strerror(errno));
	free(buf);
	return 0;
}

static int
cmd_demo_model(const opts *o)
{
	const char *tokdir = o->tokenizer ? o->tokenizer : "test/fixtures/tokenizer";
	const char *text = o->text ? o->text : DEMO_TEXT;
	r1_tokenizer *tok;
	r1_error	err;
	int32_t    *ids,
			   *chain;
	size_t		n;
	int32_t		nl,
				eos;
	json_t	   *j;

	if (!o->out)
		usage("--out DIR is required");
	if (r1_tokenizer_load(&tok, tokdir, &err) != 0)
		die("%s", err.msg);
	if (r1_tokenizer_encode(tok, text, strlen(text), &ids, &n, &err) != 0)
		die("%s", err.msg);
	nl = r1_tokenizer_token_id(tok, "\xc4\x8a");	/* "\n" in byte-level form */
	eos = r1_tokenizer_eos_id(tok);
	if (nl < 0 || eos < 0)
		die("%s: the tokenizer lacks a newline token or an eos token", tokdir);

	/*
	 * the chat template ends with "<think>\n": the chain starts at that
	 * newline
	 */
	chain = malloc(sizeof(int32_t) * (n + 2));
	if (!chain)
		die("out of memory");
	chain[0] = nl;
	memcpy(chain + 1, ids, sizeof(int32_t) * n);

	/*
	 * --loop: the last token maps to itself, so output never ends
	 * (long-result tests)
	 */
	if (o->loop && n < 1)
		die("--loop needs a non-empty text");
	/* --cycle: the last token leads back to the first, so the text repeats */
	if (o->cycle && (n < 2 || o->loop))
		die("--cycle needs a text of 2 or more tokens (and no --loop)");
	chain[n + 1] = o->loop ? ids[n - 1] : o->cycle ? ids[0] : eos;
	if (mkdir(o->out, 0755) != 0 && errno != EEXIST)
		die("%s: cannot create: %s", o->out, strerror(errno));
	{
		/* --answers: forks at the last digit of the text */
		int32_t		fork_at[10],
					fork_id[10];
		int			n_forks = 0,
					last_digit = -1;

		for (size_t i = 1; i <= n && o->answers; i++)
			for (char d = '0'; d <= '9'; d++)
			{
				char		digit[2] = {d, 0};

				if (chain[i] == r1_tokenizer_token_id(tok, digit))
					last_digit = (int) i;
			}
		if (o->answers && last_digit < 0)
			die("--answers needs a text with a digit");
		for (const char *p = o->answers; p && *p; p++)
		{
			char		digit[2] = {*p, 0};

			if (*p < '0' || *p > '9' || n_forks == 10)
				die("--answers takes up to 10 digits, got \"%s\"", o->answers);
			fork_at[n_forks] = last_digit;
			fork_id[n_forks++] = r1_tokenizer_token_id(tok, digit);
		}
		if (r1_demo_model_write_forks(o->out, chain, (int) n + 2, 151936, r1_tokenizer_bos_id(tok), eos,
									  fork_at, fork_id, n_forks, &err) != 0)
			die("%s", err.msg);
	}
	copy_file(tokdir, o->out, "tokenizer.json");
	copy_file(tokdir, o->out, "tokenizer_config.json");
	j = json_object();
	json_object_set_new(j, "model", json_string(o->out));
	json_object_set_new(j, "text", json_string(text));
	json_object_set_new(j, "tokens", json_integer((json_int_t) n));
	print_json(j);
	free(chain);
	free(ids);
	r1_tokenizer_free(tok);
	return 0;
}

/* a checkpoint (or random weights) as a GGUF file */
static int
cmd_convert(const opts *o)
{
	r1_model   *m;
	r1_error	err;
	const char *tokdir = o->tokenizer_from;
	json_t	   *j;
	struct stat sb;

	if (!o->out || !o->type)
		usage("--out FILE.gguf and --type are required");
	if (!!o->model == !!o->random)
		usage("give exactly one of --model DIR and --random-weights SHAPE");
	if (o->model)
	{
		if (r1_model_load(&m, o->model, &err) != 0)
			die("%s", err.msg);
		if (!tokdir && stat(o->model, &sb) == 0 && S_ISDIR(sb.st_mode))
		{
			char		p[4096];

			snprintf(p, sizeof(p), "%s/tokenizer.json", o->model);
			if (stat(p, &sb) == 0)
				tokdir = o->model;
		}
	}
	else
	{
		r1_config	cfg;

		/*
		 * made row by row as the file is written: 70B fits in no memory at
		 * once
		 */
		if (r1_config_preset(&cfg, o->random, &err) != 0 ||
			r1_model_random_lazy(&m, &cfg, o->seed, &err) != 0)
			die("%s", err.msg);
	}
	if (r1_gguf_convert(m, tokdir, o->out, o->type, &err) != 0)
		die("%s", err.msg);
	if (!tokdir)
		fprintf(stderr, "r1: warning: %s has no tokenizer: it can only take token ids, and r1_reason() on it "
				"fails; give --tokenizer-from DIR (a directory with tokenizer.json)\n", o->out);
	j = json_object();
	json_object_set_new(j, "out", json_string(o->out));
	json_object_set_new(j, "type", json_string(o->type));
	json_object_set_new(j, "tokenizer", json_str_or_null(tokdir));
	if (stat(o->out, &sb) == 0)
		json_object_set_new(j, "bytes", json_integer((json_int_t) sb.st_size));
	print_json(j);
	r1_model_free(m);
	return 0;
}

static int
cmd_checksum(const opts *o)
{
	r1_model   *m;
	r1_error	err;
	char		hex[17];
	double		t0 = r1_now_ms();
	uint64_t	h;
	json_t	   *j;

	if (!o->model)
		usage("--model DIR is required");
	if (r1_model_load(&m, o->model, &err) != 0)
		die("%s", err.msg);
	h = r1_weights_checksum(m);
	if (h == 0)
		die("out of memory computing the checksum");
	r1_checksum_hex(h, hex);
	j = json_object();
	json_object_set_new(j, "weights_checksum", json_string(hex));
	json_object_set_new(j, "weight_bytes", json_integer((json_int_t) m->weight_bytes));
	json_object_set_new(j, "ms", json_real(r1_now_ms() - t0));
	print_json(j);
	r1_model_free(m);
	return 0;
}

/*
 * A model from the Hugging Face hub or an Ollama registry (pull.c).  The one
 * subcommand whose stdout is not JSON: the model's path alone, so that
 * R1_MODEL=$(r1 pull ...) works; one JSON line per file on stderr.
 */
static int
cmd_pull(const opts *o)
{
	r1_pull_opts po;
	r1_error	err;
	char		path[4096];

	if (!o->positional)
		usage("give the model: ORG/NAME or ollama:NAME[:TAG]");
	memset(&po, 0, sizeof(po));
	po.spec = o->positional;
	po.revision = o->revision;
	po.dir = o->dir;
	po.include = o->include;
	if (r1_pull(&po, path, sizeof(path), &err) != 0)
		die("%s", err.msg);
	puts(path);
	return 0;
}

/* the engine host of the r1_pg extension (src/serve) */
static int
cmd_serve(const opts *o)
{
	r1_serve_opts so;

	if (o->help)
	{
		r1_serve_usage(stdout);
		return 0;
	}
	if (!o->socket || (!o->model && !o->random))
	{
		r1_serve_usage(stderr);
		return 2;
	}
	if (o->positional)
		usage("r1 serve takes no arguments");
	r1_serve_opts_defaults(&so);
	engine_opts(o, &so.engine);
	so.engine.tokenizer_dir = o->tokenizer;
	if (o->max_seqs >= 0)
		so.engine.max_seqs = (int) o->max_seqs;
	if (o->max_queued >= 0)
		so.engine.max_queued = (int) o->max_queued;
	if (o->max_ctx >= 0)
		so.engine.max_ctx = (int) o->max_ctx;
	if (o->kv_memory >= 0)
		so.engine.kv_memory_bytes = (size_t) o->kv_memory << 20;
	if (o->gpu_memory_fraction >= 0)
		so.engine.gpu_memory_fraction = o->gpu_memory_fraction;
	so.socket_path = o->socket;
	if (o->max_clients != -1)
		so.max_clients = o->max_clients > 0 ? (int) o->max_clients : 1;
	so.status_fd = (int) o->status_fd;
	return r1_serve(&so);
}

int
main(int argc, char **argv)
{
	opts		o;
	const char *cmd;

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
	{
		fputs(usage_text, stdout);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "--version") == 0)
	{
		printf("r1 %s\n", r1_version());
		return 0;
	}
	if (argc < 2)
		usage(NULL);
	cmd = argv[1];
	parse_opts(argc, argv, &o);
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(&o);
	if (strcmp(cmd, "tokenize") == 0)
		return cmd_tokenize(&o);
	if (strcmp(cmd, "detokenize") == 0)
		return cmd_detokenize(&o);
	if (strcmp(cmd, "logits") == 0)
		return cmd_logits(&o);
	if (strcmp(cmd, "generate") == 0)
		return cmd_generate(&o);
	if (strcmp(cmd, "bench") == 0)
		return cmd_bench(&o);
	if (strcmp(cmd, "demo-model") == 0)
		return cmd_demo_model(&o);
	if (strcmp(cmd, "convert") == 0)
		return cmd_convert(&o);
	if (strcmp(cmd, "checksum") == 0)
		return cmd_checksum(&o);
	if (strcmp(cmd, "pull") == 0)
		return cmd_pull(&o);
	usage("unknown command");
}
