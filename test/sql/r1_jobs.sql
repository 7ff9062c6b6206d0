-- durable jobs: r1_submit, r1_submit_query, r1_job_status, r1_cancel_job.
-- test/run-extension-tests.sh starts the cluster with r1.jobs_database =
-- 'r1_jobs' and creates that database; the job workers run there.
CREATE EXTENSION r1_pg;

-- not the jobs database: an error that says where
SHOW r1.jobs_database;
SELECT r1_submit('What is 6*7?');
SELECT r1_submit_query('SELECT 1, ''x''');
DROP EXTENSION r1_pg;

\c r1_jobs
CREATE EXTENSION r1_pg;

CREATE FUNCTION pg_temp.wait_job(job bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	s text;
BEGIN
	FOR i IN 1..1200 LOOP
		SELECT state INTO s FROM r1.jobs WHERE id = job;
		IF s IN ('done', 'failed', 'cancelled') THEN
			RETURN s;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN 'timed out in state ' || s;
END
$$;

CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

-- one prompt: the job's result is the demo model's greedy trace
SELECT r1_submit('What is 6*7? Please reason step by step, and put your final answer within \boxed{}.',
                 temperature => 0) AS job1 \gset
SELECT pg_temp.wait_job(:job1);
SELECT item_no, key, state, attempts, last_error, think, answer, boxed, finish_reason
FROM r1.job_items WHERE job_id = :job1;
SELECT prompt_tokens > 0 AS has_prompt_tokens, completion_tokens > 0 AS has_completion_tokens,
       ms > 0 AS has_ms, started_at <= finished_at AS times_ok, runner_pid IS NULL AS lease_released
FROM r1.job_items WHERE job_id = :job1;
-- the same as r1_reason gives
SELECT (i.think, i.answer, i.boxed, i.finish_reason, i.prompt_tokens, i.completion_tokens, i.think_tokens)
     = (r.think, r.answer, r.boxed, r.finish_reason, r.prompt_tokens, r.completion_tokens, r.think_tokens) AS same_as_r1_reason
FROM r1.job_items i, r1_reason(i.prompt, temperature => 0) r WHERE i.job_id = :job1;
SELECT state, items, queued, running, done, failed, cancelled, attempts, created_by,
       finished_at >= created_at AS finished, started_at >= created_at AS started, parameters
FROM r1_job_status(:job1);
SELECT state, items, created_by, finished_at IS NOT NULL AS finished FROM r1.jobs WHERE id = :job1;

-- a query of (key, prompt) rows; any key type, items in the query's order
CREATE TABLE problems (id int, question text);
INSERT INTO problems VALUES (10, 'What is 6*7?'), (20, 'And 7*6?'), (30, 'What is 6*7?'),
                            (40, 'Six times seven?'), (50, 'What is 6*7?');
SELECT r1_submit_query('SELECT id, question FROM problems ORDER BY id DESC',
                       temperature => 0, max_tokens => 100, seed => 5, system => 'Be brief.') AS job2 \gset
SELECT pg_temp.wait_job(:job2);
SELECT item_no, key, prompt, state, attempts, boxed, finish_reason FROM r1.job_items WHERE job_id = :job2 ORDER BY item_no;
-- each result equals r1_reason with the same parameters
SELECT count(*) FILTER (WHERE (i.think, i.answer, i.completion_tokens) = (r.think, r.answer, r.completion_tokens)) AS same,
       count(*) AS items
FROM r1.job_items i,
     r1_reason(i.prompt, temperature => 0, max_tokens => 100, seed => 5, system => 'Be brief.') r
WHERE i.job_id = :job2;
SELECT state, items, queued, running, done, failed, cancelled, parameters FROM r1_job_status(:job2);
-- join the results back to the table by key
SELECT p.id, i.boxed FROM problems p JOIN r1.job_items i ON i.job_id = :job2 AND i.key = p.id::text ORDER BY p.id;

-- varchar prompts, text keys, max_tokens cuts the trace
SELECT r1_submit_query($$SELECT 'k' || g, 'What is 6*7?'::varchar(20) FROM generate_series(1, 3) g$$,
                       temperature => 0, max_tokens => 3) AS job3 \gset
SELECT pg_temp.wait_job(:job3);
SELECT key, finish_reason, completion_tokens, answer IS NULL AS no_answer FROM r1.job_items WHERE job_id = :job3 ORDER BY key;

-- a thinking budget: the engine closes the think section, as r1_reason(max_think_tokens => 3) does
SELECT r1_submit_query($$VALUES ('a', 'What is 6*7?'), ('b', 'And 7*6?')$$,
                       temperature => 0, max_think_tokens => 3) AS job_budget \gset
SELECT pg_temp.wait_job(:job_budget);
SELECT key, think, boxed, finish_reason, think_tokens FROM r1.job_items WHERE job_id = :job_budget ORDER BY key;
SELECT count(*) FILTER (WHERE (i.think, i.answer, i.finish_reason, i.think_tokens)
                            = (r.think, r.answer, r.finish_reason, r.think_tokens)) AS same_as_r1_reason
FROM r1.job_items i, r1_reason(i.prompt, temperature => 0, max_think_tokens => 3) r
WHERE i.job_id = :job_budget;
SELECT parameters->'max_think_tokens' AS max_think_tokens FROM r1.jobs WHERE id = :job_budget;

-- an item that can never fit the context (54000) fails at once, after one attempt; the job fails,
-- its other items are still done
SELECT r1_submit_query($$VALUES ('short', 'What is 6*7?'), ('long', repeat('hello ', 5000))$$,
                       temperature => 0) AS job_failing \gset
SELECT pg_temp.wait_job(:job_failing);
SELECT key, state, attempts, last_error, boxed, finished_at IS NOT NULL AS finished
FROM r1.job_items WHERE job_id = :job_failing ORDER BY item_no;
SELECT state, done, failed FROM r1_job_status(:job_failing);

-- an empty query: a job without items, done at once
SELECT r1_submit_query('SELECT id, question FROM problems WHERE false') AS job4 \gset
SELECT state, items, finished_at IS NOT NULL AS finished FROM r1_job_status(:job4);

-- the caller's transaction: a rollback leaves no job, the items appear at commit together
SELECT count(*) AS jobs_before FROM r1.jobs \gset
BEGIN;
SELECT r1_submit('What is 6*7?') IS NOT NULL AS submitted;
SELECT r1_submit_query('SELECT id, question FROM problems') IS NOT NULL AS submitted;
ROLLBACK;
SELECT count(*) - :jobs_before AS new_jobs FROM r1.jobs;
SELECT count(*) AS orphan_items FROM r1.job_items i WHERE NOT EXISTS (SELECT FROM r1.jobs j WHERE j.id = i.job_id);

-- invalid parameters: the SQLSTATEs of r1_reason
SELECT pg_temp.sqlstate_of($$SELECT r1_submit('x', temperature => -0.1)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit('x', temperature => 'NaN')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit('x', top_p => 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit('x', max_tokens => 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit('x', top_k => -1)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit('x', min_p => 1)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit('x', max_think_tokens => 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit(repeat('x', 17000000))$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit('x', system => repeat('x', 17000000))$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT 1, ''x''', temperature => -1)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT 1, ''x''', top_p => 1.5)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT 1, repeat(''x'', 17000000)')$$);
-- and the limits of r1_reason: seeds, r1.max_tokens_per_call
SELECT pg_temp.sqlstate_of($$SELECT r1_submit('x', seed => -1)$$);
SET r1.max_tokens_per_call = 50;
SELECT pg_temp.sqlstate_of($$SELECT r1_submit('x', max_tokens => 51)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT 1, ''x''', max_tokens => 51)$$);
RESET r1.max_tokens_per_call;
SELECT r1_submit('x', temperature => -1);
SELECT r1_submit_query('SELECT 1, ''x''', max_tokens => 0);
SELECT r1_submit(NULL);
SELECT r1_submit_query(NULL);

-- queries that do not return (key, prompt)
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT question FROM problems')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT id, question, 1 FROM problems')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT question, id FROM problems')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELEC id FROM problems')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT id, question FROM no_such_table')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('DELETE FROM problems')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT 1, ''a''; SELECT 2, ''b''')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT NULL::int, ''a''')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT 1, NULL::text')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_submit_query('SELECT 1, ''a'' UNION ALL SELECT 1, ''b''')$$);
SELECT r1_submit_query('SELECT question FROM problems');
SELECT r1_submit_query('SELECT question, id FROM problems');
SELECT r1_submit_query('DELETE FROM problems');
SELECT r1_submit_query('SELECT g, ''x'' FROM generate_series(1, 3) g UNION ALL SELECT NULL, ''y''');
SELECT r1_submit_query('SELECT 7, NULL::text');
-- the failed submissions left nothing behind
SELECT count(*) - :jobs_before AS new_jobs FROM r1.jobs;
SELECT count(*) AS problems FROM problems;
-- a query that writes, with RETURNING, is allowed (the caller's own business)
SELECT r1_submit_query('DELETE FROM problems WHERE id = 50 RETURNING id, question', max_tokens => 1) AS job5 \gset
SELECT pg_temp.wait_job(:job5);
SELECT key, state, completion_tokens FROM r1.job_items WHERE job_id = :job5;
SELECT count(*) AS problems FROM problems;

-- cancel: a long job (r1.debug_ignore_eos: the demo model does not stop)
SET r1.debug_ignore_eos = on;
SELECT r1_submit_query('SELECT g, ''Count to infinity.'' FROM generate_series(1, 8) g',
                       temperature => 0, max_tokens => 1000000) AS job6 \gset
RESET r1.debug_ignore_eos;
SELECT parameters FROM r1.jobs WHERE id = :job6;
DO $$
BEGIN
	FOR i IN 1..600 LOOP
		EXIT WHEN EXISTS (SELECT FROM r1.job_items WHERE job_id = currval('r1.jobs_id_seq') AND state = 'running');
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
SELECT state FROM r1.jobs WHERE id = :job6;
SELECT r1_cancel_job(:job6);
SELECT r1_cancel_job(:job6) AS cancel_again;
SELECT state, items, queued, running, done, failed, cancelled, finished_at IS NOT NULL AS finished FROM r1_job_status(:job6);
-- the engine drops the interrupted calls; no result is written
DO $$
BEGIN
	FOR i IN 1..60 LOOP
		EXIT WHEN (SELECT coalesce(active_requests, 0) + coalesce(queue_depth, 0) FROM r1_status()) = 0;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
SELECT coalesce(active_requests, 0) + coalesce(queue_depth, 0) AS engine_requests FROM r1_status();
SELECT pg_sleep(0.5);
SELECT count(*) FILTER (WHERE state = 'cancelled') AS cancelled, count(*) FILTER (WHERE think IS NOT NULL) AS with_result
FROM r1.job_items WHERE job_id = :job6;
-- a finished job cannot be cancelled; an unknown one does not exist
SELECT r1_cancel_job(:job1);
SELECT r1_cancel_job(-1);
SELECT r1_job_status(-1);

-- privileges: nothing for PUBLIC; r1_user members see and cancel only their own jobs
SELECT p.proname, a.grantee::regrole AS grantee, a.privilege_type
FROM pg_proc p, aclexplode(p.proacl) a
WHERE p.proname IN ('r1_submit', 'r1_submit_query', 'r1_job_status', 'r1_cancel_job') AND a.grantee <> p.proowner
ORDER BY 1, 2;
SELECT c.relname, a.grantee::regrole AS grantee, a.privilege_type
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.relnamespace = 'r1'::regnamespace AND a.grantee <> c.relowner
ORDER BY 1, 2, 3;
SELECT relname, relrowsecurity FROM pg_class WHERE relnamespace = 'r1'::regnamespace AND relkind = 'r' ORDER BY 1;
SELECT count(*) AS config_dump_tables FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'r1_pg';

CREATE ROLE regress_r1_alice IN ROLE r1_user;
CREATE ROLE regress_r1_bob IN ROLE r1_user;
CREATE ROLE regress_r1_nobody;
CREATE TABLE secrets (id int, secret text);
INSERT INTO secrets VALUES (1, 'the password');
GRANT SELECT ON problems TO regress_r1_alice;
CREATE SCHEMA regress_r1_evil AUTHORIZATION regress_r1_alice;

SET ROLE regress_r1_alice;
SELECT r1_submit_query('SELECT id, question FROM problems WHERE id = 10', temperature => 0) AS alice_job \gset
SELECT pg_temp.wait_job(:alice_job);
SELECT count(*) AS alice_sees_jobs FROM r1.jobs;
SELECT created_by, state FROM r1.jobs;
SELECT key, boxed FROM r1.job_items;
SELECT state, done FROM r1_job_status(:alice_job);
-- the query runs with alice's privileges
SELECT r1_submit_query('SELECT id, secret FROM secrets');
-- the tables are read-only for her
INSERT INTO r1.jobs (parameters) VALUES ('{}');
UPDATE r1.job_items SET answer = 'forged';
DELETE FROM r1.jobs;
SELECT r1_submit('What is 6*7?', max_tokens => 1) AS alice_job2 \gset
-- her operators in front of pg_catalog do not run inside the functions' writes
CREATE FUNCTION regress_r1_evil.plus(int, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'evil + ran as %', current_user;
	RETURN $1::bigint + $2;
END
$$;
CREATE OPERATOR regress_r1_evil.+ (LEFTARG = int, RIGHTARG = bigint, FUNCTION = regress_r1_evil.plus);
CREATE FUNCTION regress_r1_evil.eq(bigint, bigint) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'evil = ran as %', current_user;
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END
$$;
CREATE OPERATOR regress_r1_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = regress_r1_evil.eq);
SET search_path = regress_r1_evil, pg_catalog, public;
SELECT 1 + 2::bigint AS evil_plus_is_active;
SELECT r1_submit_query('SELECT id, question FROM public.problems WHERE id = 10', max_tokens => 1) AS alice_job3 \gset
SELECT r1_cancel_job(:alice_job);
RESET search_path;
RESET ROLE;

SET ROLE regress_r1_bob;
SELECT count(*) AS bob_sees_jobs FROM r1.jobs;
SELECT count(*) AS bob_sees_items FROM r1.job_items;
SELECT pg_temp.sqlstate_of(format('SELECT r1_job_status(%s)', :alice_job)) AS status_of_alices_job;
SELECT pg_temp.sqlstate_of(format('SELECT r1_cancel_job(%s)', :alice_job2)) AS cancel_alices_job;
RESET ROLE;

SET ROLE regress_r1_nobody;
SELECT r1_submit('What is 6*7?');
SELECT r1_submit_query('SELECT 1, ''x''');
SELECT r1_job_status(:alice_job);
SELECT r1_cancel_job(:alice_job);
SELECT count(*) FROM r1.jobs;
SELECT count(*) FROM r1.job_items;
RESET ROLE;

-- alice's second job ran; the superuser sees every job
SELECT pg_temp.wait_job(:alice_job2), pg_temp.wait_job(:alice_job3);
SELECT created_by, count(*) FROM r1.jobs GROUP BY 1 ORDER BY 1;

DROP TABLE secrets, problems;
DROP SCHEMA regress_r1_evil CASCADE;
DROP ROLE regress_r1_alice, regress_r1_bob, regress_r1_nobody;
DROP EXTENSION r1_pg;
