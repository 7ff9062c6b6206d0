-- r1_pg SQL API on the generated demo model (test/run-extension-tests.sh
-- starts the cluster with r1.model = the demo model, r1.max_ctx = 4096).
CREATE EXTENSION r1_pg;

-- the engine loads before the first call; calls wait for it
SELECT state, model_path IS NOT NULL AS has_path, device, max_ctx FROM r1_status();

-- greedy decoding reproduces the demo model's fixed trace
SELECT think, answer, boxed, finish_reason
FROM r1_reason('What is 6*7? Please reason step by step, and put your final answer within \boxed{}.', temperature => 0);

SELECT prompt_tokens > 0 AS has_prompt_tokens,
       completion_tokens > 0 AS has_completion_tokens,
       think_tokens BETWEEN 1 AND completion_tokens AS think_tokens_ok,
       ms > 0 AS has_ms
FROM r1_reason('What is 6*7?', temperature => 0);

-- the composite type and unqualified calls
SELECT pg_typeof(r1_reason('What is 6*7?', temperature => 0));
SELECT (r1_reason('What is 6*7?', temperature => 0)).boxed;

-- max_tokens cuts the trace: finish_reason length, the think text kept
SELECT finish_reason, completion_tokens, answer IS NULL AS no_answer, length(think) > 0 AS has_think
FROM r1_reason('What is 6*7?', max_tokens => 3, temperature => 0);

-- a seed makes sampling reproducible
SELECT a = b AS same_with_seed
FROM (SELECT (r.think, r.answer, r.completion_tokens)::text AS a FROM r1_reason('What is 6*7?', seed => 7, temperature => 1.0) r) x,
     (SELECT (r.think, r.answer, r.completion_tokens)::text AS b FROM r1_reason('What is 6*7?', seed => 7, temperature => 1.0) r) y;

-- system prompt, top_k, min_p accepted
SELECT finish_reason IS NOT NULL AS ok
FROM r1_reason('What is 6*7?', system => 'You are terse.', top_k => 5, min_p => 0.05, temperature => 0.7, seed => 1);

-- a NULL prompt gives NULL
SELECT r1_reason(NULL) IS NULL AS null_prompt;

-- LATERAL over a table, one row at a time
CREATE TEMP TABLE problems (id int, question text);
INSERT INTO problems VALUES (1, 'What is 6*7?'), (2, 'And 7*6?');
SELECT p.id, r.boxed FROM problems p, LATERAL r1_reason(p.question, temperature => 0) r ORDER BY p.id;

-- tokenizer
SELECT r1_tokenize('Hello world');
SELECT r1_count_tokens('Hello world'), r1_count_tokens('');
SELECT r1_tokenize('');
SELECT r1_count_tokens(repeat('word ', 1000)) > 900 AS counts_long_text;

-- \boxed{} extraction (pure C in the backend)
SELECT r1_extract_boxed('The answer is \boxed{42}.');
SELECT r1_extract_boxed('first \boxed{1}, last \boxed{\frac{1}{2}}');
SELECT r1_extract_boxed('nested \boxed{a{b{c}}d}');
SELECT r1_extract_boxed('no box here') IS NULL AS none;
SELECT r1_extract_boxed('unbalanced \boxed{42') IS NULL AS unbalanced;
SELECT r1_extract_boxed(NULL) IS NULL AS strict;
SELECT r1_extract_boxed('\boxed{π ≈ 3.14}');

-- status
SELECT state, reason, model_name IS NOT NULL AS has_name, host_pid > 0 AS has_host,
       queue_depth >= 0 AS qd, active_requests >= 0 AS ar, tokens_generated > 0 AS generated,
       requests_done >= 0 AS rd, weight_bytes >= 0 AS wb, uptime > '0'::interval AS up,
       ready_since <= now() AS rs
FROM r1_status();

DROP EXTENSION r1_pg;
