/*
 * activity.c - r1.stat_activity and r1.stats.
 *
 * Shared memory: one slot per backend (MaxBackends, indexed by MyBackendId),
 * written only by its backend under the slot's spinlock while an engine
 * request is in flight, and a block of atomic counters with a fixed
 * log-bucket latency histogram for the percentiles.  The engine host knows
 * the progress of each request (queue position, tokens so far): a backend
 * names its request with a tag ("pid.counter") and r1_stat_activity() asks
 * the host for the progress of every tagged request ({"op":"activity"}).
 *
 * Visibility follows pg_stat_activity: every row shows pid, role, database
 * and start time; state, progress and prompt only to the role itself, its
 * members, and pg_read_all_stats.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "serve/protocol.h"
#include "activity.h"
#include "client.h"

#define R1_ACTIVITY_PROMPT_LEN	1024	/* bytes of the prompt kept, like
										 * track_activity_query_size */
#define R1_TAG_LEN				64
#define R1_HIST_PER_OCTAVE		4	/* buckets per doubling: at most 19% wide */
#define R1_HIST_BUCKETS			(40 * R1_HIST_PER_OCTAVE)	/* 1 us .. 2^40 us (12.7
															 * days) */

typedef struct R1ActivitySlot
{
	slock_t		mutex;
	int			pid;			/* 0 when no request is in flight */
	Oid			roleid;			/* current user of the call */
	Oid			dbid;
	TimestampTz started;
	char		tag[R1_TAG_LEN];
	char		prompt[R1_ACTIVITY_PROMPT_LEN]; /* server encoding, clipped */
} R1ActivitySlot;

typedef struct R1Stats
{
	pg_atomic_uint64 requests;
	pg_atomic_uint64 completed;
	pg_atomic_uint64 errors;
	pg_atomic_uint64 cancellations;
	pg_atomic_uint64 timeouts;
	pg_atomic_uint64 prompt_tokens;
	pg_atomic_uint64 completion_tokens;
	pg_atomic_uint64 total_us;	/* latency of completed requests */
	pg_atomic_uint64 reset_at;	/* TimestampTz */
	pg_atomic_uint64 repetitions;	/* completed with finish_reason
									 * 'repetition' */
	pg_atomic_uint64 hist[R1_HIST_BUCKETS]; /* completed requests by latency */
} R1Stats;

typedef struct R1Activity
{
	R1Stats		stats;
	int			n_slots;
	R1ActivitySlot slots[FLEXIBLE_ARRAY_MEMBER];
} R1Activity;

static R1Activity *r1_activity = NULL;
static uint32 r1_tag_counter = 0;
static bool r1_exit_hook_set = false;

static Size
r1_activity_size(void)
{
	return add_size(offsetof(R1Activity, slots), mul_size(MaxBackends, sizeof(R1ActivitySlot)));
}

void
r1_activity_shmem_request(void)
{
	RequestAddinShmemSpace(r1_activity_size());
}

void
r1_activity_shmem_init(void)
{
	bool		found;

	r1_activity = ShmemInitStruct("r1_pg activity", r1_activity_size(), &found);
	if (!found)
	{
		R1Stats    *s = &r1_activity->stats;

		memset(r1_activity, 0, r1_activity_size());
		pg_atomic_init_u64(&s->requests, 0);
		pg_atomic_init_u64(&s->completed, 0);
		pg_atomic_init_u64(&s->errors, 0);
		pg_atomic_init_u64(&s->repetitions, 0);
		pg_atomic_init_u64(&s->cancellations, 0);
		pg_atomic_init_u64(&s->timeouts, 0);
		pg_atomic_init_u64(&s->prompt_tokens, 0);
		pg_atomic_init_u64(&s->completion_tokens, 0);
		pg_atomic_init_u64(&s->total_us, 0);
		pg_atomic_init_u64(&s->reset_at, (uint64) GetCurrentTimestamp());
		for (int i = 0; i < R1_HIST_BUCKETS; i++)
			pg_atomic_init_u64(&s->hist[i], 0);
		r1_activity->n_slots = MaxBackends;
		for (int i = 0; i < MaxBackends; i++)
			SpinLockInit(&r1_activity->slots[i].mutex);
	}
}

/* ---- counters ---- */

void
r1_stats_count_request(void)
{
	if (r1_activity)
		pg_atomic_fetch_add_u64(&r1_activity->stats.requests, 1);
}

void
r1_stats_count_outcome(R1Outcome outcome, double ms, int64 prompt_tokens, int64 completion_tokens)
{
	R1Stats    *s;

	if (r1_activity == NULL)
		return;
	s = &r1_activity->stats;
	switch (outcome)
	{
		case R1_OUTCOME_COMPLETED:
			{
				uint64		us = ms > 0 ? (uint64) (ms * 1000.0) : 0;
				int			b = us >= 1 ? (int) floor(R1_HIST_PER_OCTAVE * log2((double) us)) : 0;

				b = Max(0, Min(b, R1_HIST_BUCKETS - 1));
				pg_atomic_fetch_add_u64(&s->completed, 1);
				pg_atomic_fetch_add_u64(&s->total_us, us);
				pg_atomic_fetch_add_u64(&s->hist[b], 1);
				break;
			}
		case R1_OUTCOME_ERROR:
			pg_atomic_fetch_add_u64(&s->errors, 1);
			break;
		case R1_OUTCOME_CANCELLED:
			pg_atomic_fetch_add_u64(&s->cancellations, 1);
			break;
		case R1_OUTCOME_TIMEOUT:
			pg_atomic_fetch_add_u64(&s->timeouts, 1);
			break;
	}
	if (prompt_tokens > 0)
		pg_atomic_fetch_add_u64(&s->prompt_tokens, (uint64) prompt_tokens);
	if (completion_tokens > 0)
		pg_atomic_fetch_add_u64(&s->completion_tokens, (uint64) completion_tokens);
}

/* Query cancels and timeouts share SQLSTATE 57014: tell them apart by the message. */
static R1Outcome
r1_outcome_of(ErrorData *ed)
{
	if (ed->sqlerrcode != ERRCODE_QUERY_CANCELED)
		return R1_OUTCOME_ERROR;
	if ((ed->message_id && (strstr(ed->message_id, "timeout") || strstr(ed->message_id, "timed out"))) ||
		(ed->message && (strstr(ed->message, "timeout") || strstr(ed->message, "timed out"))))
		return R1_OUTCOME_TIMEOUT;
	return R1_OUTCOME_CANCELLED;
}

/* ---- this backend's slot ---- */

static R1ActivitySlot *
r1_my_slot(void)
{
	if (r1_activity == NULL || MyBackendId < 1 || MyBackendId > r1_activity->n_slots)
		return NULL;
	return &r1_activity->slots[MyBackendId - 1];
}

static void
r1_activity_clear(void)
{
	R1ActivitySlot *slot = r1_my_slot();

	if (slot == NULL || slot->pid != MyProcPid)
		return;
	SpinLockAcquire(&slot->mutex);
	slot->pid = 0;
	slot->tag[0] = '\0';
	slot->prompt[0] = '\0';
	SpinLockRelease(&slot->mutex);
}

/* A backend terminated during a request (FATAL skips PG_CATCH): a cancellation. */
static void
r1_activity_exit(int code, Datum arg)
{
	R1ActivitySlot *slot = r1_my_slot();

	if (slot != NULL && slot->pid == MyProcPid)
	{
		r1_stats_count_outcome(R1_OUTCOME_CANCELLED, 0, 0, 0);
		r1_activity_clear();
	}
}

static void
r1_activity_begin(const char *tag, const char *prompt, size_t prompt_len)
{
	R1ActivitySlot *slot = r1_my_slot();
	char	   *p;
	int			len;

	if (slot == NULL)
		return;
	if (!r1_exit_hook_set)
	{
		before_shmem_exit(r1_activity_exit, (Datum) 0);
		r1_exit_hook_set = true;
	}
	/* the prompt in the server encoding, clipped at a character boundary */
	len = pg_encoding_mbcliplen(PG_UTF8, prompt, (int) Min(prompt_len, (size_t) INT_MAX),
								R1_ACTIVITY_PROMPT_LEN * 4);
	p = pnstrdup(prompt, len);
	if (GetDatabaseEncoding() != PG_UTF8)
		p = pg_any_to_server(p, len, PG_UTF8);
	len = pg_mbcliplen(p, strlen(p), R1_ACTIVITY_PROMPT_LEN - 1);

	SpinLockAcquire(&slot->mutex);
	slot->roleid = GetUserId();
	slot->dbid = MyDatabaseId;
	slot->started = GetCurrentTimestamp();
	strlcpy(slot->tag, tag, sizeof(slot->tag));
	memcpy(slot->prompt, p, len);
	slot->prompt[len] = '\0';
	slot->pid = MyProcPid;
	SpinLockRelease(&slot->mutex);
}

Jsonb *
r1_observed_call(StringInfo req, const char *prompt, size_t prompt_len)
{
	MemoryContext cxt = CurrentMemoryContext;
	TimestampTz start = GetCurrentTimestamp();
	char		tag[R1_TAG_LEN];
	Jsonb	   *resp = NULL;

	/* {...} -> {...,"tag":"pid.n"} */
	Assert(req->len > 1 && req->data[req->len - 1] == '}');
	snprintf(tag, sizeof(tag), "%d.%u", MyProcPid, ++r1_tag_counter);
	req->len--;
	req->data[req->len] = '\0';
	appendStringInfo(req, ",\"tag\":\"%s\"}", tag);

	r1_stats_count_request();
	r1_activity_begin(tag, prompt, prompt_len);
	PG_TRY();
	{
		resp = r1_call(req->data, req->len, false);
		r1_stats_count_finish(resp);
	}
	PG_CATCH();
	{
		MemoryContext ecxt = MemoryContextSwitchTo(cxt);
		ErrorData  *ed = CopyErrorData();

		r1_stats_count_outcome(r1_outcome_of(ed), 0, 0, 0);
		FreeErrorData(ed);
		MemoryContextSwitchTo(ecxt);
		r1_activity_clear();
		PG_RE_THROW();
	}
	PG_END_TRY();
	r1_activity_clear();
	{
		long		secs;
		int			usecs;

		TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
		r1_stats_count_outcome(R1_OUTCOME_COMPLETED, secs * 1000.0 + usecs / 1000.0,
							   r1_json_int(resp, "prompt_tokens"),
							   r1_json_int(resp, "completion_tokens"));
	}
	return resp;
}

void
r1_stats_count_finish(Jsonb *resp)
{
	text	   *finish;
	r1_finish	f;

	if (r1_activity == NULL || resp == NULL)
		return;
	finish = r1_json_text(resp, "finish_reason");
	if (finish && r1_finish_parse(text_to_cstring(finish), &f) == 0 && f == R1_FINISH_REPETITION)
		pg_atomic_fetch_add_u64(&r1_activity->stats.repetitions, 1);
}

/* ---- SQL ---- */

/* The host's progress entries, by tag. */
typedef struct R1Progress
{
	char	   *tag;
	char	   *state;
	bool		has_position;
	int			position;
	int			prompt_tokens;
	int			completion_tokens;
	double		tokens_per_s;
} R1Progress;

static int
r1_fetch_progress(R1Progress **out)
{
	const char *req = "{\"op\":\"activity\"}";
	Jsonb	   *resp = r1_call(req, strlen(req), true);
	JsonbValue	arr;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0,
				cap = 16;

	*out = palloc(sizeof(R1Progress) * cap);
	if (resp == NULL || !r1_json_get(resp, "requests", &arr) || arr.type != jbvBinary)
		return 0;
	it = JsonbIteratorInit(arr.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		Jsonb	   *e;
		R1Progress *p;
		text	   *t;
		JsonbValue	pos;

		if (tok != WJB_ELEM || v.type != jbvBinary)
			continue;
		e = JsonbValueToJsonb(&v);
		if (n == cap)
		{
			cap *= 2;
			*out = repalloc(*out, sizeof(R1Progress) * cap);
		}
		p = &(*out)[n];
		t = r1_json_text(e, "tag");
		if (t == NULL)
			continue;
		p->tag = text_to_cstring(t);
		t = r1_json_text(e, "state");
		p->state = t ? text_to_cstring(t) : pstrdup("unknown");
		p->has_position = r1_json_get(e, "queue_position", &pos);
		p->position = (int) r1_json_int(e, "queue_position");
		p->prompt_tokens = (int) r1_json_int(e, "prompt_tokens");
		p->completion_tokens = (int) r1_json_int(e, "completion_tokens");
		p->tokens_per_s = r1_json_float(e, "tokens_per_s");
		n++;
	}
	return n;
}

PG_FUNCTION_INFO_V1(pg_r1_stat_activity);

Datum
pg_r1_stat_activity(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	R1ActivitySlot *copy;
	int			n = 0;
	R1Progress *prog = NULL;
	int			n_prog = 0;
	bool		read_all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);

	InitMaterializedSRF(fcinfo, 0);
	if (r1_activity == NULL)
		return (Datum) 0;

	copy = palloc(sizeof(R1ActivitySlot) * r1_activity->n_slots);
	for (int i = 0; i < r1_activity->n_slots; i++)
	{
		R1ActivitySlot *s = &r1_activity->slots[i];

		SpinLockAcquire(&s->mutex);
		if (s->pid != 0)
			memcpy(&copy[n++], s, sizeof(R1ActivitySlot));
		SpinLockRelease(&s->mutex);
	}
	if (n > 0)
		n_prog = r1_fetch_progress(&prog);

	for (int i = 0; i < n; i++)
	{
		R1ActivitySlot *s = &copy[i];
		Datum		values[11];
		bool		nulls[11];
		R1Progress *p = NULL;
		char	   *role = GetUserNameFromId(s->roleid, true);
		char	   *db = get_database_name(s->dbid);
		int			c = 0;

		memset(nulls, 0, sizeof(nulls));
		for (int j = 0; j < n_prog; j++)
			if (strcmp(prog[j].tag, s->tag) == 0)
				p = &prog[j];

		values[c++] = Int32GetDatum(s->pid);
		nulls[c] = role == NULL;
		values[c++] = role ? DirectFunctionCall1(namein, CStringGetDatum(role)) : (Datum) 0;
		nulls[c] = db == NULL;
		values[c++] = db ? DirectFunctionCall1(namein, CStringGetDatum(db)) : (Datum) 0;
		values[c++] = TimestampTzGetDatum(s->started);
		if (read_all || has_privs_of_role(GetUserId(), s->roleid))
		{
			/* sent but not in the engine yet, or finished and being delivered */
			values[c++] = CStringGetTextDatum(p ? p->state : "starting");
			nulls[c] = p == NULL || !p->has_position;
			values[c++] = Int32GetDatum(p ? p->position : 0);
			nulls[c] = p == NULL;
			values[c++] = Int32GetDatum(p ? p->prompt_tokens : 0);
			nulls[c] = p == NULL;
			values[c++] = Int32GetDatum(p ? p->completion_tokens : 0);
			nulls[c] = p == NULL;
			values[c++] = Float8GetDatum(p ? p->tokens_per_s : 0);
			values[c++] = CStringGetTextDatum(s->tag);
			values[c++] = CStringGetTextDatum(s->prompt);
		}
		else
		{
			for (int k = 0; k < 6; k++)
				nulls[c++] = true;
			values[c++] = CStringGetTextDatum("<insufficient privilege>");
		}
		Assert(c == lengthof(values));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* Upper edge of the bucket that holds the q-quantile, in ms (NULL when empty). */
static bool
r1_hist_quantile(const uint64 *hist, uint64 total, double q, double *ms)
{
	uint64		want,
				seen = 0;

	if (total == 0)
		return false;
	want = (uint64) ceil(q * (double) total);
	if (want < 1)
		want = 1;
	for (int i = 0; i < R1_HIST_BUCKETS; i++)
	{
		seen += hist[i];
		if (seen >= want)
		{
			*ms = pow(2.0, (double) (i + 1) / R1_HIST_PER_OCTAVE) / 1000.0;
			return true;
		}
	}
	*ms = pow(2.0, (double) R1_HIST_BUCKETS / R1_HIST_PER_OCTAVE) / 1000.0;
	return true;
}

PG_FUNCTION_INFO_V1(pg_r1_stats);

Datum
pg_r1_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[14];
	bool		nulls[14];
	uint64		hist[R1_HIST_BUCKETS];
	uint64		completed,
				hist_total = 0;
	R1Stats    *s;
	int			c = 0;
	double		ms;
	static const double qs[3] = {0.50, 0.95, 0.99};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	memset(nulls, 0, sizeof(nulls));
	if (r1_activity == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1_pg is not loaded"),
				 errhint("Add r1_pg to shared_preload_libraries and restart the server.")));
	s = &r1_activity->stats;
	completed = pg_atomic_read_u64(&s->completed);
	for (int i = 0; i < R1_HIST_BUCKETS; i++)
	{
		hist[i] = pg_atomic_read_u64(&s->hist[i]);
		hist_total += hist[i];
	}
	values[c++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->requests));
	values[c++] = Int64GetDatum((int64) completed);
	values[c++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->errors));
	values[c++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->cancellations));
	values[c++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->timeouts));
	values[c++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->prompt_tokens));
	values[c++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->completion_tokens));
	ms = pg_atomic_read_u64(&s->total_us) / 1000.0;
	values[c++] = Float8GetDatum(ms);
	nulls[c] = completed == 0;
	values[c++] = Float8GetDatum(completed ? ms / completed : 0);
	for (int k = 0; k < 3; k++)
	{
		double		q = 0;

		nulls[c] = !r1_hist_quantile(hist, hist_total, qs[k], &q);
		values[c++] = Float8GetDatum(q);
	}
	values[c++] = TimestampTzGetDatum((TimestampTz) pg_atomic_read_u64(&s->reset_at));

	/*
	 * 0.2.0: generations stopped by loop detection (older scripts lack the
	 * column)
	 */
	values[c++] = Int64GetDatum((int64) pg_atomic_read_u64(&s->repetitions));
	Assert(c == lengthof(values));
	if (tupdesc->natts > lengthof(values))
		elog(ERROR, "r1_stats() has more columns than this r1_pg library knows");
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

PG_FUNCTION_INFO_V1(pg_r1_stats_reset);

/* Like pg_stat_statements_reset(): counters restart at zero (not one atomic snapshot). */
Datum
pg_r1_stats_reset(PG_FUNCTION_ARGS)
{
	R1Stats    *s;

	if (r1_activity == NULL)
		PG_RETURN_VOID();
	s = &r1_activity->stats;
	pg_atomic_write_u64(&s->requests, 0);
	pg_atomic_write_u64(&s->completed, 0);
	pg_atomic_write_u64(&s->errors, 0);
	pg_atomic_write_u64(&s->cancellations, 0);
	pg_atomic_write_u64(&s->timeouts, 0);
	pg_atomic_write_u64(&s->prompt_tokens, 0);
	pg_atomic_write_u64(&s->completion_tokens, 0);
	pg_atomic_write_u64(&s->total_us, 0);
	pg_atomic_write_u64(&s->repetitions, 0);
	for (int i = 0; i < R1_HIST_BUCKETS; i++)
		pg_atomic_write_u64(&s->hist[i], 0);
	pg_atomic_write_u64(&s->reset_at, (uint64) GetCurrentTimestamp());
	PG_RETURN_VOID();
}
