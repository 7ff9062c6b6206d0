/*
 * trace_table.h - the table r1.traces (trace_table.c): its owner, the
 * INSERT of one row, pruning.
 */
#ifndef R1_TRACE_TABLE_H
#define R1_TRACE_TABLE_H

#include "postgres.h"

/* r1.traces' owner; an ERROR (42P01 with a hint) when this database has no r1.traces */
extern Oid	r1_traces_owner(void);

/*
 * Act as the owner of r1.traces, as a security-restricted operation with
 * search_path = pg_catalog, pg_temp.  An ERROR before r1_as_owner_end() is
 * undone by the (sub)transaction abort.
 */
typedef struct R1OwnerContext
{
	Oid			save_user;
	int			save_sec;
	int			nest;
} R1OwnerContext;

extern void r1_as_owner_begin(R1OwnerContext *oc);
extern void r1_as_owner_end(R1OwnerContext *oc);

/* the INSERT of one row: its R1_TRACE_NARGS parameters and their types */
#define R1_TRACE_NARGS 19
extern const char r1_trace_insert_sql[];
extern void r1_trace_arg_types(Oid *types, int nargs);

/* Delete rows older than retention_min minutes (all, or a batch); inside SPI, as the owner. */
extern uint64 r1_trace_prune(int retention_min, bool all);

#endif							/* R1_TRACE_TABLE_H */
