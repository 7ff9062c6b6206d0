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
 * a quota.  Before a prompt is sent, the most it can cost is reserved: its
 * size in bytes (every token of the byte-level tokenizer covers at least one
 * byte) plus the chat template (R1_QUOTA_TEMPLATE_TOKENS) plus max_tokens.
 * A prompt whose reservation does not fit in what the role has left today
 * (quota - used - reserved) is refused (SQLSTATE 53400); when it ends, the
 * reservation is settled: the real prompt + completion tokens are added to
 * the usage (nothing when the call failed) and the rest is given back.  So
 * usage never exceeds the quota, whatever runs at once.  Days are UTC days:
 * usage restarts at 00:00 UTC.
 *
 * Usage survives restarts: it is written to $PGDATA/pg_stat/r1_quota.stat by
 * the postmaster at shutdown and, when it changed, every second by the jobs
 * launcher (r1_quota_flush), and read back when shared memory is set up, so
 * a crash forgets at most the last second of usage.  Reservations live only
 * in memory: a process that exits gives its own back (before_shmem_exit).
 *
 * Locking: r1_quota_lock (one LWLock) protects the hash table of usage, kept
 * only for roles that have a quota.  Nothing but the table is touched while
 * it is held.  r1_quota_state->changes (an atomic) counts charges, so the
 * flusher knows when there is something to write.
 */
#include "postgres.h"

#include <ctype.h>

#include "access/htup_details.h"
#include "catalog/pg_authid.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "quota.h"

#define R1_QUOTA_MAX_ROLES	1024	/* roles with a quota that can call in one
									 * day */
#define R1_QUOTA_FILE		"pg_stat/r1_quota.stat"
#define R1_QUOTA_FILE_MAGIC	0x52315131	/* "R1Q1" */
#define R1_QUOTA_MAX_HOLDS	16	/* roles one process holds reservations for */

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
	int64		reserved;		/* held by calls in flight (any day) */
} R1QuotaEntry;

typedef struct R1QuotaState
{
	pg_atomic_uint64 changes;	/* bumped at every charge */
} R1QuotaState;

/* what this process holds, given back when it exits */
typedef struct R1LocalHold
{
	Oid			role;
	int64		tokens;
} R1LocalHold;

static R1QuotaList *r1_quota_list = NULL;
static HTAB *r1_quota_hash = NULL;
static LWLock *r1_quota_lock = NULL;
static R1QuotaState *r1_quota_state = NULL;
static R1LocalHold r1_local_holds[R1_QUOTA_MAX_HOLDS];
static bool r1_local_exit_registered = false;
static uint64 r1_quota_flushed = 0; /* flusher: changes already written */


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

/*
 * Parse 'role=N, role=N, *=N' into a malloc'd R1QuotaList (GUC "extra");
 * false with GUC_check_errdetail when it is not valid.  what names the
 * number in messages ("tokens", "items").
 */
bool
r1_parse_role_list(const char *value, void **extra, const char *what)
{
	const char *p = value ? value : "";
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
			GUC_check_errdetail("The %s of role \"%s\" must be a whole number of %s >= 0.",
								strcmp(what, "tokens") == 0 ? "quota" : "limit", name, what);
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
	GUC_check_errhint("Write role=%s pairs separated by commas, e.g. 'alice=100000, bob=5000, *=1000000'.", what);
	free(list);
	return false;
}

static bool
r1_role_quota_check(char **newval, void **extra, GucSource source)
{
	return r1_parse_role_list(*newval, extra, "tokens");
}

/* The value of role in a parsed list, or -1; "*" applies to superusers only when others_su. */
int64
r1_role_list_lookup(const void *extra, Oid role, bool others_su)
{
	const R1QuotaList *list = (const R1QuotaList *) extra;
	char	   *name;

	if (list == NULL || (list->n == 0 && list->others < 0))
		return -1;
	name = GetUserNameFromId(role, true);
	if (name != NULL)
		for (int i = 0; i < list->n; i++)
			if (strcmp(list->items[i].name, name) == 0)
				return list->items[i].quota;
	if (list->others >= 0 && (others_su || !superuser_arg(role)))
		return list->others;
	return -1;
}

static void
r1_role_quota_assign(const char *newval, void *extra)
{
	r1_quota_list = (R1QuotaList *) extra;
}

/* ---- shared memory and the usage file ---- */

void
r1_quota_shmem_request(void)
{
	RequestAddinShmemSpace(hash_estimate_size(R1_QUOTA_MAX_ROLES, sizeof(R1QuotaEntry)));
	RequestAddinShmemSpace(MAXALIGN(sizeof(R1QuotaState)));
	RequestNamedLWLockTranche("r1_pg quota", 1);
}

/*
 * Write today's usage to R1_QUOTA_FILE (a temporary file, then a durable
 * rename), when it changed since the last write (or always with force).
 * The postmaster at shutdown, the jobs launcher every second.
 */
void
r1_quota_flush(bool force)
{
	uint64		changes;
	int32		today;
	R1QuotaEntry *copy;
	int			n = 0;
	HASH_SEQ_STATUS seq;
	R1QuotaEntry *e;
	FILE	   *f;
	uint32		header[2] = {R1_QUOTA_FILE_MAGIC, 0};
	const char *tmp = R1_QUOTA_FILE ".tmp";

	if (r1_quota_hash == NULL || r1_quota_state == NULL)
		return;
	changes = pg_atomic_read_u64(&r1_quota_state->changes);
	if (!force && changes == r1_quota_flushed)
		return;
	today = (int32) (GetCurrentTimestamp() / USECS_PER_DAY);
	copy = palloc(sizeof(R1QuotaEntry) * R1_QUOTA_MAX_ROLES);
	LWLockAcquire(r1_quota_lock, LW_SHARED);
	hash_seq_init(&seq, r1_quota_hash);
	while ((e = hash_seq_search(&seq)) != NULL)
		if (n < R1_QUOTA_MAX_ROLES && e->day == today && e->used > 0)
			copy[n++] = *e;
	LWLockRelease(r1_quota_lock);

	header[1] = (uint32) n;
	f = AllocateFile(tmp, PG_BINARY_W);
	if (f == NULL)
		goto error;
	if (fwrite(header, sizeof(header), 1, f) != 1)
		goto error;
	for (int i = 0; i < n; i++)
	{
		if (fwrite(&copy[i].role, sizeof(Oid), 1, f) != 1 ||
			fwrite(&copy[i].day, sizeof(int32), 1, f) != 1 ||
			fwrite(&copy[i].used, sizeof(int64), 1, f) != 1)
			goto error;
	}
	if (FreeFile(f) != 0)
	{
		f = NULL;
		goto error;
	}
	f = NULL;
	if (durable_rename(tmp, R1_QUOTA_FILE, LOG) != 0)
		goto error;
	r1_quota_flushed = changes;
	pfree(copy);
	return;

error:
	ereport(LOG,
			(errcode_for_file_access(),
			 errmsg("could not write r1 quota usage file \"%s\": %m", tmp)));
	if (f)
		FreeFile(f);
	unlink(tmp);
	pfree(copy);
}

/* Read today's usage back (shared memory startup, lock not needed yet). */
static void
r1_quota_load(void)
{
	FILE	   *f = AllocateFile(R1_QUOTA_FILE, PG_BINARY_R);
	uint32		header[2];
	int32		today = (int32) (GetCurrentTimestamp() / USECS_PER_DAY);

	if (f == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					(errcode_for_file_access(),
					 errmsg("could not read r1 quota usage file \"%s\": %m", R1_QUOTA_FILE)));
		return;
	}
	if (fread(header, sizeof(header), 1, f) != 1 || header[0] != R1_QUOTA_FILE_MAGIC ||
		header[1] > R1_QUOTA_MAX_ROLES)
	{
		ereport(LOG,
				(errmsg("ignoring r1 quota usage file \"%s\": not a usage file of this version", R1_QUOTA_FILE)));
		FreeFile(f);
		return;
	}
	for (uint32 i = 0; i < header[1]; i++)
	{
		Oid			role;
		int32		day;
		int64		used;
		R1QuotaEntry *e;
		bool		found;

		if (fread(&role, sizeof(Oid), 1, f) != 1 || fread(&day, sizeof(int32), 1, f) != 1 ||
			fread(&used, sizeof(int64), 1, f) != 1)
		{
			ereport(LOG, (errmsg("r1 quota usage file \"%s\" is truncated", R1_QUOTA_FILE)));
			break;
		}
		if (day != today)
			continue;
		e = hash_search(r1_quota_hash, &role, HASH_ENTER_NULL, &found);
		if (e == NULL)
			break;
		e->day = day;
		e->used = used;
		e->reserved = 0;
	}
	FreeFile(f);
}

/* postmaster, at shutdown: write the usage (not after a crash: memory may be corrupt) */
static void
r1_quota_shmem_shutdown(int code, Datum arg)
{
	if (code != 0)
		return;
	r1_quota_flush(true);
}

void
r1_quota_shmem_init(void)
{
	HASHCTL		info;
	bool		found;

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(Oid);
	info.entrysize = sizeof(R1QuotaEntry);
	r1_quota_hash = ShmemInitHash("r1_pg role quota usage", R1_QUOTA_MAX_ROLES, R1_QUOTA_MAX_ROLES,
								  &info, HASH_ELEM | HASH_BLOBS);
	r1_quota_lock = &(GetNamedLWLockTranche("r1_pg quota"))->lock;
	r1_quota_state = ShmemInitStruct("r1_pg quota state", MAXALIGN(sizeof(R1QuotaState)), &found);
	if (!found)
	{
		pg_atomic_init_u64(&r1_quota_state->changes, 0);
		r1_quota_load();
	}
	if (!IsUnderPostmaster)
		on_shmem_exit(r1_quota_shmem_shutdown, (Datum) 0);
}

void
r1_limits_init(void)
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
	return r1_role_list_lookup(r1_quota_list, role, false);
}

static int32
r1_today(void)
{
	return (int32) (GetCurrentTimestamp() / USECS_PER_DAY);
}

static void
r1_quota_need_shmem(void)
{
	if (r1_quota_hash == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("r1.role_quota needs r1_pg in shared_preload_libraries"),
				 errhint("Add r1_pg to shared_preload_libraries and restart the server.")));
}

/*
 * The role's entry, its usage moved to today (lock held exclusively); NULL
 * when the table is full even after forgetting earlier days.
 */
static R1QuotaEntry *
r1_quota_entry_locked(Oid role, int32 today)
{
	R1QuotaEntry *e;
	bool		found;

	e = hash_search(r1_quota_hash, &role, HASH_ENTER_NULL, &found);
	if (e == NULL)
	{
		/*
		 * full: forget the entries of earlier days that hold nothing, then
		 * try again
		 */
		HASH_SEQ_STATUS seq;
		R1QuotaEntry *old;

		hash_seq_init(&seq, r1_quota_hash);
		while ((old = hash_seq_search(&seq)) != NULL)
			if (old->day != today && old->reserved == 0)
				hash_search(r1_quota_hash, &old->role, HASH_REMOVE, NULL);
		e = hash_search(r1_quota_hash, &role, HASH_ENTER_NULL, &found);
	}
	if (e != NULL && !found)
	{
		e->day = today;
		e->used = 0;
		e->reserved = 0;
	}
	else if (e != NULL && e->day != today)
	{
		e->day = today;
		e->used = 0;
	}
	return e;
}

static void
r1_quota_full_warning(void)
{
	ereport(WARNING,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("r1_pg cannot count the tokens of more than %d roles a day; this call was not charged",
					R1_QUOTA_MAX_ROLES),
			 errhint("Give quotas to fewer roles in r1.role_quota.")));
}

static char *
r1_quota_resets_at(int32 today)
{
	return pstrdup(timestamptz_to_str((TimestampTz) (today + 1) * USECS_PER_DAY));
}

int64
r1_quota_check(Oid role)
{
	int64		quota = r1_quota_of(role);
	int64		used = 0;
	int64		reserved = 0;
	int32		today = r1_today();
	R1QuotaEntry *e;

	if (quota < 0)
		return -1;
	r1_quota_need_shmem();
	LWLockAcquire(r1_quota_lock, LW_SHARED);
	e = hash_search(r1_quota_hash, &role, HASH_FIND, NULL);
	if (e != NULL)
	{
		used = e->day == today ? e->used : 0;
		reserved = e->reserved;
	}
	LWLockRelease(r1_quota_lock);
	if (used + reserved >= quota)
	{
		char	   *name = GetUserNameFromId(role, true);

		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("role \"%s\" has used its daily token quota", name ? name : "?"),
				 errdetail("It has used " INT64_FORMAT " of its " INT64_FORMAT " tokens today (r1.role_quota); the quota resets at %s.%s",
						   used, quota, r1_quota_resets_at(today),
						   reserved > 0 ? psprintf(" Calls in progress hold " INT64_FORMAT " more.", reserved) : ""),
				 errhint("Wait until the quota resets at 00:00 UTC, or ask an administrator to raise the role's entry in r1.role_quota.")));
	}
	return quota - used - reserved;
}

int64
r1_quota_estimate(size_t prompt_bytes, int64 max_tokens)
{
	return (int64) prompt_bytes + R1_QUOTA_TEMPLATE_TOKENS + Max(max_tokens, 0);
}

/* remember (or forget, tokens < 0) what this process holds, for r1_quota_exit */
static void r1_quota_exit(int code, Datum arg);
static void r1_quota_add(Oid role, int64 tokens);

static void
r1_quota_local(Oid role, int64 tokens)
{
	int			free_slot = -1;

	if (!r1_local_exit_registered)
	{
		before_shmem_exit(r1_quota_exit, (Datum) 0);
		r1_local_exit_registered = true;
	}
	for (int i = 0; i < R1_QUOTA_MAX_HOLDS; i++)
	{
		if (r1_local_holds[i].tokens != 0 && r1_local_holds[i].role == role)
		{
			r1_local_holds[i].tokens += tokens;
			return;
		}
		if (r1_local_holds[i].tokens == 0 && free_slot < 0)
			free_slot = i;
	}
	if (free_slot >= 0)
	{
		r1_local_holds[free_slot].role = role;
		r1_local_holds[free_slot].tokens = tokens;
	}
}

/* a process that exits gives back what it still holds (an ERROR, FATAL or cancel in a call) */
static void
r1_quota_exit(int code, Datum arg)
{
	if (r1_quota_hash == NULL)
		return;
	LWLockAcquire(r1_quota_lock, LW_EXCLUSIVE);
	for (int i = 0; i < R1_QUOTA_MAX_HOLDS; i++)
	{
		R1QuotaEntry *e;

		if (r1_local_holds[i].tokens <= 0)
			continue;
		e = hash_search(r1_quota_hash, &r1_local_holds[i].role, HASH_FIND, NULL);
		if (e != NULL)
			e->reserved = Max(e->reserved - r1_local_holds[i].tokens, 0);
		r1_local_holds[i].tokens = 0;
	}
	LWLockRelease(r1_quota_lock);
}

R1QuotaFit
r1_quota_try_reserve(R1QuotaHold *hold, Oid role, int64 tokens, char **why)
{
	int64		quota = r1_quota_of(role);
	int32		today = r1_today();
	R1QuotaEntry *e;
	int64		used = 0,
				reserved = 0;
	bool		fits = false;
	char	   *name;

	hold->role = role;
	hold->tokens = 0;
	hold->limited = quota >= 0;
	if (why)
		*why = NULL;
	if (quota < 0)
		return R1_QUOTA_FITS;
	r1_quota_need_shmem();
	LWLockAcquire(r1_quota_lock, LW_EXCLUSIVE);
	e = r1_quota_entry_locked(role, today);
	if (e != NULL)
	{
		used = e->used;
		reserved = e->reserved;
		fits = used + reserved + tokens <= quota;
		if (fits)
			e->reserved += tokens;
	}
	LWLockRelease(r1_quota_lock);
	if (e == NULL)
	{
		r1_quota_full_warning();
		return R1_QUOTA_FITS;
	}
	if (fits)
	{
		hold->tokens = tokens;
		r1_quota_local(role, tokens);
		return R1_QUOTA_FITS;
	}
	if (why)
	{
		name = GetUserNameFromId(role, true);
		if (tokens > quota)
			*why = psprintf("a call that could use " INT64_FORMAT " tokens (prompt bytes, chat template and max_tokens) "
							"does not fit in the daily token quota of role \"%s\" (" INT64_FORMAT ", r1.role_quota)",
							tokens, name ? name : "?", quota);
		else
			*why = psprintf("a call that could use " INT64_FORMAT " tokens (prompt bytes, chat template and max_tokens) "
							"does not fit in what role \"%s\" has left today: " INT64_FORMAT " of " INT64_FORMAT
							" (r1.role_quota; " INT64_FORMAT " used, " INT64_FORMAT " held by calls in progress; resets at %s)",
							tokens, name ? name : "?", Max(quota - used - reserved, 0), quota, used, reserved,
							r1_quota_resets_at(today));
	}
	return tokens > quota ? R1_QUOTA_NEVER : R1_QUOTA_WAIT;
}

void
r1_quota_reserve(R1QuotaHold *hold, Oid role, int64 tokens)
{
	char	   *why;
	R1QuotaFit	fit = r1_quota_try_reserve(hold, role, tokens, &why);

	if (fit == R1_QUOTA_FITS)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("%s", why),
			 errdetail("Before a call runs, r1_pg reserves the most it can cost: its prompt in bytes, "
					   "the chat template (%d) and max_tokens; the unused part is given back when it ends.",
					   R1_QUOTA_TEMPLATE_TOKENS),
			 fit == R1_QUOTA_NEVER ?
			 errhint("Pass a smaller max_tokens, or ask an administrator to raise the role's entry in r1.role_quota.") :
			 errhint("Pass a smaller max_tokens, wait for the role's calls in progress, or wait until the quota resets at 00:00 UTC.")));
}

bool
r1_quota_admit_item(R1QuotaHold *hold, Oid role, int64 tokens, int in_flight, MemoryContext mcxt,
					char **refusal)
{
	char	   *why;
	R1QuotaFit	fit = r1_quota_try_reserve(hold, role, tokens, &why);

	*refusal = NULL;
	if (fit == R1_QUOTA_FITS)
		return true;
	if (fit == R1_QUOTA_WAIT && in_flight > 0)
		return false;
	*refusal = MemoryContextStrdup(mcxt, psprintf("53400: %s", why));
	return false;
}

void
r1_quota_release_all(R1QuotaHold *holds, int n)
{
	for (int i = 0; i < n; i++)
		if (holds[i].tokens > 0)
			r1_quota_settle(&holds[i], 0);
}

void
r1_quota_settle(R1QuotaHold *hold, int64 actual)
{
	int64		held = hold->tokens;

	hold->tokens = 0;
	if (held > 0 && r1_quota_hash != NULL)
	{
		R1QuotaEntry *e;

		LWLockAcquire(r1_quota_lock, LW_EXCLUSIVE);
		e = hash_search(r1_quota_hash, &hold->role, HASH_FIND, NULL);
		if (e != NULL)
			e->reserved = Max(e->reserved - held, 0);
		LWLockRelease(r1_quota_lock);
		r1_quota_local(hold->role, -held);
	}
	if (actual > 0 && hold->limited)
		r1_quota_add(hold->role, actual);
}

void
r1_quota_charge(Oid role, int64 tokens)
{
	if (tokens <= 0 || r1_quota_hash == NULL || r1_quota_of(role) < 0)
		return;
	r1_quota_add(role, tokens);
}

/* add tokens to the role's usage today (no catalog access) */
static void
r1_quota_add(Oid role, int64 tokens)
{
	int32		today = r1_today();
	R1QuotaEntry *e;

	if (tokens <= 0 || r1_quota_hash == NULL)
		return;
	LWLockAcquire(r1_quota_lock, LW_EXCLUSIVE);
	e = r1_quota_entry_locked(role, today);
	if (e != NULL)
		e->used += tokens;
	LWLockRelease(r1_quota_lock);
	pg_atomic_fetch_add_u64(&r1_quota_state->changes, 1);
	if (e == NULL)
		r1_quota_full_warning();
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
