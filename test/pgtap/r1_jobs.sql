-- pgTAP tests of the durable-job objects (run by pg_prove in database r1_tap,
-- which is not r1.jobs_database: submitting there is refused).  Rolls back.
BEGIN;
SELECT plan(22);

SELECT has_table('r1', 'jobs', 'r1.jobs exists');
SELECT has_table('r1', 'job_items', 'r1.job_items exists');
SELECT col_is_pk('r1', 'jobs', 'id', 'jobs keyed by id');
SELECT col_is_pk('r1', 'job_items', ARRAY['job_id', 'item_no'], 'items keyed by (job_id, item_no)');
SELECT col_type_is('r1', 'jobs', 'parameters', 'jsonb', 'parameters are jsonb');
SELECT col_type_is('r1', 'job_items', 'attempts', 'integer', 'attempts are counted');
SELECT col_has_check('r1', 'job_items', 'state', 'item state is checked');
SELECT fk_ok('r1', 'job_items', 'job_id', 'r1', 'jobs', 'id');
SELECT has_index('r1', 'job_items', 'job_items_queued', 'index for claiming queued items');
SELECT policies_are('r1', 'jobs', ARRAY['own_jobs'], 'one policy on r1.jobs');
SELECT policies_are('r1', 'job_items', ARRAY['own_job_items'], 'one policy on r1.job_items');
SELECT table_privs_are('r1', 'jobs', 'r1_user', ARRAY['SELECT'], 'r1_user may only read r1.jobs');
SELECT table_privs_are('r1', 'job_items', 'public', ARRAY[]::text[], 'PUBLIC has nothing on r1.job_items');
SELECT function_returns('r1_submit', ARRAY['text', 'integer', 'double precision', 'double precision', 'bigint', 'text', 'integer', 'double precision', 'integer'], 'bigint');
SELECT function_returns('r1_submit_query', ARRAY['text', 'integer', 'double precision', 'double precision', 'bigint', 'text', 'integer', 'double precision', 'integer'], 'bigint');
SELECT function_returns('r1_job_status', ARRAY['bigint'], 'r1.job_status');
SELECT function_returns('r1_cancel_job', ARRAY['bigint'], 'boolean');
SELECT function_privs_are('public', 'r1_submit_query', ARRAY['text', 'integer', 'double precision', 'double precision', 'bigint', 'text', 'integer', 'double precision', 'integer'],
                          'public', ARRAY[]::text[], 'PUBLIC may not submit');

SELECT throws_ok($$SELECT r1_submit('x')$$, '55000', NULL, 'r1_submit outside r1.jobs_database');
SELECT throws_ok($$SELECT r1_submit_query('SELECT 1, ''x''')$$, '55000', NULL, 'r1_submit_query outside r1.jobs_database');
SELECT throws_ok($$SELECT r1_job_status(12345)$$, '42704', 'job 12345 does not exist', 'unknown job');
SELECT throws_ok($$SELECT r1_cancel_job(12345)$$, '42704', 'job 12345 does not exist', 'cancel of an unknown job');

SELECT * FROM finish();
ROLLBACK;
