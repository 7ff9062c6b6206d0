-- trace audit (r1.traces, r1_replay), r1.stats, r1.stat_activity and the
-- weights checksum, on the demo model (greedy output known)
CREATE EXTENSION r1_pg;

-- the host computes the weights checksum after it is ready
DO $$
BEGIN
	FOR i IN 1..400 LOOP
		EXIT WHEN (r1_status()).weights_checksum IS NOT NULL;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
SELECT weights_checksum ~ '^[0-9a-f]{16}$' AS checksum_is_hex FROM r1_status();
SELECT weights_checksum AS engine_checksum FROM r1_status() \gset

-- ---- traces: off by default, nothing recorded
SHOW r1.log_traces;
SHOW r1.trace_retention;
SELECT boxed FROM r1_reason('What is 6*7?', temperature => 0);
SELECT count(*) AS traces_when_off FROM r1.traces;

-- on: every call records a row with the demo model's known greedy values
SET r1.log_traces = on;
SELECT boxed FROM r1_reason('What is 6*7?', temperature => 0, max_tokens => 100);
SELECT id, source, role, session_role, database = current_database() AS this_db,
       at BETWEEN now() - interval '1 minute' AND clock_timestamp() AS at_ok,
       prompt, system, parameters, seed, think, answer, boxed, finish_reason,
       prompt_tokens > 0 AS has_prompt_tokens, completion_tokens, think_tokens BETWEEN 1 AND completion_tokens AS think_ok,
       ms > 0 AS has_ms, model, weights_checksum = :'engine_checksum' AS checksum_matches
FROM r1.traces ORDER BY id;

-- the row matches what the call returned
SELECT prompt_tokens AS r_pt, completion_tokens AS r_ct, think_tokens AS r_tt, md5(think) AS r_think
FROM r1_reason('What is the answer?', temperature => 0) \gset
SELECT t.prompt_tokens = :r_pt AND t.completion_tokens = :r_ct AND t.think_tokens = :r_tt AND
       md5(t.think) = :'r_think' AS matches_result
FROM r1.traces t WHERE prompt = 'What is the answer?';

-- system prompt, seed and sampling parameters are recorded
SELECT finish_reason FROM r1_reason('What is 6*7?', seed => 42, temperature => 1, top_p => 0.9,
                                    top_k => 20, min_p => 0.01, system => 'You are terse.');
SELECT system, seed, parameters FROM r1.traces ORDER BY id DESC LIMIT 1;

-- r1.trace_autonomous (the default): a worker writes the row in a transaction
-- of its own, so a call whose transaction rolls back (or is read-only) is
-- still audited
SHOW r1.trace_autonomous;
BEGIN;
SELECT boxed FROM r1_reason('rolled back', temperature => 0);
ROLLBACK;
SELECT count(*) AS rolled_back_traces, min(source) AS source FROM r1.traces WHERE prompt = 'rolled back';
BEGIN READ ONLY;
SELECT boxed FROM r1_reason('read only', temperature => 0);
ROLLBACK;
SELECT count(*) AS read_only_traces FROM r1.traces WHERE prompt = 'read only';
-- the worker wrote it as the table's owner, for the caller
SELECT role = current_user AS caller_role, session_role = session_user AS caller_session
FROM r1.traces WHERE prompt = 'read only';

-- off: in the caller's transaction, so a rolled-back call leaves no trace
SET r1.trace_autonomous = off;
BEGIN;
SELECT boxed FROM r1_reason('rolled back in the transaction', temperature => 0);
ROLLBACK;
SELECT count(*) AS rolled_back_traces FROM r1.traces WHERE prompt = 'rolled back in the transaction';
-- and a trace that could not be written fails the call before it runs
BEGIN READ ONLY;
SELECT boxed FROM r1_reason('read only in the transaction', temperature => 0);
ROLLBACK;
RESET r1.trace_autonomous;

-- ---- privileges
CREATE ROLE regress_r1_caller IN ROLE r1_user;
CREATE ROLE regress_r1_audit IN ROLE r1_auditor;

SET ROLE regress_r1_caller;
-- callers write traces without any privilege on the table...
SELECT boxed FROM r1_reason('traced as a caller', temperature => 0);
-- ...but cannot read, change or turn them off
SELECT count(*) FROM r1.traces;
DELETE FROM r1.traces;
SET r1.log_traces = off;
SET r1.trace_retention = '1min';
SET r1.trace_autonomous = off;
SELECT trace_id FROM r1_replay(1);
SELECT r1_prune_traces();
RESET ROLE;

SET ROLE regress_r1_audit;
SELECT role, session_role, source, boxed FROM r1.traces WHERE prompt = 'traced as a caller';
INSERT INTO r1.traces (at, source, role, session_role, database, prompt, parameters)
VALUES (now(), 'forged', 'x', 'x', 'x', 'x', '{}');
UPDATE r1.traces SET answer = 'x';
SET r1.log_traces = off;
SELECT r1_reason('auditors need not be callers');
RESET ROLE;

SELECT has_table_privilege('r1_user', 'r1.traces', 'SELECT') AS user_reads,
       has_table_privilege('r1_auditor', 'r1.traces', 'SELECT') AS auditor_reads,
       has_table_privilege('public', 'r1.traces', 'SELECT') AS public_reads;

-- ---- replay
SELECT max(id) AS greedy_id FROM r1.traces WHERE prompt = 'What is 6*7?' AND seed IS NULL \gset
SELECT max(id) AS seeded_id FROM r1.traces WHERE seed = 42 \gset
SET ROLE regress_r1_audit;
SELECT trace_id = :greedy_id AS same_id, reproduced, note, think, answer, boxed, finish_reason,
       weights_checksum = :'engine_checksum' AS checksum_matches
FROM r1_replay(:greedy_id);
SELECT reproduced, note, r.think = t.think AND r.answer IS NOT DISTINCT FROM t.answer AS same_text
FROM r1_replay(:seeded_id) r, r1.traces t WHERE t.id = :seeded_id;
RESET ROLE;
-- replays are traced too
SELECT source, seed FROM r1.traces ORDER BY id DESC LIMIT 1;

-- a tampered trace does not reproduce
UPDATE r1.traces SET answer = 'The answer is $\boxed{41}$.' WHERE id = :seeded_id;
SET ROLE regress_r1_audit;
SELECT reproduced, note FROM r1_replay(:seeded_id);
RESET ROLE;
-- other weights do not reproduce, whatever the text
UPDATE r1.traces SET weights_checksum = '0123456789abcdef' WHERE id = :greedy_id;
SET ROLE regress_r1_audit;
SELECT reproduced, note = format('the engine serves other weights (checksum %s; the trace was made with 0123456789abcdef)',
                                 :'engine_checksum') AS note_names_both
FROM r1_replay(:greedy_id);
RESET ROLE;
UPDATE r1.traces SET weights_checksum = NULL WHERE id = :greedy_id;
SET ROLE regress_r1_audit;
SELECT reproduced, note FROM r1_replay(:greedy_id);
RESET ROLE;

-- an unseeded sampled trace cannot be replayed; nor can a missing one
SELECT finish_reason FROM r1_reason('unseeded', temperature => 0.7);
SELECT max(id) AS unseeded_id FROM r1.traces WHERE prompt = 'unseeded' \gset
SET ROLE regress_r1_audit;
DO $$
BEGIN
	PERFORM r1_replay((SELECT max(id) FROM r1.traces WHERE prompt = 'unseeded'));
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'SQLSTATE %', SQLSTATE;
END
$$;
SELECT trace_id FROM r1_replay(:unseeded_id);
SELECT trace_id FROM r1_replay(-1);
SELECT r1_replay(NULL) IS NULL AS strict;
RESET ROLE;

-- ---- retention: rows older than r1.trace_retention are pruned by the next
-- trace this session writes (at most once a minute), or by r1_prune_traces()
INSERT INTO r1.traces (at, source, role, session_role, database, prompt, parameters)
VALUES (now() - interval '3 days', 'test', 'x', 'x', 'x', 'old 1', '{}'),
       (now() - interval '2 days', 'test', 'x', 'x', 'x', 'old 2', '{}'),
       (now() - interval '1 hour', 'test', 'x', 'x', 'x', 'recent', '{}');
SET r1.trace_retention = '1d';
SHOW r1.trace_retention;
SELECT boxed FROM r1_reason('What is 6*7?', temperature => 0);
SELECT prompt FROM r1.traces WHERE source = 'test' ORDER BY at;
INSERT INTO r1.traces (at, source, role, session_role, database, prompt, parameters)
VALUES (now() - interval '5 days', 'test', 'x', 'x', 'x', 'old 3', '{}');
SELECT boxed FROM r1_reason('What is 6*7?', temperature => 0);
SELECT count(*) AS kept_until_next_minute FROM r1.traces WHERE prompt = 'old 3';
SELECT r1_prune_traces() AS pruned;
SELECT prompt FROM r1.traces WHERE source = 'test' ORDER BY at;
SET r1.trace_retention = 0;
SELECT r1_prune_traces() AS pruned_when_forever;
SET r1.trace_retention = -1;
RESET r1.log_traces;
RESET r1.trace_retention;

-- ---- r1.stats
SELECT r1_stats_reset();
SELECT requests, completed, errors, cancellations, timeouts, prompt_tokens, completion_tokens,
       total_ms, mean_ms, p50_ms, p95_ms, p99_ms, stats_reset BETWEEN clock_timestamp() - interval '10 seconds' AND clock_timestamp() AS reset_now
FROM r1.stats;
SELECT prompt_tokens AS pt1, completion_tokens AS ct1 FROM r1_reason('What is 6*7?', temperature => 0) \gset
SELECT prompt_tokens AS pt2, completion_tokens AS ct2 FROM r1_reason('And 7*6?', temperature => 0, max_tokens => 5) \gset
-- an error from the engine (prompt longer than the context) counts as an error
SELECT r1_reason(repeat('hello ', 5000));
-- a parameter error is raised before any request: not counted
SELECT r1_reason('x', max_tokens => 0);
SELECT requests, completed, errors, cancellations, timeouts,
       prompt_tokens = :pt1 + :pt2 AS prompt_tokens_ok, completion_tokens = :ct1 + :ct2 AS completion_tokens_ok,
       completion_tokens, abs(mean_ms * completed - total_ms) < 1e-6 AS mean_ok,
       p50_ms > 0 AND p50_ms <= p95_ms AND p95_ms <= p99_ms AS percentiles_ordered,
       p99_ms >= mean_ms AS p99_above_mean
FROM r1.stats;

-- who may see and reset
SET ROLE regress_r1_caller;
SELECT requests FROM r1.stats;
SELECT count(*) AS in_flight FROM r1.stat_activity;
SELECT r1_stats_reset();
RESET ROLE;
GRANT EXECUTE ON FUNCTION r1_stats_reset() TO regress_r1_caller;
SET ROLE regress_r1_caller;
SELECT r1_stats_reset();
SELECT requests, completed, errors FROM r1.stats;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION r1_stats_reset() FROM regress_r1_caller;

-- nothing in flight now
SELECT count(*) AS in_flight FROM r1.stat_activity;

-- r1_reason_many writes one trace per prompt (prompt ord seeded with seed + ord - 1), and they replay
TRUNCATE r1.traces;
SET r1.log_traces = on;
SELECT count(*) AS rows FROM r1_reason_many(ARRAY['many one', 'many two'], temperature => 0.7, seed => 100,
                                            max_think_tokens => 50);
SET r1.log_traces = off;
SELECT prompt, source, seed, parameters->>'max_think_tokens' AS max_think_tokens, think IS NOT NULL AS has_think
FROM r1.traces ORDER BY prompt;
SELECT bool_and(r.reproduced) AS many_reproduced, count(*)
FROM r1.traces t, LATERAL r1_replay(t.id) r WHERE t.source = 'r1_reason_many';

DROP EXTENSION r1_pg;
DROP ROLE regress_r1_caller;
DROP ROLE regress_r1_audit;
