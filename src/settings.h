/*
 * settings.h - the r1.* settings read by more than one file (settings.c
 * defines them); the jobs' settings are in jobs.h, the limits' in quota.h.
 */
#ifndef R1_SETTINGS_H
#define R1_SETTINGS_H

/* _PG_init: define the settings below. */
extern void r1_settings_define(void);

/* r1.device */
typedef enum R1Device
{
	R1_DEVICE_AUTO,
	R1_DEVICE_CUDA,
	R1_DEVICE_CPU
} R1Device;

/* the engine: the worker passes them to `r1 serve` (a change reloads it) */
extern char *r1_model;
extern int	r1_device;
extern int	r1_threads;
extern int	r1_max_seqs;
extern int	r1_max_queued;
extern int	r1_max_ctx;
extern double r1_gpu_memory_fraction;
extern int	r1_kv_memory;
extern char *r1_engine_path;
extern bool r1_batch_invariant;
extern int	r1_reload_timeout;
extern int	r1_kv_cache_dtype;
extern int	r1_cpu_precision;

/* names of the enum values: the r1 serve options' */
extern const char *r1_device_name(int device);
extern const char *r1_kv_cache_dtype_name(int v);
extern const char *r1_cpu_precision_name(int v);

/* the calls */
extern int	r1_max_tokens_default;
extern int	r1_queue_timeout;
extern bool r1_debug_ignore_eos;
extern bool r1_parse_special_tokens;

/* the trace audit (traces.c, trace_writer.c) */
#define R1_TRACE_MAX_WRITERS 16
extern bool r1_log_traces;
extern int	r1_trace_retention; /* minutes; 0 keeps traces forever */
extern bool r1_trace_autonomous;	/* write each trace in its own transaction */
extern int	r1_trace_writers;	/* static writer processes (restart to change) */
extern int	r1_trace_timeout;	/* ms a call waits for its trace to commit */
extern char *r1_trace_primary_conninfo; /* a standby's traces go there */

/* loop detection (src/engine/repetition.h) */
extern int	r1_repetition_max_span;
extern int	r1_repetition_min_repeats;
extern int	r1_repetition_min_tokens;

#endif							/* R1_SETTINGS_H */
