-- r1_pg 0.1.0 -> 0.2.0 (ALTER EXTENSION r1_pg UPDATE)
--
-- Every change here is also in r1_pg--0.2.0.sql; test/t/010_upgrade.pl checks
-- that an updated 0.1.0 install equals a fresh 0.2.0 one.

\echo Use "ALTER EXTENSION r1_pg UPDATE TO '0.2.0'" to load this file. \quit

-- r1_status(): the build that serves (extension version and git commit) and
-- the CPU kernels the engine picked at start
ALTER TYPE r1.engine_status ADD ATTRIBUTE version text;
ALTER TYPE r1.engine_status ADD ATTRIBUTE cpu_path text;

-- a PL/pgSQL function with a pinned search_path: a caller's schemas cannot
-- shadow the operators and functions it uses
ALTER FUNCTION r1_job_status(bigint) SET search_path = pg_catalog, pg_temp;

-- ---- reasoning-aware SQL: answer grading, loop detection, voting (issue 19) ----
--
-- r1_answers_equal() grades answers the way math benchmarks do
-- (src/engine/answer_equal.c); docs/evaluation.md shows pass@1 and cons@k.

CREATE FUNCTION r1_answers_equal(a text, b text) RETURNS bool
AS 'MODULE_PATHNAME', 'pg_r1_answers_equal'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION r1_answers_equal(text, text) IS
'true when two final answers are the same for a math grader: whitespace, \left/\right, \dfrac/\tfrac/\frac{a}{b}/a/b, \text{} units, degrees, \%, a leading "x =", thousands separators and trailing periods do not matter; numbers compare by value (integers exactly, others within a relative 1e-4: 0.5 = \frac{1}{2} = 1/2); sets and bare lists in any order, tuples and intervals in order with the same brackets';
REVOKE ALL ON FUNCTION r1_answers_equal(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION r1_answers_equal(text, text) TO r1_user;

-- loop detection (r1.repetition_*): r1.stats counts the generations it
-- stopped, in a new last column; a function's OUT parameters cannot change
-- in place, so the view and the function are made again
DROP VIEW r1.stats;
DROP FUNCTION r1_stats();
CREATE FUNCTION r1_stats(OUT requests bigint, OUT completed bigint, OUT errors bigint,
						 OUT cancellations bigint, OUT timeouts bigint,
						 OUT prompt_tokens bigint, OUT completion_tokens bigint,
						 OUT total_ms float8, OUT mean_ms float8, OUT p50_ms float8,
						 OUT p95_ms float8, OUT p99_ms float8, OUT stats_reset timestamptz,
						 OUT repetitions bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_r1_stats'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION r1_stats() IS 'cumulative r1 request counters (see the view r1.stats)';
CREATE VIEW r1.stats AS SELECT * FROM r1_stats();
COMMENT ON VIEW r1.stats IS 'cumulative r1 requests since stats_reset: outcomes, tokens, latency of completed requests (mean exact; p50/p95/p99 the upper edge of a log bucket, at most 19% high); repetitions: completed requests that loop detection stopped (finish_reason ''repetition'')';
REVOKE ALL ON FUNCTION r1_stats() FROM PUBLIC;
REVOKE ALL ON r1.stats FROM PUBLIC;
GRANT EXECUTE ON FUNCTION r1_stats() TO r1_user, r1_auditor;
GRANT SELECT ON r1.stats TO r1_user, r1_auditor;

-- self-consistency voting: n samples of a prompt (sharing its prefill in the
-- engine), the majority \boxed{} answer under r1_answers_equal()
CREATE TYPE r1.vote AS (
	boxed text,
	share float8,
	votes int,
	n_boxed int,
	n int,
	answers text[],
	finish_reasons text[],
	think text,
	answer text,
	prompt_tokens int,
	completion_tokens bigint,
	ms float8
);
COMMENT ON TYPE r1.vote IS 'result of r1_reason_vote(): the majority \boxed{} answer (NULL when no sample boxed one), share = votes / n, votes for it, n_boxed samples with a boxed answer, n samples, each sample''s boxed answer and finish_reason (sample i used seed + i - 1), the think and answer of the first sample that gave the majority answer, prompt tokens, completion tokens of all samples, ms of the slowest';

CREATE TYPE r1.vote_item AS (
	ord int,
	boxed text,
	share float8,
	votes int,
	n_boxed int,
	n int,
	answers text[],
	finish_reasons text[],
	think text,
	answer text,
	prompt_tokens int,
	completion_tokens bigint,
	ms float8,
	error text
);
COMMENT ON TYPE r1.vote_item IS 'a row of r1_reason_vote_many(): ord is the prompt''s position in the array (from 1), then the columns of r1.vote; error is ''SQLSTATE: message'' for a prompt that failed (the other columns are then NULL)';

CREATE FUNCTION r1_reason_vote(prompt text,
							   n int DEFAULT 8,
							   max_tokens int DEFAULT NULL,
							   temperature float8 DEFAULT 0.6,
							   top_p float8 DEFAULT 0.95,
							   seed bigint DEFAULT NULL,
							   system text DEFAULT NULL,
							   top_k int DEFAULT 0,
							   min_p float8 DEFAULT 0,
							   max_think_tokens int DEFAULT NULL)
RETURNS r1.vote
AS 'MODULE_PATHNAME', 'pg_r1_reason_vote'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION r1_reason_vote(text, int, int, float8, float8, bigint, text, int, float8, int) IS
'self-consistency (cons@n): n samples of the prompt in one batch, sharing its prefill; returns the majority \boxed{} answer (compared with r1_answers_equal, ties to the earliest), its share, n_boxed, each sample''s answer and finish_reason, and the think/answer of a sample that gave it; with a seed, sample i uses seed + i - 1 (so it equals r1_reason(prompt, seed => seed + i - 1)); every sample is traced and charged to the quota; the other parameters are r1_reason''s';

CREATE FUNCTION r1_reason_vote_many(prompts text[],
									n int DEFAULT 8,
									max_tokens int DEFAULT NULL,
									temperature float8 DEFAULT 0.6,
									top_p float8 DEFAULT 0.95,
									seed bigint DEFAULT NULL,
									system text DEFAULT NULL,
									top_k int DEFAULT 0,
									min_p float8 DEFAULT 0,
									max_think_tokens int DEFAULT NULL,
									strict bool DEFAULT false)
RETURNS SETOF r1.vote_item
AS 'MODULE_PATHNAME', 'pg_r1_reason_vote_many'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION r1_reason_vote_many(text[], int, int, float8, float8, bigint, text, int, float8, int, bool) IS
'r1_reason_vote over every prompt of the array at once: one row per prompt as its n samples finish, ord = position in the array; with a seed, prompt ord is voted with seed + (ord - 1) * n, so it equals r1_reason_vote(prompt, n, seed => seed + (ord - 1) * n); a failed prompt gives a row with error = ''SQLSTATE: message'' unless strict raises it';

REVOKE ALL ON FUNCTION r1_reason_vote(text, int, int, float8, float8, bigint, text, int, float8, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_reason_vote_many(text[], int, int, float8, float8, bigint, text, int, float8, int, bool) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION r1_reason_vote(text, int, int, float8, float8, bigint, text, int, float8, int) TO r1_user;
GRANT EXECUTE ON FUNCTION r1_reason_vote_many(text[], int, int, float8, float8, bigint, text, int, float8, int, bool) TO r1_user;

-- r1.jobs.session_role: the session (login) user that submitted a job; its
-- items are charged to that role (r1.role_quota), like r1_reason calls, and
-- the job workers share their time between such roles.  Jobs submitted
-- before have NULL and use created_by.
ALTER TABLE r1.jobs ADD COLUMN session_role name;
COMMENT ON COLUMN r1.jobs.session_role IS 'the session (login) user that submitted the job: its items are charged to it (r1.role_quota) and the job workers share their time fairly between such roles (r1.job_role_max_running); NULL for jobs of 0.1.0, which use created_by';
