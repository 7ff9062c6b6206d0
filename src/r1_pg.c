/*
 * r1_pg.c - module load: settings, shared memory hooks and the "r1 engine"
 * background worker.  The extension works only when loaded through
 * shared_preload_libraries: the model lives in a process the worker starts.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "quota.h"
#include "activity.h"
#include "jobs.h"
#include "r1_pg.h"
#include "reasoning.h"
#include "shmem.h"
#include "trace_writer.h"
#include "traces.h"

PG_MODULE_MAGIC;

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

void		_PG_init(void);

void
_PG_init(void)
{
	/*
	 * The engine runs in a worker the postmaster starts, and r1.engine_path
	 * can only be defined at server start: loaded any other way (CREATE
	 * EXTENSION, LOAD) r1_pg refuses with an ERROR, not the FATAL that
	 * defining a PGC_POSTMASTER setting late would raise.
	 */
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1_pg must be loaded via shared_preload_libraries"),
				 errdetail("The model runs in a background worker that starts with the server."),
				 errhint("Add r1_pg to shared_preload_libraries in postgresql.conf (or with ALTER SYSTEM) and restart the server.")));

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

	r1_limits_init(process_shared_preload_libraries_in_progress);
	r1_traces_define_gucs();
	r1_trace_writer_define_gucs();
	r1_jobs_define_settings();
	r1_reasoning_define_gucs();

	MarkGUCPrefixReserved("r1");

	r1_shmem_request();
	r1_activity_shmem_request();
	/* these register no worker in binary-upgrade mode (pg_upgrade) */
	r1_register_worker();
	r1_jobs_preload();
	r1_trace_writer_preload();
}
