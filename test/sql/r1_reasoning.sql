-- reasoning-aware SQL: r1_answers_equal, loop-detection settings and
-- r1.stats.repetitions, r1_reason_vote / r1_reason_vote_many on the demo
-- model (every sample answers 42).  Looping and seed-dependent models:
-- test/t/019_reasoning.pl.
CREATE EXTENSION IF NOT EXISTS r1_pg;

-- ---- r1_answers_equal
SELECT a, b, r1_answers_equal(a, b)
FROM (VALUES ('0.5', '\frac{1}{2}'), ('1/2', '\dfrac12'), ('x = 5', '5'),
			 ('1,000', '1000'), ('90^\circ', '90'), ('50\%', '50'),
			 ('5 \text{ cm}', '5'), ('\{1,2\}', '\{2,1\}'), ('(1,2)', '(2,1)'),
			 ('[0,1)', '[0,1]'), ('42.', '42'), ('\left( 3, 4 \right)', '(3,4)'),
			 ('12', '13'), ('\frac{1}{3}', '0.33')) AS t(a, b);
SELECT r1_answers_equal(NULL, '1') IS NULL AS strict;
SELECT r1_answers_equal(repeat('(', 100000), repeat('(', 100000)) AS deep_same,
	   r1_answers_equal(repeat('(', 100000) || '1', repeat('(', 100000) || '2') AS deep_different;
SELECT provolatile, proparallel, proisstrict FROM pg_proc WHERE proname = 'r1_answers_equal';

-- ---- loop detection settings
SHOW r1.repetition_max_span;
SHOW r1.repetition_min_repeats;
SHOW r1.repetition_min_tokens;
SET r1.repetition_max_span = 100000;
SET r1.repetition_min_repeats = 1;
SET r1.repetition_min_tokens = 0;
SET r1.repetition_max_span = 64;
SELECT boxed, finish_reason FROM r1_reason('What is 6*7?', temperature => 0);
RESET r1.repetition_max_span;
SELECT repetitions >= 0 AS has_repetitions FROM r1.stats;

-- ---- voting on the demo model
SELECT boxed, share, votes, n_boxed, n, answers, finish_reasons, think, answer,
	   prompt_tokens > 0 AS prompt_tokens, completion_tokens
FROM r1_reason_vote('What is 6*7?', n => 4, seed => 1);
SELECT boxed, share, n FROM r1_reason_vote('What is 6*7?');
SELECT r1_reason_vote(NULL) IS NULL AS null_prompt;
SELECT ord, boxed, share, votes, n, error
FROM r1_reason_vote_many(ARRAY['What is 6*7?', NULL, 'Six times seven?'], n => 3, temperature => 0)
ORDER BY ord;
SELECT count(*) FROM r1_reason_vote_many(ARRAY[]::text[]);
SELECT count(*) FROM r1_reason_vote_many(NULL);
-- errors
SELECT r1_reason_vote('x', n => 0);
SELECT r1_reason_vote('x', n => 257);
SELECT r1_reason_vote('x', temperature => -1);
SELECT r1_reason_vote('x', seed => -1);
SELECT * FROM r1_reason_vote_many(ARRAY['x', NULL], n => 2, strict => true);

-- ---- pass@1 and cons@k over a table (docs/evaluation.md)
CREATE TEMP TABLE problems (id int, question text, reference text);
INSERT INTO problems VALUES (1, 'What is 6*7?', '42'), (2, 'What is 40+2?', '\boxed{42}'),
	(3, 'What is 6*8?', '48');
-- pass@1 averaged over k = 4 samples per problem
SELECT round(avg(coalesce(r1_answers_equal(r.boxed, p.reference), false)::int), 3) AS pass_at_1
FROM problems p
CROSS JOIN LATERAL r1_reason_many(array_fill(p.question, ARRAY[4]), seed => 1000 * p.id) r;
-- cons@4: the majority answer of 4 samples
SELECT round(avg(coalesce(r1_answers_equal(v.boxed, p.reference), false)::int), 3) AS cons_at_4
FROM problems p
JOIN r1_reason_vote_many(ARRAY(SELECT question FROM problems ORDER BY id), n => 4, seed => 1) v
  ON v.ord = p.id;
