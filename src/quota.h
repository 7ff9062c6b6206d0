/*
 * quota.h - limits a DBA puts on model use: r1.max_tokens_per_call and the
 * per-role daily token quotas of r1.role_quota, counted in shared memory.
 *
 * Every code path that generates tokens for a role (r1_reason, batches, job
 * runners, replays) does:
 *
 *		r1_check_max_tokens(max_tokens, from_default);
 *		role = r1_quota_role();			-- or the role a job was submitted by
 *		r1_quota_reserve(&hold, role, r1_quota_estimate(prompt_bytes, max_tokens));
 *										-- ERROR 53400 when it does not fit
 *		... generate ...
 *		r1_quota_settle(&hold, prompt_tokens + completion_tokens);	-- 0 on failure
 *
 * and gives the hold back with r1_quota_settle(&hold, 0) when the call fails
 * (PG_CATCH, a memory context callback); a process that exits gives back
 * whatever it still holds.  r1_quota_try_reserve is the same without the
 * ERROR (batches make an error row, job items wait).  r1_quota_check and
 * r1_quota_charge remain for callers without a reservation: a charge after
 * the fact can overshoot the quota, a reservation cannot.
 */
#ifndef R1_QUOTA_H
#define R1_QUOTA_H

#include "postgres.h"

extern int	r1_max_tokens_per_call;
extern char *r1_role_quota;

/* _PG_init: the settings r1.max_tokens_per_call and r1.role_quota */
extern void r1_limits_init(void);

/* shared memory (shmem.h says when) */
extern void r1_quota_shmem_request(void);
extern void r1_quota_shmem_init(void);

/*
 * ERROR (54000) when max_tokens is over r1.max_tokens_per_call;
 * from_default says it came from r1.max_tokens_default (for the hint).
 */
extern void r1_check_max_tokens(int max_tokens, bool from_default);

/* The role calls in this session are charged to: the session (login) user. */
extern Oid	r1_quota_role(void);

/*
 * The role's daily quota from r1.role_quota, or -1 when it has none.
 * Needs a transaction (looks the role's name up).
 */
extern int64 r1_quota_of(Oid role);

/*
 * ERROR (53400) when the role has used its quota for today (UTC); returns
 * the tokens it has left, or -1 when it has no quota.
 */
extern int64 r1_quota_check(Oid role);

/* Add tokens to the role's usage today; a no-op for a role without quota. */
extern void r1_quota_charge(Oid role, int64 tokens);

/* chat template tokens (BOS, User, Assistant, <think>, newline) counted on top of the prompt's bytes */
#define R1_QUOTA_TEMPLATE_TOKENS 16

/* the most a call can cost: prompt + system bytes, the template, max_tokens */
extern int64 r1_quota_estimate(size_t prompt_bytes, int64 max_tokens);

/* tokens held for one call in flight; tokens == 0: nothing held */
typedef struct R1QuotaHold
{
	Oid			role;
	int64		tokens;
	bool		limited;		/* the role had a quota at reserve time:
								 * charge it */
} R1QuotaHold;

typedef enum R1QuotaFit
{
	R1_QUOTA_FITS,				/* reserved (or the role has no quota) */
	R1_QUOTA_WAIT,				/* not now: fits once calls settle or the day
								 * turns */
	R1_QUOTA_NEVER				/* more than the whole daily quota */
} R1QuotaFit;

/*
 * Reserve tokens for role against what it has left today (quota - used -
 * reserved).  try: returns how it fits and, when it does not, why (palloc'd);
 * r1_quota_reserve raises 53400 instead.
 */
extern R1QuotaFit r1_quota_try_reserve(R1QuotaHold *hold, Oid role, int64 tokens, char **why);
extern void r1_quota_reserve(R1QuotaHold *hold, Oid role, int64 tokens);

/*
 * Give the hold back and charge actual tokens (0: a failed call, nothing
 * charged).  Needs no transaction (the role was looked up at reserve time).
 */
extern void r1_quota_settle(R1QuotaHold *hold, int64 actual);

/*
 * A batch item about to be sent (client_many.h's admit step, for
 * r1_reason_many and r1_vote): reserve its cost.  true: send it.  false,
 * *refusal NULL: hold it until some of the in_flight others settle.  false,
 * *refusal set: the item fails with that error text ("53400: ...",
 * allocated in mcxt).
 */
extern bool r1_quota_admit_item(R1QuotaHold *hold, Oid role, int64 tokens, int in_flight,
								MemoryContext mcxt, char **refusal);

/* Give back, charging nothing, whatever n holds still hold (a batch that ended early). */
extern void r1_quota_release_all(R1QuotaHold *holds, int n);

/* Write the usage file when usage changed (jobs launcher, every second). */
extern void r1_quota_flush(bool force);

/*
 * 'role=N, *=N' lists (r1.role_quota, r1.job_role_max_running): parse into a
 * malloc'd list for a GUC check hook; look a role up (-1: not listed; "*"
 * covers superusers only with others_su).
 */
extern bool r1_parse_role_list(const char *value, void **extra, const char *what);
extern int64 r1_role_list_lookup(const void *extra, Oid role, bool others_su);

#endif							/* R1_QUOTA_H */
