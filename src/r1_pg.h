/*
 * r1_pg.h - reading the arguments of the extension's SQL functions.
 */
#ifndef R1_PG_H
#define R1_PG_H

#include "fmgr.h"

/*
 * An argument the SQL declaration may lack: a database whose extension was
 * created by an older script declares fewer parameters, and reading past
 * PG_NARGS() is undefined.  A missing argument reads as NULL (its default).
 */
#define R1_ARG_ISNULL(n)	(PG_NARGS() <= (n) || PG_ARGISNULL(n))

#endif							/* R1_PG_H */
