-- privileges: nothing executable by PUBLIC; r1_user may call everything;
-- only superusers set r1.model
CREATE EXTENSION r1_pg;

SELECT p.proname, a.grantee::regrole AS grantee, a.privilege_type
FROM pg_proc p, aclexplode(p.proacl) a
WHERE p.proname LIKE 'r1\_%' AND a.grantee <> p.proowner
ORDER BY 1, 2;

SELECT count(*) AS public_executable
FROM pg_proc p
WHERE p.proname LIKE 'r1\_%' AND has_function_privilege('public', p.oid, 'EXECUTE');

SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = 'r1_user';

CREATE ROLE regress_r1_outsider;
CREATE ROLE regress_r1_member IN ROLE r1_user;

SET ROLE regress_r1_outsider;
SELECT r1_extract_boxed('\boxed{1}');
SELECT boxed FROM r1_reason('What is 6*7?', temperature => 0);
SELECT state FROM r1_status();
SET r1.model = '/tmp/elsewhere';
RESET ROLE;

SET ROLE regress_r1_member;
SELECT r1_extract_boxed('\boxed{1}');
SELECT boxed FROM r1_reason('What is 6*7?', temperature => 0);
SELECT state FROM r1_status();
SELECT r1_count_tokens('Hello world');
SET r1.model = '/tmp/elsewhere';
SET r1.debug_ignore_eos = on;
-- per-session settings any member may change
SET r1.max_tokens_default = 100;
SET r1.queue_timeout = '5s';
RESET ROLE;

DROP ROLE regress_r1_outsider;
DROP ROLE regress_r1_member;
DROP EXTENSION r1_pg;
