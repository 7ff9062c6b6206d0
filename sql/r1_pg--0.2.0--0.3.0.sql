-- r1_pg 0.2.0 -> 0.3.0 (ALTER EXTENSION r1_pg UPDATE)
--
-- Every change here is also in r1_pg--0.3.0.sql; test/t/010_upgrade.pl checks
-- that an updated 0.1.0 install equals a fresh 0.3.0 one.

\echo Use "ALTER EXTENSION r1_pg UPDATE TO '0.3.0'" to load this file. \quit

-- r1.job_servers (scale-out): where each job item ran
ALTER TABLE r1.job_items ADD COLUMN server text;
COMMENT ON COLUMN r1.job_items.server IS 'where the item ran (or runs): local, or the host:port of an r1.job_servers entry';
ALTER TYPE r1.job_status ADD ATTRIBUTE servers jsonb;
CREATE OR REPLACE FUNCTION r1_job_status(id bigint) RETURNS r1.job_status
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	r r1.job_status;
BEGIN
	SELECT j.id, j.state, j.items,
		   coalesce(c.queued, 0), coalesce(c.running, 0), coalesce(c.done, 0),
		   coalesce(c.failed, 0), coalesce(c.cancelled, 0), coalesce(c.attempts, 0),
		   j.created_by, j.created_at, c.started_at, j.finished_at, j.parameters, s.servers
	INTO r
	FROM r1.jobs j
	LEFT JOIN LATERAL (
		SELECT count(*) FILTER (WHERE i.state = 'queued') AS queued,
			   count(*) FILTER (WHERE i.state = 'running') AS running,
			   count(*) FILTER (WHERE i.state = 'done') AS done,
			   count(*) FILTER (WHERE i.state = 'failed') AS failed,
			   count(*) FILTER (WHERE i.state = 'cancelled') AS cancelled,
			   sum(i.attempts) AS attempts,
			   min(i.started_at) AS started_at
		FROM r1.job_items i WHERE i.job_id = j.id) c ON true
	LEFT JOIN LATERAL (
		SELECT jsonb_object_agg(x.server, jsonb_build_object('running', x.running, 'done', x.done)) AS servers
		FROM (SELECT i.server,
					 count(*) FILTER (WHERE i.state = 'running') AS running,
					 count(*) FILTER (WHERE i.state = 'done') AS done
			  FROM r1.job_items i
			  WHERE i.job_id = j.id AND i.server IS NOT NULL AND i.state IN ('running', 'done')
			  GROUP BY i.server) x) s ON true
	WHERE j.id = r1_job_status.id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'job % does not exist', r1_job_status.id
			USING ERRCODE = 'undefined_object',
				  HINT = 'SELECT id, state FROM r1.jobs lists your jobs.';
	END IF;
	RETURN r;
END
$$;
COMMENT ON FUNCTION r1_job_status(bigint) IS 'state of a job: items by state, attempts, times; servers: running and done items by server (local or an r1.job_servers entry)';
