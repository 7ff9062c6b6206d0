/*
 * jobs_sql.c - the SQL side of durable jobs: r1_submit, r1_submit_query,
 * r1_cancel_job (r1_job_status is plain SQL).
 *
 * r1_user has SELECT on r1.jobs and r1.job_items (row-level security shows a
 * role its own jobs) and no other privilege on them: these functions run the
 * caller's query as the caller, and then write the rows as the owner of the
 * tables (SetUserIdAndSecContext, as the RI triggers do), in the caller's
 * transaction: a rollback leaves nothing behind, a commit makes the whole job
 * visible to the workers at once.
 */
#include "postgres.h"

#include "access/xlog.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/syscache.h"

#include "client.h"
#include "jobs.h"
#include "quota.h"
#include "request.h"
#include "r1_pg.h"

#define R1_SUBMIT_BATCH 1000	/* rows fetched and inserted at a time */

/* The parameters of r1_submit/r1_submit_query (1..8, as r1_reason), checked. */
static void
r1_job_params(FunctionCallInfo fcinfo, R1Params *p, size_t *system_len)
{
	r1_params_from_args(fcinfo, &r1_reason_args, p, system_len);
	(void) r1_quota_check(r1_quota_role());
}

/*
 * On a standby (in recovery) r1.jobs is read-only: say so at once, before any
 * of the extension's own SQL could fail with a read-only error of its own.
 */
static void
r1_jobs_check_primary(void)
{
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("r1 jobs are submitted and cancelled on the primary"),
				 errdetail("This server is a standby: r1.jobs and r1.job_items are read-only here."),
				 errhint("Connect to the primary server to submit or cancel jobs; r1_job_status() and the tables can be read here.")));
}

/* Jobs are submitted only in r1.jobs_database, where the workers run them. */
static void
r1_jobs_check_database(void)
{
	const char *db = get_database_name(MyDatabaseId);

	if (r1_jobs_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1_pg is not loaded"),
				 errdetail("The job workers run only when r1_pg is in shared_preload_libraries."),
				 errhint("Add r1_pg to shared_preload_libraries and restart the server.")));
	if (r1_jobs_database == NULL || r1_jobs_database[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("durable jobs are not enabled"),
				 errdetail("r1.jobs_database is not set."),
				 errhint("Run ALTER SYSTEM SET r1.jobs_database = '%s' and SELECT pg_reload_conf() to run jobs in this database.",
						 db)));
	if (strcmp(db, r1_jobs_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1 jobs run in database \"%s\", not in \"%s\"", r1_jobs_database, db),
				 errhint("Submit the job in database \"%s\", or change r1.jobs_database and reload the configuration.",
						 r1_jobs_database)));
}

/* Owner of r1.jobs: the role the functions write the job tables as. */
static Oid
r1_jobs_owner(void)
{
	Oid			nsp = get_namespace_oid("r1", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("jobs", nsp) : InvalidOid;
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(rel))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table r1.jobs does not exist"),
				 errhint("Install the r1_pg extension in this database.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", rel);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

typedef struct R1AsOwner
{
	Oid			save_user;
	int			save_sec;
	int			save_nestlevel;
} R1AsOwner;

/*
 * Write as the tables' owner, with a search_path the caller does not
 * control (else an operator of the caller's could run as the owner).  An
 * ERROR in between restores both at (sub)transaction abort.
 */
static void
r1_become_owner(R1AsOwner *s, Oid owner)
{
	GetUserIdAndSecContext(&s->save_user, &s->save_sec);
	SetUserIdAndSecContext(owner, s->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	s->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static void
r1_become_caller(R1AsOwner *s)
{
	AtEOXact_GUC(false, s->save_nestlevel);
	SetUserIdAndSecContext(s->save_user, s->save_sec);
}

/* INSERT the job row (as the owner; SPI connected); returns its id. */
static int64
r1_job_insert(const R1Params *p, const char *created_by)
{
	Oid			types[3] = {TEXTOID, TEXTOID, JSONBOID};
	Datum		values[3];
	bool		isnull;

	values[0] = CStringGetTextDatum(created_by);

	/*
	 * charged and scheduled as the session user, like r1_reason (SET ROLE
	 * does not move it)
	 */
	values[1] = CStringGetTextDatum(GetUserNameFromId(r1_quota_role(), false));
	values[2] = JsonbPGetDatum(r1_params_jsonb(p, true));
	if (SPI_execute_with_args("INSERT INTO r1.jobs (created_by, session_role, parameters) VALUES ($1, $2, $3)"
							  " RETURNING id",
							  3, types, values, NULL, false, 1) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not insert the job");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* Record the item count; a job without items is done at once. */
static void
r1_job_finish_insert(int64 job_id, int64 items)
{
	Oid			types[2] = {INT8OID, INT4OID};
	Datum		values[2] = {Int64GetDatum(job_id), Int32GetDatum((int32) items)};

	if (items > PG_INT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a job can have at most %d items", PG_INT32_MAX)));
	if (SPI_execute_with_args("UPDATE r1.jobs SET items = $2,"
							  " state = CASE WHEN $2 = 0 THEN 'done' ELSE state END,"
							  " finished_at = CASE WHEN $2 = 0 THEN pg_catalog.now() END"
							  " WHERE id = $1",
							  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update the job");
	if (items == 0)
	{
		char		payload[32];

		snprintf(payload, sizeof(payload), INT64_FORMAT, job_id);
		Async_Notify(R1_JOBS_CHANNEL, payload);
	}
	else
		r1_jobs_wake_at_commit();
}

/* Bytes of the prompt in UTF-8 plus the system text: at most R1_PROTO_MAX_PROMPT. */
static void
r1_check_item_prompt(text *prompt, size_t system_len)
{
	size_t		len;

	(void) r1_text_to_utf8(prompt, &len);
	r1_check_prompt_size(len + system_len);
}

PG_FUNCTION_INFO_V1(pg_r1_submit);

/*
 * r1_submit(prompt, max_tokens, temperature, top_p, seed, system, top_k, min_p)
 * returns the id of a job with one item (key NULL).
 */
Datum
pg_r1_submit(PG_FUNCTION_ARGS)
{
	R1Params	p;
	size_t		system_len;
	text	   *prompt;
	const char *created_by = GetUserNameFromId(GetUserId(), false);
	Oid			owner;
	R1AsOwner	as;
	int64		job_id;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];

	r1_jobs_check_primary();
	r1_jobs_check_database();
	if (R1_ARG_ISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("prompt must not be NULL")));
	prompt = PG_GETARG_TEXT_PP(0);
	r1_job_params(fcinfo, &p, &system_len);
	r1_check_item_prompt(prompt, system_len);
	owner = r1_jobs_owner();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	r1_become_owner(&as, owner);
	job_id = r1_job_insert(&p, created_by);
	values[0] = Int64GetDatum(job_id);
	values[1] = PointerGetDatum(prompt);
	if (SPI_execute_with_args("INSERT INTO r1.job_items (job_id, item_no, prompt) VALUES ($1, 1, $2)",
							  2, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert the job item");
	r1_job_finish_insert(job_id, 1);
	r1_become_caller(&as);
	SPI_finish();
	PG_RETURN_INT64(job_id);
}

PG_FUNCTION_INFO_V1(pg_r1_submit_query);

/*
 * r1_submit_query(query, ...same parameters...): one item per row of the
 * query, which runs as the caller and returns (key, prompt).
 */
Datum
pg_r1_submit_query(PG_FUNCTION_ARGS)
{
	R1Params	p;
	size_t		system_len;
	char	   *query;
	const char *created_by = GetUserNameFromId(GetUserId(), false);
	Oid			owner;
	R1AsOwner	as;
	int64		job_id;
	int64		items = 0;
	SPIPlanPtr	plan;
	Portal		portal;
	TupleDesc	desc;
	Oid			key_type,
				prompt_type,
				key_out,
				prompt_out;
	bool		varlena;
	MemoryContext batch_ctx;

	r1_jobs_check_primary();
	r1_jobs_check_database();
	if (R1_ARG_ISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("query must not be NULL")));
	query = text_to_cstring(PG_GETARG_TEXT_PP(0));
	r1_job_params(fcinfo, &p, &system_len);
	owner = r1_jobs_owner();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* the caller's query, with the caller's privileges */
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (!SPI_is_cursor_plan(plan))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("query must be a single statement that returns rows (key, prompt)"),
				 errhint("Pass a query such as 'SELECT id, question FROM problems'.")));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, false);
	desc = portal->tupDesc;
	if (desc == NULL || desc->natts != 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("query must return two columns (key, prompt)"),
				 errdetail_plural("It returns %d column.", "It returns %d columns.",
								  desc ? desc->natts : 0, desc ? desc->natts : 0),
				 errhint("Select a key that identifies each row, then the prompt: SELECT id, question FROM problems.")));
	key_type = TupleDescAttr(desc, 0)->atttypid;
	prompt_type = TupleDescAttr(desc, 1)->atttypid;
	if (TypeCategory(getBaseType(prompt_type)) != TYPCATEGORY_STRING)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the second column of the query (the prompt) must be text"),
				 errdetail("It is of type %s.", format_type_be(prompt_type)),
				 errhint("Cast it: SELECT id, question::text FROM problems.")));
	getTypeOutputInfo(key_type, &key_out, &varlena);
	getTypeOutputInfo(prompt_type, &prompt_out, &varlena);

	r1_become_owner(&as, owner);
	job_id = r1_job_insert(&p, created_by);
	r1_become_caller(&as);

	batch_ctx = AllocSetContextCreate(CurrentMemoryContext, "r1_submit_query batch",
									  ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		SPITupleTable *tt;
		uint64		n;
		ArrayBuildState *keys;
		ArrayBuildState *prompts;
		MemoryContext old;
		Datum		values[4];
		Oid			itypes[4] = {INT8OID, INT4OID, TEXTARRAYOID, TEXTARRAYOID};

		SPI_cursor_fetch(portal, true, R1_SUBMIT_BATCH);
		n = SPI_processed;
		tt = SPI_tuptable;
		if (n == 0)
			break;

		old = MemoryContextSwitchTo(batch_ctx);
		keys = initArrayResult(TEXTOID, batch_ctx, false);
		prompts = initArrayResult(TEXTOID, batch_ctx, false);
		for (uint64 i = 0; i < n; i++)
		{
			bool		key_null,
						prompt_null;
			Datum		key = SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &key_null);
			Datum		prompt = SPI_getbinval(tt->vals[i], tt->tupdesc, 2, &prompt_null);
			char	   *key_str;
			text	   *prompt_text;

			if (key_null)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("key of row %lld of the query is NULL", (long long) (items + i + 1)),
						 errhint("Every row needs a key: the results in r1.job_items are found by it.")));
			key_str = OidOutputFunctionCall(key_out, key);
			if (prompt_null)
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("prompt of key \"%s\" is NULL", key_str),
						 errhint("Filter out rows without a prompt.")));
			prompt_text = cstring_to_text(OidOutputFunctionCall(prompt_out, prompt));
			r1_check_item_prompt(prompt_text, system_len);
			accumArrayResult(keys, CStringGetTextDatum(key_str), false, TEXTOID, batch_ctx);
			accumArrayResult(prompts, PointerGetDatum(prompt_text), false, TEXTOID, batch_ctx);
		}
		SPI_freetuptable(tt);

		values[0] = Int64GetDatum(job_id);
		values[1] = Int32GetDatum((int32) items);
		values[2] = makeArrayResult(keys, batch_ctx);
		values[3] = makeArrayResult(prompts, batch_ctx);
		MemoryContextSwitchTo(old);

		r1_become_owner(&as, owner);
		if (SPI_execute_with_args("INSERT INTO r1.job_items (job_id, item_no, key, prompt)"
								  " SELECT $1, $2 + u.n, u.k, u.p"
								  " FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4))"
								  "  WITH ORDINALITY AS u(k, p, n)",
								  4, itypes, values, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not insert the job items");
		r1_become_caller(&as);
		items += n;
		MemoryContextReset(batch_ctx);
	}
	SPI_cursor_close(portal);

	r1_become_owner(&as, owner);
	r1_job_finish_insert(job_id, items);
	r1_become_caller(&as);
	SPI_finish();
	PG_RETURN_INT64(job_id);
}

PG_FUNCTION_INFO_V1(pg_r1_cancel_job);

/*
 * r1_cancel_job(id): queued and running items become cancelled, and so does
 * the job; the engine calls of its running items are interrupted (the engine
 * drops those sequences) once the cancel commits.  Returns false when the job
 * had already finished.
 */
Datum
pg_r1_cancel_job(PG_FUNCTION_ARGS)
{
	int64		job_id = PG_GETARG_INT64(0);
	Oid			owner = r1_jobs_owner();
	R1AsOwner	as;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(job_id)};
	bool		cancelled;

	r1_jobs_check_primary();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	/* as the caller: row-level security shows a role its own jobs only */
	if (SPI_execute_with_args("SELECT FROM r1.jobs WHERE id OPERATOR(pg_catalog.=) $1",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the job");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job " INT64_FORMAT " does not exist", job_id),
				 errhint("SELECT id, state FROM r1.jobs lists your jobs.")));

	r1_become_owner(&as, owner);
	/* items first, then the job row: the order the job workers lock in */
	if (SPI_execute_with_args("UPDATE r1.job_items SET state = 'cancelled', finished_at = pg_catalog.now(),"
							  " runner_pid = NULL, runner_start = NULL"
							  " WHERE job_id = $1 AND state IN ('queued', 'running')",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not cancel the job items");
	if (SPI_execute_with_args("UPDATE r1.jobs SET state = 'cancelled', finished_at = pg_catalog.now()"
							  " WHERE id = $1 AND state IN ('queued', 'running')",
							  1, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not cancel the job");
	cancelled = SPI_processed == 1;
	r1_become_caller(&as);
	SPI_finish();

	if (cancelled)
	{
		char		payload[32];

		snprintf(payload, sizeof(payload), INT64_FORMAT, job_id);
		Async_Notify(R1_JOBS_CHANNEL, payload);
		r1_jobs_cancel_at_commit(job_id);
	}
	PG_RETURN_BOOL(cancelled);
}
