/*
 * settings.c - the r1.* settings read by more than one file: the engine's,
 * the calls', the trace audit's and loop detection's, with their
 * definitions.  Settings private to one module are defined there: the jobs'
 * (jobs.c) and the limits' (quota.c, which parses its lists in GUC hooks).
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "engine/repetition.h"
#include "settings.h"

/* the engine (a change restarts or reloads the engine host) */
char	   *r1_model = NULL;
int			r1_device = R1_DEVICE_AUTO;
int			r1_threads = 0;
int			r1_max_seqs = 16;
int			r1_max_queued = 1024;
int			r1_max_ctx = 0;
double		r1_gpu_memory_fraction = 0.9;
int			r1_kv_memory = 0;
int			r1_max_tokens_default = 32768;
int			r1_queue_timeout = 30000;
char	   *r1_engine_path = NULL;
bool		r1_debug_ignore_eos = false;
bool		r1_parse_special_tokens = false;
bool		r1_batch_invariant = true;
int			r1_reload_timeout = 60000;
int			r1_kv_cache_dtype = 0;
int			r1_cpu_precision = 0;

static const struct config_enum_entry r1_kv_cache_dtype_options[] = {
	{"f16", 0, false},
	{"bf16", 1, false},
	{"f32", 2, false},
	{NULL, 0, false}
};

static const struct config_enum_entry r1_cpu_precision_options[] = {
	{"fast", 0, false},
	{"exact", 1, false},
	{NULL, 0, false}
};

const char *
r1_kv_cache_dtype_name(int v)
{
	return r1_kv_cache_dtype_options[v >= 0 && v <= 2 ? v : 0].name;
}

const char *
r1_cpu_precision_name(int v)
{
	return r1_cpu_precision_options[v == 1 ? 1 : 0].name;
}

static const struct config_enum_entry r1_device_options[] = {
	{"auto", R1_DEVICE_AUTO, false},
	{"cuda", R1_DEVICE_CUDA, false},
	{"cpu", R1_DEVICE_CPU, false},
	{NULL, 0, false}
};

const char *
r1_device_name(int device)
{
	for (const struct config_enum_entry *e = r1_device_options; e->name; e++)
		if (e->val == device)
			return e->name;
	return "auto";
}

/* the trace audit */
bool		r1_log_traces = false;
int			r1_trace_retention = 0;
bool		r1_trace_autonomous = true;
int			r1_trace_writers = 2;
int			r1_trace_timeout = 10000;
char	   *r1_trace_primary_conninfo = NULL;

/* loop detection (src/engine/repetition.h) */
int			r1_repetition_max_span = R1_REPETITION_MAX_SPAN;
int			r1_repetition_min_repeats = R1_REPETITION_MIN_REPEATS;
int			r1_repetition_min_tokens = R1_REPETITION_MIN_TOKENS;

void
r1_settings_define(void)
{
	DefineCustomStringVariable("r1.model",
							   "Checkpoint directory of the model the engine serves.",
							   "A Hugging Face DeepSeek-R1-Distill-Qwen directory (config.json, *.safetensors, tokenizer.json). "
							   "Set it in postgresql.conf or with ALTER SYSTEM and reload: the engine worker reloads the model.",
							   &r1_model,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("r1.device",
							 "Where the engine runs the model: auto, cuda or cpu.",
							 "auto uses a GPU when one is usable and the CPU otherwise. Changing it restarts the engine.",
							 &r1_device,
							 R1_DEVICE_AUTO,
							 r1_device_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("r1.threads",
							"CPU threads of the engine (0 = all cores).",
							"Changing it restarts the engine.",
							&r1_threads,
							0, 0, 4096,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("r1.max_seqs",
							"Sequences the engine decodes together.",
							"Changing it restarts the engine.",
							&r1_max_seqs,
							16, 1, 4096,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("r1.max_queued",
							"Requests the engine accepts at once, running or waiting.",
							"A call beyond that waits up to r1.queue_timeout for a slot, then fails. Changing it restarts the engine.",
							&r1_max_queued,
							1024, 1, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("r1.max_ctx",
							"Positions per sequence: prompt plus generated tokens (0 = the model's, at most 32768).",
							"Changing it restarts the engine.",
							&r1_max_ctx,
							0, 0, 1048576,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("r1.gpu_memory_fraction",
							 "Share of the free GPU memory the engine takes for its KV cache.",
							 "Changing it restarts the engine.",
							 &r1_gpu_memory_fraction,
							 0.9, 0.05, 1.0,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("r1.kv_memory",
							"Most memory the CPU backend's KV cache may take (0 = no limit).",
							"When the cache is full, sequences wait, and the youngest is preempted and recomputed "
							"later; a sequence that cannot fit even alone fails. Changing it restarts the engine.",
							&r1_kv_memory,
							0, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("r1.max_tokens_default",
							"Tokens generated at most when r1_reason() is given no max_tokens.",
							NULL,
							&r1_max_tokens_default,
							32768, 1, INT_MAX,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("r1.queue_timeout",
							"How long a call waits for a slot when the engine's queue is full.",
							"After that the call fails with SQLSTATE 53400. 0 fails at once.",
							&r1_queue_timeout,
							30000, 0, INT_MAX,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("r1.engine_path",
							   "Path of the r1 binary that runs the engine (\"$bindir\" is the server's bin directory).",
							   NULL,
							   &r1_engine_path,
							   "$bindir/r1",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("r1.debug_ignore_eos",
							 "Keep generating past the end-of-sequence token (tests and benchmarks).",
							 "Generation then stops only at max_tokens or the end of the context.",
							 &r1_debug_ignore_eos,
							 false,
							 PGC_SUSET,
							 GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("r1.parse_special_tokens",
							 "Let prompts, system texts and r1_tokenize text contain the model's special tokens.",
							 "Off (the default), text from SQL is only text: <｜User｜>, </think> and the like in it are "
							 "spelt with ordinary tokens and cannot fake a chat turn. On, they become the special tokens.",
							 &r1_parse_special_tokens,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("r1.batch_invariant",
							 "Make each request's result independent of the other requests in the batch.",
							 "On, a seeded request gives the same tokens alone or batched with others (bitwise on the CPU, "
							 "which costs some prompt-processing speed; on a GPU see the README). Changing it restarts the engine.",
							 &r1_batch_invariant,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("r1.reload_timeout",
							"How long calls already running may take to finish when an engine setting changes.",
							"After a change of r1.model, r1.device, r1.threads or another engine setting, new calls wait "
							"for the new model while the running ones finish on the old one; after this long the old "
							"engine host is stopped and its calls fail with SQLSTATE 57000. 0 stops it at once.",
							&r1_reload_timeout,
							60000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("r1.kv_cache_dtype",
							 "Element type of the CPU backend's KV cache: f16, bf16 or f32.",
							 "f16 (the default, as llama.cpp's) halves the cache's memory and bandwidth against f32 with 11 "
							 "significant bits; f32 is exact. The CUDA backend keeps bf16. Changing it restarts the engine.",
							 &r1_kv_cache_dtype,
							 0,
							 r1_kv_cache_dtype_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("r1.cpu_precision",
							 "CPU arithmetic: fast (8-bit activations for quantised weights, bf16 dot products where the CPU has them) or exact.",
							 "exact keeps activations in float32 (slower; the golden fixtures' tight tolerances). Changing it restarts the engine.",
							 &r1_cpu_precision,
							 0,
							 r1_cpu_precision_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("r1.log_traces",
							 "Record every r1 call in the table r1.traces.",
							 "Prompt, parameters, think, answer, token counts, model and weights checksum; "
							 "only members of r1_auditor can read them. A trace writer commits the row before the call returns (r1.trace_autonomous).",
							 &r1_log_traces,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("r1.trace_autonomous",
							 "Write each trace in a transaction of its own, so that it survives the caller's rollback.",
							 "A static r1 trace writer worker inserts the row and commits before the call returns "
							 "(r1.trace_writers, r1.trace_timeout). Off: the row is written in the caller's transaction.",
							 &r1_trace_autonomous,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("r1.trace_retention",
							"How long rows of r1.traces are kept (0 = forever).",
							"Older rows are deleted by calls that write traces, at most once a minute per session, "
							"or by r1_prune_traces().",
							&r1_trace_retention,
							0, 0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomIntVariable("r1.trace_writers",
							"Background workers that write traces in their own transaction (r1.trace_autonomous).",
							"Static workers started with the server: each takes a max_worker_processes slot for good, "
							"so users cannot starve them. 0: autonomous traces cannot be written and traced calls fail.",
							&r1_trace_writers,
							2, 0, R1_TRACE_MAX_WRITERS,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("r1.trace_timeout",
							"How long a traced call waits for a trace writer to commit its trace.",
							"After that the call fails (SQLSTATE 53000) instead of returning a result that is not audited.",
							&r1_trace_timeout,
							10000, 1, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("r1.trace_primary_conninfo",
							   "Connection string a hot standby's trace writers use to record traces on the primary.",
							   "Empty: the standby's primary_conninfo, with the caller's database. Its role must be "
							   "allowed to INSERT into r1.traces (and use r1.traces_id_seq) on the primary.",
							   &r1_trace_primary_conninfo,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("r1.repetition_max_span",
							"Longest span of tokens loop detection looks for (0 turns it off).",
							"A generation whose tokens end with a span of at most this many tokens "
							"repeated r1.repetition_min_repeats times back to back, covering at least "
							"r1.repetition_min_tokens tokens, stops with finish_reason 'repetition'.",
							&r1_repetition_max_span,
							R1_REPETITION_MAX_SPAN, 0, R1_REPETITION_SPAN_LIMIT,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("r1.repetition_min_repeats",
							"Copies of a span, back to back, that make a loop.",
							NULL,
							&r1_repetition_min_repeats,
							R1_REPETITION_MIN_REPEATS, 2, 1000000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("r1.repetition_min_tokens",
							"Fewest tokens a loop must cover before it is stopped.",
							NULL,
							&r1_repetition_min_tokens,
							R1_REPETITION_MIN_TOKENS, 1, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
}
