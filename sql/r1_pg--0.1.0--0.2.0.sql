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
