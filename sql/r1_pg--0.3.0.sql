-- r1_pg 0.3.0: the whole extension, for CREATE EXTENSION r1_pg.
--
-- Released scripts never change (0.1.0 is frozen; test/t/010_upgrade.pl checks
-- its checksum).  Every SQL change goes into this file AND into an upgrade
-- script r1_pg--<old>--<new>.sql, with default_version bumped in
-- r1_pg.control; test/t/010_upgrade.pl creates the oldest release, updates it
-- and checks that its objects equal a fresh install of this file.  New
-- columns of row types go at the end (ALTER TYPE ... ADD ATTRIBUTE appends).
--
-- Functions are created in the schema the extension is installed in (public
-- by default), so they are callable unqualified; the extension's other
-- objects (its row types) live in the schema r1.  Nothing is executable by
-- PUBLIC: grant the role r1_user to whoever may call the model.

\echo Use "CREATE EXTENSION r1_pg" to load this file. \quit

CREATE SCHEMA r1;
COMMENT ON SCHEMA r1 IS 'objects of the r1_pg extension';

DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'r1_user') THEN
		CREATE ROLE r1_user NOLOGIN;
	END IF;
END
$$;

GRANT USAGE ON SCHEMA r1 TO r1_user;

CREATE TYPE r1.reasoning AS (
	think text,
	answer text,
	boxed text,
	finish_reason text,
	prompt_tokens int,
	completion_tokens int,
	think_tokens int,
	ms float8
);
COMMENT ON TYPE r1.reasoning IS 'result of r1_reason(): the think trace, the answer after </think>, the last \boxed{} content, why generation stopped, token counts and milliseconds';

CREATE TYPE r1.reasoning_item AS (
	ord int,
	think text,
	answer text,
	boxed text,
	finish_reason text,
	prompt_tokens int,
	completion_tokens int,
	think_tokens int,
	ms float8,
	error text
);
COMMENT ON TYPE r1.reasoning_item IS 'a row of r1_reason_many(): ord is the prompt''s position in the array (from 1), then the columns of r1.reasoning; error is ''SQLSTATE: message'' for a prompt that failed (the other columns are then NULL)';

CREATE TYPE r1.engine_status AS (
	state text,
	reason text,
	model_name text,
	model_path text,
	device text,
	host_pid int,
	queue_depth int,
	active_requests int,
	tokens_generated bigint,
	requests_done bigint,
	memory_bytes bigint,
	weight_bytes bigint,
	max_ctx int,
	host_restarts int,
	uptime interval,
	ready_since timestamptz,
	note text,
	weights_checksum text,
	preemptions bigint,
	version text,
	cpu_path text
);
COMMENT ON TYPE r1.engine_status IS 'result of r1_status()';

CREATE FUNCTION r1_reason(prompt text,
						  max_tokens int DEFAULT NULL,
						  temperature float8 DEFAULT 0.6,
						  top_p float8 DEFAULT 0.95,
						  seed bigint DEFAULT NULL,
						  system text DEFAULT NULL,
						  top_k int DEFAULT 0,
						  min_p float8 DEFAULT 0,
						  max_think_tokens int DEFAULT NULL)
RETURNS r1.reasoning
AS 'MODULE_PATHNAME', 'pg_r1_reason'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION r1_reason(text, int, float8, float8, bigint, text, int, float8, int) IS
'reason about prompt with the model the r1 engine serves: returns think, answer, boxed, finish_reason, token counts and ms; max_tokens NULL means r1.max_tokens_default, temperature 0 is greedy, a seed makes sampling reproducible; max_think_tokens N (NULL = no limit) makes the engine close the think section with </think> after N tokens and let the model answer: finish_reason is then ''think_budget'' (answer complete) or ''length'' (max_tokens cut the answer off; think_tokens = N + 1 tells the two ways to ''length'' apart)';

CREATE FUNCTION r1_reason_many(prompts text[],
							   max_tokens int DEFAULT NULL,
							   temperature float8 DEFAULT 0.6,
							   top_p float8 DEFAULT 0.95,
							   seed bigint DEFAULT NULL,
							   system text DEFAULT NULL,
							   top_k int DEFAULT 0,
							   min_p float8 DEFAULT 0,
							   max_think_tokens int DEFAULT NULL,
							   strict bool DEFAULT false)
RETURNS SETOF r1.reasoning_item
AS 'MODULE_PATHNAME', 'pg_r1_reason_many'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE ROWS 100;
COMMENT ON FUNCTION r1_reason_many(text[], int, float8, float8, bigint, text, int, float8, int, bool) IS
'reason about every prompt at once (the engine batches them): one row per prompt in completion order, ord = position in the array; a failed prompt (NULL, too long, refused) gives a row with error = ''SQLSTATE: message'' unless strict raises it; with a seed, prompt ord uses seed + ord - 1, so it equals r1_reason(prompt, seed => seed + ord - 1); at most max(64, 2 * r1.max_seqs) prompts (and at most r1.max_queued) are in flight, the rest follow as they finish';

CREATE FUNCTION r1_tokenize(text) RETURNS int[]
AS 'MODULE_PATHNAME', 'pg_r1_tokenize'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION r1_tokenize(text) IS 'token ids of the text under the served model''s tokenizer (no chat template, no special tokens added)';

CREATE FUNCTION r1_count_tokens(text) RETURNS int
AS 'MODULE_PATHNAME', 'pg_r1_count_tokens'
LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION r1_count_tokens(text) IS 'number of tokens of the text under the served model''s tokenizer';

CREATE FUNCTION r1_extract_boxed(text) RETURNS text
AS 'MODULE_PATHNAME', 'pg_r1_extract_boxed'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION r1_extract_boxed(text) IS 'content of the last \boxed{...} in the text (nested braces balanced), or NULL';

CREATE FUNCTION r1_status() RETURNS r1.engine_status
AS 'MODULE_PATHNAME', 'pg_r1_status'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION r1_status() IS 'state of the r1 engine: loading, ready, failed and why; model, device, queue depth, active requests, tokens generated, memory, uptime';

REVOKE ALL ON FUNCTION r1_reason(text, int, float8, float8, bigint, text, int, float8, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_reason_many(text[], int, float8, float8, bigint, text, int, float8, int, bool) FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_tokenize(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_count_tokens(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_extract_boxed(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_status() FROM PUBLIC;

GRANT EXECUTE ON FUNCTION r1_reason(text, int, float8, float8, bigint, text, int, float8, int) TO r1_user;
GRANT EXECUTE ON FUNCTION r1_reason_many(text[], int, float8, float8, bigint, text, int, float8, int, bool) TO r1_user;
GRANT EXECUTE ON FUNCTION r1_tokenize(text) TO r1_user;
GRANT EXECUTE ON FUNCTION r1_count_tokens(text) TO r1_user;
GRANT EXECUTE ON FUNCTION r1_extract_boxed(text) TO r1_user;
GRANT EXECUTE ON FUNCTION r1_status() TO r1_user;

-- per-role daily token quotas (r1.role_quota): today's usage
CREATE FUNCTION r1_quota_usage(OUT role name, OUT daily_quota bigint, OUT tokens_used bigint,
							   OUT tokens_left bigint, OUT resets_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_r1_quota_usage'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION r1_quota_usage() IS 'tokens each role with a quota in r1.role_quota has used today (UTC) and when that resets; a role without pg_read_all_stats sees only its own row';
REVOKE ALL ON FUNCTION r1_quota_usage() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION r1_quota_usage() TO r1_user;

-- ---- trace audit and observability (src/traces.c, src/replay.c, src/activity.c) ----
--
-- With r1.log_traces = on every call writes a row to r1.traces, in the
-- caller's transaction (a rolled-back call leaves no trace), as the table's
-- owner: callers need no privilege on it.  Only r1_auditor reads it.
-- (r1_reason is PARALLEL UNSAFE because of that write.)

DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'r1_auditor') THEN
		CREATE ROLE r1_auditor NOLOGIN;
	END IF;
END
$$;

GRANT USAGE ON SCHEMA r1 TO r1_auditor;

CREATE TABLE r1.traces (
	id bigserial PRIMARY KEY,
	at timestamptz NOT NULL,
	source text NOT NULL,
	role name NOT NULL,
	session_role name NOT NULL,
	database name NOT NULL,
	prompt text NOT NULL,
	system text,
	parameters jsonb NOT NULL,
	seed bigint,
	think text,
	answer text,
	boxed text,
	finish_reason text,
	prompt_tokens int,
	completion_tokens int,
	think_tokens int,
	ms float8,
	model text,
	weights_checksum text
);
CREATE INDEX traces_at_idx ON r1.traces (at);
COMMENT ON TABLE r1.traces IS 'one row per r1 call while r1.log_traces is on: who, when, prompt, parameters, seed, think, answer, tokens, ms, model and weights checksum; pruned after r1.trace_retention';
REVOKE ALL ON r1.traces FROM PUBLIC;
REVOKE ALL ON SEQUENCE r1.traces_id_seq FROM PUBLIC;
GRANT SELECT ON r1.traces TO r1_auditor;
SELECT pg_catalog.pg_extension_config_dump('r1.traces', '');
SELECT pg_catalog.pg_extension_config_dump('r1.traces_id_seq', '');

CREATE TYPE r1.replay_result AS (
	trace_id bigint,
	reproduced boolean,
	think text,
	answer text,
	boxed text,
	finish_reason text,
	prompt_tokens int,
	completion_tokens int,
	think_tokens int,
	ms float8,
	model text,
	weights_checksum text,
	note text
);
COMMENT ON TYPE r1.replay_result IS 'result of r1_replay()';

CREATE FUNCTION r1_replay(trace_id bigint) RETURNS r1.replay_result
AS 'MODULE_PATHNAME', 'pg_r1_replay'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION r1_replay(bigint) IS 'run a greedy or seeded trace of r1.traces again: reproduced is true when think and answer are identical and the weights checksum is the same; note says why not';

CREATE FUNCTION r1_prune_traces() RETURNS bigint
AS 'MODULE_PATHNAME', 'pg_r1_prune_traces'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION r1_prune_traces() IS 'delete the rows of r1.traces older than r1.trace_retention now (calls that write traces also prune, at most once a minute); returns the number deleted';

CREATE FUNCTION r1_stat_activity(OUT pid int, OUT role name, OUT database name,
								 OUT started_at timestamptz, OUT state text,
								 OUT queue_position int, OUT prompt_tokens int,
								 OUT completion_tokens int, OUT tokens_per_s float8,
								 OUT tag text, OUT prompt text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_r1_stat_activity'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION r1_stat_activity() IS 'engine requests in flight (see the view r1.stat_activity)';

CREATE VIEW r1.stat_activity AS SELECT * FROM r1_stat_activity();
COMMENT ON VIEW r1.stat_activity IS 'one row per backend with an r1 request in flight: state (starting, queued, running), queue position, prompt tokens, tokens so far, tokens/s; details of other roles'' requests only for pg_read_all_stats';

CREATE FUNCTION r1_stats(OUT requests bigint, OUT completed bigint, OUT errors bigint,
						 OUT cancellations bigint, OUT timeouts bigint,
						 OUT prompt_tokens bigint, OUT completion_tokens bigint,
						 OUT total_ms float8, OUT mean_ms float8, OUT p50_ms float8,
						 OUT p95_ms float8, OUT p99_ms float8, OUT stats_reset timestamptz)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_r1_stats'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED;
COMMENT ON FUNCTION r1_stats() IS 'cumulative r1 request counters (see the view r1.stats)';

CREATE VIEW r1.stats AS SELECT * FROM r1_stats();
COMMENT ON VIEW r1.stats IS 'cumulative r1 requests since stats_reset: outcomes, tokens, latency of completed requests (mean exact; p50/p95/p99 the upper edge of a log bucket, at most 19% high)';

CREATE FUNCTION r1_stats_reset() RETURNS void
AS 'MODULE_PATHNAME', 'pg_r1_stats_reset'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION r1_stats_reset() IS 'reset the counters of r1.stats (superuser, or whoever is granted EXECUTE)';

REVOKE ALL ON FUNCTION r1_replay(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_prune_traces() FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_stat_activity() FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_stats() FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_stats_reset() FROM PUBLIC;
REVOKE ALL ON r1.stat_activity, r1.stats FROM PUBLIC;

GRANT EXECUTE ON FUNCTION r1_replay(bigint) TO r1_auditor;
GRANT EXECUTE ON FUNCTION r1_stat_activity() TO r1_user, r1_auditor;
GRANT EXECUTE ON FUNCTION r1_stats() TO r1_user, r1_auditor;
GRANT SELECT ON r1.stat_activity, r1.stats TO r1_user, r1_auditor;

-- ---- durable jobs (src/jobs*.c) ----
--
-- r1_submit()/r1_submit_query() record work in r1.jobs/r1.job_items in the
-- caller's transaction; the job workers in r1.jobs_database claim items, run
-- them through the engine and write each result in its own transaction.
-- r1_user reads its own jobs (row-level security) and writes only through the
-- functions.  pg_dump dumps the rows (pg_extension_config_dump).

CREATE TABLE r1.jobs (
	id bigserial PRIMARY KEY,
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by name NOT NULL DEFAULT current_user,
	state text NOT NULL DEFAULT 'queued'
		CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
	parameters jsonb NOT NULL,
	items int NOT NULL DEFAULT 0,
	finished_at timestamptz,
	session_role name
);
COMMENT ON TABLE r1.jobs IS 'durable jobs of r1_submit() and r1_submit_query(): state queued, running, then done (every item done), failed (some item failed) or cancelled; parameters are the sampling parameters of every item';
COMMENT ON COLUMN r1.jobs.session_role IS 'the session (login) user that submitted the job: its items are charged to it (r1.role_quota) and the job workers share their time fairly between such roles (r1.job_role_max_running); NULL for jobs of 0.1.0, which use created_by';

CREATE TABLE r1.job_items (
	job_id bigint NOT NULL REFERENCES r1.jobs (id) ON DELETE CASCADE,
	item_no int NOT NULL,
	key text,
	prompt text NOT NULL,
	state text NOT NULL DEFAULT 'queued'
		CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
	attempts int NOT NULL DEFAULT 0,
	last_error text,
	think text,
	answer text,
	boxed text,
	finish_reason text,
	prompt_tokens int,
	completion_tokens int,
	think_tokens int,
	ms float8,
	started_at timestamptz,
	finished_at timestamptz,
	runner_pid int,
	runner_start timestamptz,
	server text,
	PRIMARY KEY (job_id, item_no),
	UNIQUE (job_id, key)
);
COMMENT ON TABLE r1.job_items IS 'one prompt of a job: its key (the first column of r1_submit_query''s query), state, attempts and last error, and the result as r1_reason() returns it; runner_pid and runner_start identify the job worker that runs it';
COMMENT ON COLUMN r1.job_items.server IS 'where the item ran (or runs): local, or the host:port of an r1.job_servers entry';
-- what the job workers claim, in order
CREATE INDEX job_items_queued ON r1.job_items (job_id, item_no) WHERE state = 'queued';
CREATE INDEX job_items_running ON r1.job_items (runner_pid) WHERE state = 'running';

SELECT pg_catalog.pg_extension_config_dump('r1.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('r1.jobs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('r1.job_items', '');

ALTER TABLE r1.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE r1.job_items ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_jobs ON r1.jobs FOR SELECT USING (created_by = current_user);
CREATE POLICY own_job_items ON r1.job_items FOR SELECT
	USING (EXISTS (SELECT FROM r1.jobs j WHERE j.id = job_id AND j.created_by = current_user));
REVOKE ALL ON r1.jobs, r1.job_items, r1.jobs_id_seq FROM PUBLIC;
GRANT SELECT ON r1.jobs, r1.job_items TO r1_user;

CREATE TYPE r1.job_status AS (
	id bigint,
	state text,
	items int,
	queued int,
	running int,
	done int,
	failed int,
	cancelled int,
	attempts bigint,
	created_by name,
	created_at timestamptz,
	started_at timestamptz,
	finished_at timestamptz,
	parameters jsonb,
	servers jsonb
);
COMMENT ON TYPE r1.job_status IS 'result of r1_job_status()';

CREATE FUNCTION r1_submit(prompt text,
						  max_tokens int DEFAULT NULL,
						  temperature float8 DEFAULT 0.6,
						  top_p float8 DEFAULT 0.95,
						  seed bigint DEFAULT NULL,
						  system text DEFAULT NULL,
						  top_k int DEFAULT 0,
						  min_p float8 DEFAULT 0,
						  max_think_tokens int DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pg_r1_submit'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION r1_submit(text, int, float8, float8, bigint, text, int, float8, int) IS
'record a durable job of one prompt (same parameters as r1_reason) and return its id; the job workers of r1.jobs_database run it, the result lands in r1.job_items, NOTIFY r1_jobs with the id when it finishes';

CREATE FUNCTION r1_submit_query(query text,
								max_tokens int DEFAULT NULL,
								temperature float8 DEFAULT 0.6,
								top_p float8 DEFAULT 0.95,
								seed bigint DEFAULT NULL,
								system text DEFAULT NULL,
								top_k int DEFAULT 0,
								min_p float8 DEFAULT 0,
								max_think_tokens int DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pg_r1_submit_query'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;
COMMENT ON FUNCTION r1_submit_query(text, int, float8, float8, bigint, text, int, float8, int) IS
'run query (as the caller; it returns rows of key, prompt) and record a durable job with one item per row; returns the job id';

CREATE FUNCTION r1_job_status(id bigint) RETURNS r1.job_status
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r r1.job_status;
BEGIN
	SELECT j.id, j.state, j.items,
		   coalesce(c.queued, 0), coalesce(c.running, 0), coalesce(c.done, 0),
		   coalesce(c.failed, 0), coalesce(c.cancelled, 0), coalesce(c.attempts, 0),
		   j.created_by, j.created_at, c.started_at, j.finished_at, j.parameters, s.servers
	INTO r
	FROM r1.jobs j
	LEFT JOIN LATERAL (
		SELECT count(*) FILTER (WHERE i.state = 'queued') AS queued,
			   count(*) FILTER (WHERE i.state = 'running') AS running,
			   count(*) FILTER (WHERE i.state = 'done') AS done,
			   count(*) FILTER (WHERE i.state = 'failed') AS failed,
			   count(*) FILTER (WHERE i.state = 'cancelled') AS cancelled,
			   sum(i.attempts) AS attempts,
			   min(i.started_at) AS started_at
		FROM r1.job_items i WHERE i.job_id = j.id) c ON true
	LEFT JOIN LATERAL (
		SELECT jsonb_object_agg(x.server, jsonb_build_object('running', x.running, 'done', x.done)) AS servers
		FROM (SELECT i.server,
					 count(*) FILTER (WHERE i.state = 'running') AS running,
					 count(*) FILTER (WHERE i.state = 'done') AS done
			  FROM r1.job_items i
			  WHERE i.job_id = j.id AND i.server IS NOT NULL AND i.state IN ('running', 'done')
			  GROUP BY i.server) x) s ON true
	WHERE j.id = r1_job_status.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'job % does not exist', r1_job_status.id
			USING ERRCODE = 'undefined_object',
				  HINT = 'SELECT id, state FROM r1.jobs lists your jobs.';
	END IF;
	RETURN r;
END
$$;
COMMENT ON FUNCTION r1_job_status(bigint) IS 'state of a job: items by state, attempts, times; servers: running and done items by server (local or an r1.job_servers entry)';

CREATE FUNCTION r1_cancel_job(id bigint) RETURNS bool
AS 'MODULE_PATHNAME', 'pg_r1_cancel_job'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
COMMENT ON FUNCTION r1_cancel_job(bigint) IS 'cancel a job: its queued and running items become cancelled (running ones are interrupted in the engine); false when it had already finished';

REVOKE ALL ON FUNCTION r1_submit(text, int, float8, float8, bigint, text, int, float8, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_submit_query(text, int, float8, float8, bigint, text, int, float8, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_job_status(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION r1_cancel_job(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION r1_submit(text, int, float8, float8, bigint, text, int, float8, int) TO r1_user;
GRANT EXECUTE ON FUNCTION r1_submit_query(text, int, float8, float8, bigint, text, int, float8, int) TO r1_user;
GRANT EXECUTE ON FUNCTION r1_job_status(bigint) TO r1_user;
GRANT EXECUTE ON FUNCTION r1_cancel_job(bigint) TO r1_user;

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
