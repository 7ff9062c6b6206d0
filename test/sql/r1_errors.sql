-- errors: SQLSTATEs, messages, details and hints
CREATE EXTENSION r1_pg;

CREATE FUNCTION pg_temp.sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

-- invalid sampling parameters: 22023
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', temperature => -0.1)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', temperature => 'NaN')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', temperature => 'Infinity')$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', top_p => 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', top_p => 1.01)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', max_tokens => 0)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', max_tokens => -5)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', top_k => -1)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', min_p => 1)$$);
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', min_p => -0.5)$$);

-- the boundaries are valid
SELECT pg_temp.sqlstate_of($$SELECT r1_reason('x', max_tokens => 1, temperature => 0, top_p => 1, top_k => 0, min_p => 0)$$);

-- messages, details and hints
SELECT r1_reason('x', temperature => -1);
SELECT r1_reason('x', top_p => 2);
SELECT r1_reason('x', max_tokens => 0);
SELECT r1_reason('x', top_k => -3);
SELECT r1_reason('x', min_p => 1.5);

-- r1.max_tokens_default must be positive
SET r1.max_tokens_default = 0;
RESET r1.max_tokens_default;

-- a prompt longer than the context: 54000
SELECT pg_temp.sqlstate_of($$SELECT r1_reason(repeat('hello ', 5000))$$);
SELECT r1_reason(repeat('hello ', 5000));
-- a prompt over the 16 MB message limit: 54000
SELECT pg_temp.sqlstate_of($$SELECT r1_reason(repeat('x', 17000000))$$);

-- settings are reserved and typed
SET r1.no_such_setting = 1;
ALTER SYSTEM SET r1.device = 'tpu';
SET r1.engine_path = '/tmp/r1';

DROP EXTENSION r1_pg;
