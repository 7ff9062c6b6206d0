/*
 * quota.h - limits a DBA puts on model use: r1.max_tokens_per_call and the
 * per-role daily token quotas of r1.role_quota, counted in shared memory.
 *
 * Every code path that generates tokens for a role (r1_reason, batches, job
 * runners) does:
 *
 *		r1_check_max_tokens(max_tokens, from_default);
 *		role = r1_quota_role();			-- or the role a job belongs to
 *		r1_quota_check(role);			-- ERROR 53400 when used up
 *		... generate ...
 *		r1_quota_charge(role, prompt_tokens + completion_tokens);
 */
#ifndef R1_QUOTA_H
#define R1_QUOTA_H

#include "postgres.h"

extern int	r1_max_tokens_per_call;
extern char *r1_role_quota;

/* _PG_init: settings always; shared memory hooks when preloading */
extern void r1_limits_init(bool preloading);

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

#endif							/* R1_QUOTA_H */
