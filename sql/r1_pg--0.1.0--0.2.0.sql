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

-- r1.jobs.session_role: the session (login) user that submitted a job; its
-- items are charged to that role (r1.role_quota), like r1_reason calls, and
-- the job workers share their time between such roles.  Jobs submitted
-- before have NULL and use created_by.
ALTER TABLE r1.jobs ADD COLUMN session_role name;
COMMENT ON COLUMN r1.jobs.session_role IS 'the session (login) user that submitted the job: its items are charged to it (r1.role_quota) and the job workers share their time fairly between such roles (r1.job_role_max_running); NULL for jobs of 0.1.0, which use created_by';
