-- limits and validation: r1.max_tokens_per_call, seeds, non-finite
-- sampling parameters, superuser-only settings, r1.role_quota syntax
CREATE EXTENSION r1_pg;

CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

-- non-finite and out-of-range sampling parameters: 22023
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', temperature => '-Infinity')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', top_p => 'NaN')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', top_p => 'Infinity')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', min_p => 'NaN')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', min_p => '-Infinity')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', top_k => -2147483648)$$);

-- seeds: 0 .. 2^63-1; a negative seed is refused
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', seed => -1)$$);
SELECT r1_reason('x', seed => -9223372036854775808);
SELECT a.answer = b.answer AS same_seed_same_answer
FROM r1_reason('What is 6*7?', seed => 9223372036854775807, max_tokens => 16) a,
     r1_reason('What is 6*7?', seed => 9223372036854775807, max_tokens => 16) b;
SELECT finish_reason IS NOT NULL AS ok FROM r1_reason('What is 6*7?', seed => 0, max_tokens => 4);

-- system text: NULL and empty are fine; it counts toward the size limit
SELECT boxed FROM r1_reason('What is 6*7?', temperature => 0, system => NULL);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', system => '', max_tokens => 1)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', system => repeat('y', 17000000))$$);

-- r1.max_tokens_per_call: a call over it is refused with 54000, not clamped
SHOW r1.max_tokens_per_call;
SET r1.max_tokens_per_call = 10;
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', max_tokens => 11)$$);
SELECT r1_reason('x', max_tokens => 11);
SELECT completion_tokens <= 10 AS within FROM r1_reason('What is 6*7?', max_tokens => 10, temperature => 0);
-- r1.max_tokens_default (32768) over the limit: refused, the hint says what to do
SELECT r1_reason('x');
SET r1.max_tokens_default = 10;
SELECT completion_tokens <= 10 AS within FROM r1_reason('What is 6*7?', temperature => 0);
RESET r1.max_tokens_default;
RESET r1.max_tokens_per_call;
SET r1.max_tokens_per_call = -1;

-- superuser-only settings stay superuser-only
CREATE ROLE regress_r1_limited IN ROLE r1_user;
SET ROLE regress_r1_limited;
SET r1.max_tokens_per_call = 0;
SET r1.model = '/tmp/elsewhere';
SET r1.role_quota = 'regress_r1_limited=1000000';
SET r1.debug_ignore_eos = on;
ALTER SYSTEM SET r1.max_tokens_per_call = 0;
-- what a member may see: its own usage (none without a quota)
SELECT count(*) FROM r1_quota_usage();
RESET ROLE;
DROP ROLE regress_r1_limited;

-- r1.role_quota is checked when set
ALTER SYSTEM SET r1.role_quota = 'alice=';
ALTER SYSTEM SET r1.role_quota = 'alice=-5';
ALTER SYSTEM SET r1.role_quota = 'alice=5, alice=6';
ALTER SYSTEM SET r1.role_quota = 'alice 5';
ALTER SYSTEM SET r1.role_quota = 'alice=5,';
ALTER SYSTEM SET r1.role_quota = '*=1, *=2';
ALTER SYSTEM SET r1.role_quota = 'alice=99999999999999999999';
ALTER SYSTEM SET r1.role_quota = 'alice=100000, "Bob Smith"=5000, *=1000000';
ALTER SYSTEM RESET r1.role_quota;
SELECT count(*) FROM r1_quota_usage();

DROP EXTENSION r1_pg;
