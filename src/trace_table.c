/*
 * trace_table.c - the table r1.traces: its owner, acting as the owner, the
 * INSERT of one row and pruning old rows.  Used by the calls that record a
 * trace in their own transaction (traces.c) and by the trace writers
 * (trace_writer.c).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "trace_table.h"

#define R1_PRUNE_BATCH			10000

/* r1.traces and its owner; an ERROR when the extension is not in this database. */
Oid
r1_traces_owner(void)
{
	Oid			nsp = get_namespace_oid("r1", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("traces", nsp) : InvalidOid;
	HeapTuple	tp;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table r1.traces does not exist"),
				 errdetail("r1.log_traces is on and this database has no r1.traces."),
				 errhint("Run CREATE EXTENSION r1_pg in this database, or turn r1.log_traces off.")));
	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/*
 * Become the owner of r1.traces with a safe search_path.  An ERROR before
 * r1_as_owner_end() is undone by the (sub)transaction abort.
 */
void
r1_as_owner_begin(R1OwnerContext *oc)
{
	Oid			owner = r1_traces_owner();

	GetUserIdAndSecContext(&oc->save_user, &oc->save_sec);
	SetUserIdAndSecContext(owner, oc->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	oc->nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

void
r1_as_owner_end(R1OwnerContext *oc)
{
	AtEOXact_GUC(false, oc->nest);
	SetUserIdAndSecContext(oc->save_user, oc->save_sec);
}

/* Delete rows older than retention_min minutes; returns how many.  Inside SPI, as the owner. */
uint64
r1_trace_prune(int retention_min, bool all)
{
	Datum		cutoff;
	Oid			type = TIMESTAMPTZOID;
	const char *sql = all ?
	"DELETE FROM r1.traces WHERE at < $1" :
	"DELETE FROM r1.traces WHERE id = ANY (ARRAY("
	"SELECT id FROM r1.traces WHERE at < $1 LIMIT " CppAsString2(R1_PRUNE_BATCH)
	" FOR UPDATE SKIP LOCKED))";

	if (retention_min <= 0)
		return 0;
	cutoff = TimestampTzGetDatum(GetCurrentTimestamp() - (TimestampTz) retention_min * USECS_PER_MINUTE);
	if (SPI_execute_with_args(sql, 1, &type, &cutoff, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not prune r1.traces");
	return SPI_processed;
}

const char	r1_trace_insert_sql[] =
"INSERT INTO r1.traces (at, source, role, session_role, database, prompt, system, "
"parameters, seed, think, answer, boxed, finish_reason, prompt_tokens, "
"completion_tokens, think_tokens, ms, model, weights_checksum) VALUES "
"($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)";

void
r1_trace_arg_types(Oid *types, int nargs)
{
	static const Oid t[R1_TRACE_NARGS] = {
		TIMESTAMPTZOID, TEXTOID, NAMEOID, NAMEOID, NAMEOID, TEXTOID, TEXTOID,
		JSONBOID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID,
		INT4OID, INT4OID, FLOAT8OID, TEXTOID, TEXTOID
	};

	Assert(nargs == R1_TRACE_NARGS);
	memcpy(types, t, sizeof(t));
}
