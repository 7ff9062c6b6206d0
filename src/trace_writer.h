/*
 * trace_writer.h - writing a trace row in its own transaction, through a
 * short-lived background worker (src/trace_writer.c).
 */
#ifndef R1_TRACE_WRITER_H
#define R1_TRACE_WRITER_H

#include "postgres.h"

/* the INSERT into r1.traces and its parameter types (traces.c) */
extern const char r1_trace_insert_sql[];
extern void r1_trace_arg_types(Oid *types, int nargs);

/*
 * Insert the row (the INSERT's nargs parameters) in a transaction of its own,
 * as owner, and wait for it to commit.  false when no background worker slot
 * is free (nothing written); an ERROR when the worker could not write it.
 */
extern bool r1_trace_write_autonomous(Oid owner, int nargs, const Oid *types, const Datum *values,
									  const char *nulls);

extern PGDLLEXPORT void r1_trace_writer_main(Datum main_arg);

#endif							/* R1_TRACE_WRITER_H */
