/*
 * quota.c - r1.max_tokens_per_call and per-role daily token quotas.
 *
 * r1.role_quota (postgresql.conf or ALTER SYSTEM, then reload) lists daily
 * token budgets by role name:
 *
 *		r1.role_quota = 'alice=100000, bob=5000, *=1000000'
 *
 * "*" stands for every other role except superusers; a role that is not
 * listed (and no "*") has no quota.  Role names follow SQL identifier rules:
 * unquoted names are folded to lower case, "Double Quoted" ones are kept.
 * A call is charged to the session (login) user, so SET ROLE does not escape
 * a quota, and is charged its prompt plus completion tokens when it ends;
 * a call is refused at once (SQLSTATE 53400) while the role's usage today is
 * at or over its quota.  Calls already running when the quota runs out
 * finish, so usage can overshoot by what concurrent calls generate.  Days
 * are UTC days: usage restarts at 00:00 UTC.  Usage lives in shared memory:
 * a server restart forgets it.
 *
 * Locking: r1_quota_lock (one LWLock) protects the hash table of usage, kept
 * only for roles that have a quota.  Nothing but the table is touched while
 * it is held.
 */
#include "postgres.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "quota.h"

#define R1_QUOTA_MAX_ROLES	1024	/* roles with a quota that can call in one day */

int			r1_max_tokens_per_call = 0;
char	   *r1_role_quota = NULL;

typedef struct R1QuotaItem
{
	char		name[NAMEDATALEN];
	int64		quota;
} R1QuotaItem;

/* r1.role_quota parsed (the GUC's "extra") */
typedef struct R1QuotaList
{
	int64		others;			/* the "*" entry; -1 when there is none */
	int			n;
	R1QuotaItem items[FLEXIBLE_ARRAY_MEMBER];
} R1QuotaList;

typedef struct R1QuotaEntry
{
	Oid			role;			/* hash key */
	int32		day;			/* UTC day (since 2000-01-01) of "used" */
	int64		used;
} R1QuotaEntry;

static R1QuotaList *r1_quota_list = NULL;
static HTAB *r1_quota_hash = NULL;
static LWLock *r1_quota_lock = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* ---- r1.role_quota ---- */

static void
r1_skip_space(const char **p)
{
	while (isspace((unsigned char) **p))
		(*p)++;
}

/* One role name: "quoted" (with "" for a quote) or a bare word, folded to lower case. */
static bool
r1_parse_role(const char **p, char *name)
{
	int			n = 0;

	if (**p == '"')
	{
		(*p)++;
		for (;;)
		{
			if (**p == '\0')
				return false;
			if (**p == '"')
			{
				if ((*p)[1] != '"')
					break;
				(*p)++;
			}
			if (n >= NAMEDATALEN - 1)
				return false;
			name[n++] = *(*p)++;
		}
		(*p)++;
	}
	else if (**p == '*')
		name[n++] = *(*p)++;
	else
	{
		while (**p && **p != '=' && **p != ',' && !isspace((unsigned char) **p))
		{
			if (n >= NAMEDATALEN - 1)
				return false;
			name[n++] = (char) tolower((unsigned char) *(*p)++);
		}
	}
	name[n] = '\0';
	return n > 0;
}

static bool
r1_role_quota_check(char **newval, void **extra, GucSource source)
{
	const char *p = *newval ? *newval : "";
	int			cap = 1;
	R1QuotaList *list;

	for (const char *q = p; *q; q++)
		cap += *q == ',';
	/* the GUC machinery free()s "extra" */
	list = malloc(offsetof(R1QuotaList, items) + cap * sizeof(R1QuotaItem));
	if (list == NULL)
		return false;
	list->others = -1;
	list->n = 0;

	r1_skip_space(&p);
	while (*p)
	{
		char		name[NAMEDATALEN];
		char	   *end;
		long long	v;

		if (!r1_parse_role(&p, name))
		{
			GUC_check_errdetail("Expected a role name at \"%s\".", p);
			goto bad;
		}
		r1_skip_space(&p);
		if (*p != '=')
		{
			GUC_check_errdetail("Expected \"=\" after role \"%s\".", name);
			goto bad;
		}
		p++;
		r1_skip_space(&p);
		errno = 0;
		v = strtoll(p, &end, 10);
		if (end == p || !isdigit((unsigned char) *p) || errno != 0)
		{
			GUC_check_errdetail("The quota of role \"%s\" must be a whole number of tokens >= 0.", name);
			goto bad;
		}
		p = end;
		if (strcmp(name, "*") == 0)
		{
			if (list->others >= 0)
			{
				GUC_check_errdetail("\"*\" is given twice.");
				goto bad;
			}
			list->others = v;
		}
		else
		{
			for (int i = 0; i < list->n; i++)
				if (strcmp(list->items[i].name, name) == 0)
				{
					GUC_check_errdetail("Role \"%s\" is given twice.", name);
					goto bad;
				}
			strlcpy(list->items[list->n].name, name, NAMEDATALEN);
			list->items[list->n].quota = v;
			list->n++;
		}
		r1_skip_space(&p);
		if (*p == ',')
		{
			p++;
			r1_skip_space(&p);
			if (*p == '\0')
			{
				GUC_check_errdetail("Expected a role after the last comma.");
				goto bad;
			}
		}
		else if (*p != '\0')
		{
			GUC_check_errdetail("Expected \",\" at \"%s\".", p);
			goto bad;
		}
	}
	*extra = list;
	return true;

bad:
	GUC_check_errhint("Write role=tokens pairs separated by commas, e.g. 'alice=100000, bob=5000, *=1000000'.");
	free(list);
	return false;
}

static void
r1_role_quota_assign(const char *newval, void *extra)
{
	r1_quota_list = (R1QuotaList *) extra;
}

/* ---- shared memory ---- */

static void
r1_quota_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(hash_estimate_size(R1_QUOTA_MAX_ROLES, sizeof(R1QuotaEntry)));
	RequestNamedLWLockTranche("r1_pg quota", 1);
}

static void
r1_quota_shmem_startup(void)
{
	HASHCTL		info;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(Oid);
	info.entrysize = sizeof(R1QuotaEntry);
	r1_quota_hash = ShmemInitHash("r1_pg role quota usage", R1_QUOTA_MAX_ROLES, R1_QUOTA_MAX_ROLES,
								  &info, HASH_ELEM | HASH_BLOBS);
	r1_quota_lock = &(GetNamedLWLockTranche("r1_pg quota"))->lock;
	LWLockRelease(AddinShmemInitLock);
}

void
r1_limits_init(bool preloading)
{
	DefineCustomIntVariable("r1.max_tokens_per_call",
							"Largest max_tokens one call may ask for (0 = no limit).",
							"A call asking for more, or run with a larger r1.max_tokens_default, fails with SQLSTATE 54000.",
							&r1_max_tokens_per_call,
							0, 0, INT_MAX,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("r1.role_quota",
							   "Tokens (prompt + completion) each role may use per UTC day.",
							   "role=tokens pairs separated by commas, e.g. 'alice=100000, bob=5000, *=1000000'; "
							   "\"*\" is every other role except superusers. Calls are charged to the session user.",
							   &r1_role_quota,
							   "",
							   PGC_SIGHUP,
							   0,
							   r1_role_quota_check, r1_role_quota_assign, NULL);

	if (!preloading)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = r1_quota_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = r1_quota_shmem_startup;
}

/* ---- checks ---- */

void
r1_check_max_tokens(int max_tokens, bool from_default)
{
	if (r1_max_tokens_per_call <= 0 || max_tokens <= r1_max_tokens_per_call)
		return;
	if (from_default)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("r1.max_tokens_default (%d) is over the limit r1.max_tokens_per_call (%d)",
						max_tokens, r1_max_tokens_per_call),
				 errhint("Pass max_tokens <= %d, or SET r1.max_tokens_default = %d.",
						 r1_max_tokens_per_call, r1_max_tokens_per_call)));
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("max_tokens %d is over the limit r1.max_tokens_per_call (%d)",
					max_tokens, r1_max_tokens_per_call),
			 errhint("Pass max_tokens <= %d; an administrator sets r1.max_tokens_per_call.",
					 r1_max_tokens_per_call)));
}

Oid
r1_quota_role(void)
{
	return GetSessionUserId();
}

int64
r1_quota_of(Oid role)
{
	R1QuotaList *list = r1_quota_list;
	char	   *name;

	if (list == NULL || (list->n == 0 && list->others < 0))
		return -1;
	name = GetUserNameFromId(role, true);
	if (name != NULL)
		for (int i = 0; i < list->n; i++)
			if (strcmp(list->items[i].name, name) == 0)
				return list->items[i].quota;
	if (list->others >= 0 && !superuser_arg(role))
		return list->others;
	return -1;
}

static int32
r1_today(void)
{
	return (int32) (GetCurrentTimestamp() / USECS_PER_DAY);
}

/* The role's usage today, with the lock held. */
static int64
r1_quota_used_locked(Oid role, int32 today)
{
	R1QuotaEntry *e = hash_search(r1_quota_hash, &role, HASH_FIND, NULL);

	if (e == NULL || e->day != today)
		return 0;
	return e->used;
}

int64
r1_quota_check(Oid role)
{
	int64		quota = r1_quota_of(role);
	int64		used;
	int32		today = r1_today();

	if (quota < 0)
		return -1;
	if (r1_quota_hash == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1.role_quota needs r1_pg in shared_preload_libraries"),
				 errhint("Add r1_pg to shared_preload_libraries and restart the server.")));
	LWLockAcquire(r1_quota_lock, LW_SHARED);
	used = r1_quota_used_locked(role, today);
	LWLockRelease(r1_quota_lock);
	if (used >= quota)
	{
		char	   *name = GetUserNameFromId(role, true);

		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("role \"%s\" has used its daily token quota", name ? name : "?"),
				 errdetail("It has used " INT64_FORMAT " of its " INT64_FORMAT " tokens today (r1.role_quota); the quota resets at %s.",
						   used, quota,
						   timestamptz_to_str((TimestampTz) (today + 1) * USECS_PER_DAY)),
				 errhint("Wait until the quota resets at 00:00 UTC, or ask an administrator to raise the role's entry in r1.role_quota.")));
	}
	return quota - used;
}

void
r1_quota_charge(Oid role, int64 tokens)
{
	int32		today = r1_today();
	R1QuotaEntry *e;
	bool		found;

	if (tokens <= 0 || r1_quota_hash == NULL || r1_quota_of(role) < 0)
		return;
	LWLockAcquire(r1_quota_lock, LW_EXCLUSIVE);
	e = hash_search(r1_quota_hash, &role, HASH_ENTER_NULL, &found);
	if (e == NULL)
	{
		/* full: forget the entries of earlier days, then try again */
		HASH_SEQ_STATUS seq;
		R1QuotaEntry *old;

		hash_seq_init(&seq, r1_quota_hash);
		while ((old = hash_seq_search(&seq)) != NULL)
			if (old->day != today)
				hash_search(r1_quota_hash, &old->role, HASH_REMOVE, NULL);
		e = hash_search(r1_quota_hash, &role, HASH_ENTER_NULL, &found);
	}
	if (e != NULL)
	{
		if (!found || e->day != today)
		{
			e->day = today;
			e->used = 0;
		}
		e->used += tokens;
	}
	LWLockRelease(r1_quota_lock);
	if (e == NULL)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("r1_pg cannot count the tokens of more than %d roles a day; this call was not charged",
						R1_QUOTA_MAX_ROLES),
				 errhint("Give quotas to fewer roles in r1.role_quota.")));
}

/* ---- r1_quota_usage() ---- */

PG_FUNCTION_INFO_V1(pg_r1_quota_usage);

/*
 * Usage today of every role with a quota that made calls; a role that is not
 * a superuser or pg_read_all_stats member sees only its own row.
 */
Datum
pg_r1_quota_usage(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);
	Oid			me = r1_quota_role();
	int32		today = r1_today();
	R1QuotaEntry *copy;
	int			n = 0;
	HASH_SEQ_STATUS seq;
	R1QuotaEntry *e;

	InitMaterializedSRF(fcinfo, 0);
	if (r1_quota_hash == NULL)
		return (Datum) 0;

	copy = palloc(sizeof(R1QuotaEntry) * R1_QUOTA_MAX_ROLES);
	LWLockAcquire(r1_quota_lock, LW_SHARED);
	hash_seq_init(&seq, r1_quota_hash);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (n < R1_QUOTA_MAX_ROLES && e->day == today && (all || e->role == me))
			copy[n++] = *e;
	LWLockRelease(r1_quota_lock);

	for (int i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};
		char	   *name = GetUserNameFromId(copy[i].role, true);
		int64		quota = r1_quota_of(copy[i].role);

		if (name == NULL)
			continue;			/* dropped since */
		values[0] = CStringGetDatum(name);
		values[0] = DirectFunctionCall1(namein, values[0]);
		values[1] = Int64GetDatum(quota);
		nulls[1] = quota < 0;
		values[2] = Int64GetDatum(copy[i].used);
		values[3] = Int64GetDatum(Max(quota - copy[i].used, 0));
		nulls[3] = quota < 0;
		values[4] = TimestampTzGetDatum((TimestampTz) (today + 1) * USECS_PER_DAY);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
