-- pgTAP tests of the r1_pg SQL API (run by pg_prove in a database that has
-- pgtap and r1_pg; see test/run-extension-tests.sh).  Rolls back.
BEGIN;
SELECT plan(37);

SELECT has_schema('r1');
SELECT has_type('r1', 'reasoning', 'r1.reasoning exists');
SELECT has_type('r1', 'engine_status', 'r1.engine_status exists');
SELECT has_function('r1_reason', ARRAY['text', 'integer', 'double precision', 'double precision', 'bigint', 'text', 'integer', 'double precision', 'integer']);
SELECT function_returns('r1_reason', ARRAY['text', 'integer', 'double precision', 'double precision', 'bigint', 'text', 'integer', 'double precision', 'integer'], 'r1.reasoning');
SELECT function_returns('r1_tokenize', ARRAY['text'], 'integer[]');
SELECT function_returns('r1_count_tokens', ARRAY['text'], 'integer');
SELECT function_returns('r1_extract_boxed', ARRAY['text'], 'text');
SELECT volatility_is('r1_extract_boxed', ARRAY['text'], 'immutable');
SELECT volatility_is('r1_reason', ARRAY['text', 'integer', 'double precision', 'double precision', 'bigint', 'text', 'integer', 'double precision', 'integer'], 'volatile');
SELECT has_role('r1_user');

SELECT throws_ok($$SELECT r1_reason('x', temperature => -1)$$, '22023', 'temperature must be a finite number >= 0', 'negative temperature');
SELECT throws_ok($$SELECT r1_reason('x', top_p => 0)$$, '22023', 'top_p must be in (0, 1]', 'top_p 0');
SELECT throws_ok($$SELECT r1_reason('x', top_p => 1.5)$$, '22023', NULL, 'top_p above 1');
SELECT throws_ok($$SELECT r1_reason('x', max_tokens => 0)$$, '22023', 'max_tokens must be at least 1', 'max_tokens 0');
SELECT throws_ok($$SELECT r1_reason('x', top_k => -1)$$, '22023', NULL, 'negative top_k');
SELECT throws_ok($$SELECT r1_reason('x', min_p => 1)$$, '22023', NULL, 'min_p 1');
SELECT throws_ok($$SELECT r1_reason(repeat('hello ', 5000))$$, '54000', NULL, 'prompt longer than the context');
SELECT lives_ok($$SELECT r1_reason('x', max_tokens => 1, temperature => 0)$$, 'one token');

SELECT is((r1_reason('What is 6*7?', temperature => 0)).boxed, '42', 'greedy answer is boxed 42');
SELECT is((r1_reason('What is 6*7?', temperature => 0)).finish_reason, 'stop', 'stops at the end of sequence');
SELECT is((r1_reason('What is 6*7?', max_tokens => 2, temperature => 0)).finish_reason, 'length', 'max_tokens gives length');
SELECT is((r1_reason('What is 6*7?', max_tokens => 2, temperature => 0)).completion_tokens, 2, 'two tokens');
SELECT results_eq($$SELECT think, answer FROM r1_reason('q', seed => 42, temperature => 1)$$,
                  $$SELECT think, answer FROM r1_reason('q', seed => 42, temperature => 1)$$, 'seeded sampling is reproducible');

-- r1_reason_many and max_think_tokens
SELECT has_type('r1', 'reasoning_item', 'r1.reasoning_item exists');
SELECT function_returns('r1_reason_many', ARRAY['text[]', 'integer', 'double precision', 'double precision', 'bigint', 'text', 'integer', 'double precision', 'integer', 'boolean'], 'setof r1.reasoning_item');
SELECT throws_ok($$SELECT * FROM r1_reason_many(ARRAY['x'], temperature => -1)$$, '22023', 'temperature must be a finite number >= 0', 'r1_reason_many checks parameters');
SELECT throws_ok($$SELECT * FROM r1_reason_many(ARRAY['x'], max_think_tokens => 0)$$, '22023', 'max_think_tokens must be at least 1', 'r1_reason_many: max_think_tokens 0');
SELECT throws_ok($$SELECT r1_reason('x', max_think_tokens => -2)$$, '22023', 'max_think_tokens must be at least 1', 'r1_reason: negative max_think_tokens');
SELECT results_eq($$SELECT think, answer, finish_reason FROM r1_reason('What is 6*7?', temperature => 0, max_think_tokens => 3)$$,
                  $$VALUES ('Okay, six'::text, 'The answer is $\boxed{42}$.'::text, 'think_budget'::text)$$, 'the think budget closes the trace and the model answers');
SELECT throws_ok($$SELECT * FROM r1_reason_many(ARRAY['x', NULL], strict => true)$$, '22004', 'prompt is NULL', 'strict raises a NULL prompt');
SELECT throws_ok($$SELECT * FROM r1_reason_many(ARRAY['x', repeat('hello ', 5000)], temperature => 0, strict => true)$$, '54000', NULL, 'strict raises a prompt longer than the context');
SELECT results_eq($$SELECT ord, boxed, error IS NULL FROM r1_reason_many(ARRAY['a', 'b', 'c'], temperature => 0) ORDER BY ord$$,
                  $$VALUES (1, '42'::text, true), (2, '42', true), (3, '42', true)$$, 'three prompts, three answers');

SELECT is(r1_extract_boxed('x \boxed{1} y \boxed{2}'), '2', 'last box wins');
SELECT is(r1_count_tokens('Hello world'), cardinality(r1_tokenize('Hello world')), 'count matches tokenize');
SELECT is((r1_status()).state, 'ready', 'engine ready');
SELECT cmp_ok((r1_status()).max_ctx, '>', 0, 'context size reported');

SELECT * FROM finish();
ROLLBACK;
