/*
 * job_servers.c - the setting r1.job_servers: libpq connection strings of
 * other r1_pg servers (hot standbys or independent nodes) whose engines the
 * primary's job workers use as well as the local one.
 *
 * Syntax: entries separated by semicolons; each is a libpq connection string
 * in key=value form, plus an optional max_running=N (default 2): how many
 * items run there at once (one job worker each, on top of r1.job_workers
 * local ones).  For example
 *
 *   r1.job_servers = 'host=gpu2 dbname=app max_running=4; host=gpu3 port=5433'
 *
 * The check hook parses every entry with libpq (PQconninfoParse), so a typo
 * is refused at reload instead of failing in a worker.  An entry without
 * dbname connects to r1.jobs_database there.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/guc.h"

#include "jobs.h"
#include "job_servers.h"
#include "remote.h"

#define R1_JOB_SERVER_DEFAULT_RUNNING 2

char	   *r1_job_servers = NULL;
static R1JobServers r1_no_servers;
const		R1JobServers *r1_job_servers_list = &r1_no_servers;

/* Parse value into a malloc'd R1JobServers; NULL and *why when it is wrong. */
static R1JobServers *
r1_job_servers_parse(const char *value, char **why)
{
	StringInfoData text;
	R1JobServers parsed;
	R1JobServers *out;
	char	   *copy = pstrdup(value ? value : "");
	char	   *save = NULL;

	memset(&parsed, 0, sizeof(parsed));
	initStringInfo(&text);
	*why = NULL;
	for (char *entry = strtok_r(copy, ";", &save); entry; entry = strtok_r(NULL, ";", &save))
	{
		PQconninfoOption *opts;
		char	   *err = NULL;
		StringInfoData conn;
		const char *host = NULL,
				   *port = NULL;
		R1JobServer *s;

		while (*entry == ' ' || *entry == '\t' || *entry == '\n')
			entry++;
		if (*entry == '\0')
			continue;
		if (parsed.n == R1_JOB_SERVERS_MAX)
		{
			*why = psprintf("at most %d servers can be listed", R1_JOB_SERVERS_MAX);
			return NULL;
		}
		s = &parsed.servers[parsed.n];
		s->max_running = R1_JOB_SERVER_DEFAULT_RUNNING;

		/* max_running=N is ours: take it out before libpq sees the string */
		initStringInfo(&conn);
		{
			char	   *tok_save = NULL;

			for (char *tok = strtok_r(entry, " \t\n", &tok_save); tok; tok = strtok_r(NULL, " \t\n", &tok_save))
			{
				if (strncmp(tok, "max_running=", 12) == 0)
				{
					char	   *end;
					long		n = strtol(tok + 12, &end, 10);

					if (*end != '\0' || n < 1 || n > R1_JOBS_MAX_WORKERS)
					{
						*why = psprintf("invalid max_running in \"%s\": a number from 1 to %d", tok,
										R1_JOBS_MAX_WORKERS);
						return NULL;
					}
					s->max_running = (int) n;
				}
				else
					appendStringInfo(&conn, "%s%s", conn.len ? " " : "", tok);
			}
		}
		opts = PQconninfoParse(conn.data, &err);
		if (opts == NULL)
		{
			*why = psprintf("invalid connection string \"%s\": %s", conn.data,
							err ? pchomp(err) : "out of memory");
			if (err)
				PQfreemem(err);
			return NULL;
		}
		for (PQconninfoOption * o = opts; o->keyword; o++)
		{
			if (strcmp(o->keyword, "host") == 0 && o->val)
				host = pstrdup(o->val);
			else if (strcmp(o->keyword, "port") == 0 && o->val)
				port = pstrdup(o->val);
		}
		PQconninfoFree(opts);
		snprintf(s->label, sizeof(s->label), "%s:%s", host ? host : "localhost", port ? port : "5432");
		s->conninfo = text.len;
		appendBinaryStringInfo(&text, conn.data, conn.len + 1);
		parsed.total += s->max_running;
		parsed.n++;
	}
	out = malloc(offsetof(R1JobServers, text) + text.len + 1);
	if (out == NULL)
	{
		*why = "out of memory";
		return NULL;
	}
	memcpy(out, &parsed, offsetof(R1JobServers, text));
	memcpy(out->text, text.data, text.len);
	out->text[text.len] = '\0';
	return out;
}

static bool
r1_job_servers_check(char **newval, void **extra, GucSource source)
{
	char	   *why;
	R1JobServers *parsed;

	/*
	 * the parse's pallocs go with it (the postmaster checks the value at
	 * every reload)
	 */
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "r1.job_servers",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);

	parsed = r1_job_servers_parse(*newval, &why);
	MemoryContextSwitchTo(old);
	if (parsed == NULL)
	{
		GUC_check_errdetail("%s.", why);
		GUC_check_errhint("List libpq connection strings separated by semicolons, each with an optional max_running=N, "
						  "e.g. 'host=gpu2 max_running=4; host=gpu3 port=5433'.");
		MemoryContextDelete(cxt);
		return false;
	}
	MemoryContextDelete(cxt);
	*extra = parsed;
	return true;
}

static void
r1_job_servers_assign(const char *newval, void *extra)
{
	r1_job_servers_list = extra ? (R1JobServers *) extra : &r1_no_servers;
}

void
r1_job_servers_define_gucs(void)
{
	DefineCustomStringVariable("r1.job_servers",
							   "Other r1_pg servers whose engines the job workers use as well as this one.",
							   "libpq connection strings separated by semicolons, each with an optional max_running=N "
							   "(items at once there, default 2). Their role runs r1_reason() there and must be allowed "
							   "to turn r1.log_traces off: traces and results are written here.",
							   &r1_job_servers,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   r1_job_servers_check, r1_job_servers_assign, NULL);
}

const char *
r1_job_server_conninfo(int i)
{
	Assert(i >= 0 && i < r1_job_servers_list->n);
	return r1_job_servers_list->text + r1_job_servers_list->servers[i].conninfo;
}
