-- r1_reason_many: many prompts at once, error rows, strict mode, seeds;
-- max_think_tokens.  The demo model answers every prompt greedily with
-- "Okay, six times seven equals forty-two." / "The answer is $\boxed{42}$.".
CREATE EXTENSION r1_pg;

-- one prompt: the same columns as r1_reason, plus ord and error
SELECT ord, think, answer, boxed, finish_reason, prompt_tokens, completion_tokens, think_tokens,
       ms > 0 AS timed, error
FROM r1_reason_many(ARRAY['What is 6*7?'], temperature => 0);

-- several prompts come back once each (ORDER BY: rows stream in completion order)
SELECT ord, boxed, finish_reason, error
FROM r1_reason_many(ARRAY['a', 'bb', 'What is 6*7?'], temperature => 0, max_tokens => 100)
ORDER BY ord;

-- a batch of 200 prompts: every ord once, every answer the known one, in reasonable time
SELECT clock_timestamp() AS t0 \gset
SELECT count(*) AS n, count(DISTINCT ord) AS distinct_ords, min(ord), max(ord),
       count(*) FILTER (WHERE answer = 'The answer is $\boxed{42}$.' AND boxed = '42'
                        AND finish_reason = 'stop' AND error IS NULL) AS correct
FROM r1_reason_many(ARRAY(SELECT 'Problem ' || i || ': what is 6*7?' FROM generate_series(1, 200) i),
                    temperature => 0);
SELECT clock_timestamp() - :'t0'::timestamptz < interval '120 s' AS reasonable_time;

-- a prompt longer than the context and a NULL prompt give error rows; the others are answered
SELECT ord, boxed, finish_reason, error
FROM r1_reason_many(ARRAY['a', repeat('hello ', 5000), NULL, 'd'], temperature => 0)
ORDER BY ord;

-- strict mode raises the first error instead
SELECT ord FROM r1_reason_many(ARRAY['a', repeat('hello ', 5000)], temperature => 0, strict => true);
SELECT ord FROM r1_reason_many(ARRAY['a', NULL], temperature => 0, strict => true);

-- empty and NULL arrays: no rows
SELECT count(*) FROM r1_reason_many(ARRAY[]::text[]);
SELECT count(*) FROM r1_reason_many(NULL);

-- invalid parameters fail the whole call
SELECT * FROM r1_reason_many(ARRAY['a'], top_p => 0);
SELECT * FROM r1_reason_many(ARRAY['a'], max_tokens => 0);
SELECT * FROM r1_reason_many(ARRAY['a'], max_think_tokens => 0);

-- the thinking budget: </think> after 3 tokens, then the model answers
SELECT think, answer, boxed, finish_reason, think_tokens, completion_tokens
FROM r1_reason('What is 6*7?', temperature => 0, max_think_tokens => 3);
-- a budget the trace does not reach changes nothing
SELECT think, finish_reason FROM r1_reason('What is 6*7?', temperature => 0, max_think_tokens => 100);
-- budget hit, then max_tokens: length (think_tokens = budget + 1 says the budget closed it)
SELECT think, answer, finish_reason, think_tokens
FROM r1_reason('What is 6*7?', temperature => 0, max_think_tokens => 2, max_tokens => 4);
SELECT ord, think, finish_reason
FROM r1_reason_many(ARRAY['x', 'y'], temperature => 0, max_think_tokens => 1)
ORDER BY ord;
SELECT r1_reason('x', max_think_tokens => 0);

-- reproducibility: at temperature 30 the demo model's output is random; a
-- seeded prompt gives the same trace alone and inside a batch of 33 (prompt
-- ord uses seed + ord - 1)
CREATE TEMP TABLE batch AS
SELECT * FROM r1_reason_many(ARRAY(SELECT 'Question ' || i FROM generate_series(1, 33) i),
                             temperature => 30, top_p => 1, seed => 1000, max_tokens => 12);
SELECT count(*), count(*) FILTER (WHERE error IS NULL) AS answered, count(DISTINCT think) > 20 AS varied FROM batch;
SELECT b.ord, b.think = a.think AND b.answer IS NOT DISTINCT FROM a.answer
       AND b.completion_tokens = a.completion_tokens AS same_alone
FROM batch b,
     LATERAL r1_reason('Question ' || b.ord, temperature => 30, top_p => 1, seed => 1000 + b.ord - 1,
                       max_tokens => 12) a
WHERE b.ord IN (1, 17, 33)
ORDER BY b.ord;
-- another seed gives another trace: the check above can fail
SELECT count(*) FILTER (WHERE b.think <> a.think) > 0 AS seed_matters
FROM batch b,
     LATERAL r1_reason('Question ' || b.ord, temperature => 30, top_p => 1, seed => 5000 + b.ord,
                       max_tokens => 12) a;

DROP EXTENSION r1_pg;
