/*
 * r1_pg.h - settings and entry points shared by the extension's files.
 */
#ifndef R1_PG_H
#define R1_PG_H

#include "fmgr.h"
#include "lib/stringinfo.h"

/* r1.device */
typedef enum R1Device
{
	R1_DEVICE_AUTO,
	R1_DEVICE_CUDA,
	R1_DEVICE_CPU
} R1Device;

/* settings (r1_pg.c) */
extern char *r1_model;
extern int	r1_device;
extern int	r1_threads;
extern int	r1_max_seqs;
extern int	r1_max_queued;
extern int	r1_max_ctx;
extern double r1_gpu_memory_fraction;
extern int	r1_kv_memory;
extern int	r1_max_tokens_default;
extern int	r1_queue_timeout;
extern char *r1_engine_path;
extern bool r1_debug_ignore_eos;
extern bool r1_parse_special_tokens;
extern bool r1_batch_invariant;
extern int	r1_reload_timeout;
extern int	r1_kv_cache_dtype;
extern int	r1_cpu_precision;

/* r1.kv_cache_dtype, r1.cpu_precision: the values are the r1 serve options' */
extern const char *r1_kv_cache_dtype_name(int v);
extern const char *r1_cpu_precision_name(int v);

extern const char *r1_device_name(int device);

/*
 * An argument the SQL declaration may lack: a database whose extension was
 * created by an older script declares fewer parameters, and reading past
 * PG_NARGS() is undefined.  A missing argument reads as NULL (its default).
 */
#define R1_ARG_ISNULL(n)	(PG_NARGS() <= (n) || PG_ARGISNULL(n))

/* worker.c */
extern PGDLLEXPORT void r1_engine_worker_main(Datum main_arg);
extern void r1_register_worker(void);


#endif							/* R1_PG_H */
