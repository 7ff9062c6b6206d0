/*
 * worker.h - the "r1 engine" background worker (worker.c): it starts the
 * engine host (`r1 serve`), supervises it and publishes its state.
 */
#ifndef R1_WORKER_H
#define R1_WORKER_H

#include "postgres.h"

/* _PG_init: register the worker (none in binary-upgrade mode). */
extern void r1_register_worker(void);

extern PGDLLEXPORT void r1_engine_worker_main(Datum main_arg);

#endif							/* R1_WORKER_H */
