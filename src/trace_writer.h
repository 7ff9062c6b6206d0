/*
 * trace_writer.h - trace rows written in their own transaction by the static
 * "r1 trace writer" workers, fed through a queue in shared memory
 * (src/trace_writer.c).
 */
#ifndef R1_TRACE_WRITER_H
#define R1_TRACE_WRITER_H

#include "postgres.h"

#define R1_TRACE_MAX_WRITERS 16

/* settings (trace_writer.c) */
extern int	r1_trace_writers;	/* static writer processes (restart to change) */
extern int	r1_trace_timeout;	/* ms a call waits for its trace to commit */
extern char *r1_trace_primary_conninfo;	/* a standby's traces go there */

/* r1.trace_primary_conninfo, or primary_conninfo when it is empty ("" when both are) */
extern const char *r1_trace_primary_conninfo_value(void);

/* the INSERT into r1.traces and its parameter types (traces.c) */
extern const char r1_trace_insert_sql[];
extern void r1_trace_arg_types(Oid *types, int nargs);

/* traces.c: delete rows older than retention_min minutes (inside SPI, as the owner) */
extern uint64 r1_trace_prune(int retention_min, bool all);

/*
 * Hand the row (the INSERT's nargs parameters) to a trace writer, which
 * inserts it as owner in a transaction of its own, and wait until it has
 * committed.  An ERROR when the writer could not write it, or none did within
 * r1.trace_timeout: the caller's result is then not returned.
 */
extern void r1_trace_write_autonomous(Oid owner, int nargs, const Oid *types, const Datum *values,
									  const char *nulls);

/* _PG_init: settings always; shared memory and the static workers when preloading */
extern void r1_trace_writer_define_gucs(void);
extern void r1_trace_writer_preload(void);

extern PGDLLEXPORT void r1_trace_writer_main(Datum main_arg);

#endif							/* R1_TRACE_WRITER_H */
