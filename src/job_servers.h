/*
 * job_servers.h - r1.job_servers: other r1_pg servers whose engines the
 * primary's job workers use (src/job_servers.c).
 */
#ifndef R1_JOB_SERVERS_H
#define R1_JOB_SERVERS_H

#define R1_JOB_SERVERS_MAX		16
#define R1_JOB_SERVER_LABEL		128

typedef struct R1JobServer
{
	char		label[R1_JOB_SERVER_LABEL]; /* host:port, as
											 * r1.job_items.server shows it */
	int			max_running;	/* job workers (items at once) for this server */
	int			conninfo;		/* offset of its connection string in
								 * R1JobServers.text */
} R1JobServer;

/* the parsed setting (GUC extra: one malloc'd chunk) */
typedef struct R1JobServers
{
	int			n;
	int			total;			/* sum of max_running */
	R1JobServer servers[R1_JOB_SERVERS_MAX];
	char		text[FLEXIBLE_ARRAY_MEMBER];	/* the connection strings,
												 * NUL-separated */
} R1JobServers;

extern char *r1_job_servers;
extern const R1JobServers *r1_job_servers_list; /* never NULL once defined */

extern void r1_job_servers_define_gucs(void);

/* the connection string of server i (0-based), without max_running */
extern const char *r1_job_server_conninfo(int i);

#endif							/* R1_JOB_SERVERS_H */
