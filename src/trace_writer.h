/*
 * trace_writer.h - trace rows written in their own transaction by the static
 * "r1 trace writer" workers, fed through a queue in shared memory
 * (src/trace_writer.c).
 */
#ifndef R1_TRACE_WRITER_H
#define R1_TRACE_WRITER_H

#include "postgres.h"

/* r1.trace_primary_conninfo, or primary_conninfo when it is empty ("" when both are) */
extern const char *r1_trace_primary_conninfo_value(void);

/*
 * Hand the row (the INSERT's nargs parameters) to a trace writer, which
 * inserts it as owner in a transaction of its own, and wait until it has
 * committed.  An ERROR when the writer could not write it, or none did within
 * r1.trace_timeout: the caller's result is then not returned.
 */
extern void r1_trace_write_autonomous(Oid owner, int nargs, const Oid *types, const Datum *values,
									  const char *nulls);

/* shared memory (shmem.h says when) */
extern void r1_trace_writer_shmem_request(void);
extern void r1_trace_writer_shmem_init(void);

/* _PG_init, while preloading: the static workers */
extern void r1_trace_writer_preload(void);

extern PGDLLEXPORT void r1_trace_writer_main(Datum main_arg);

#endif							/* R1_TRACE_WRITER_H */
