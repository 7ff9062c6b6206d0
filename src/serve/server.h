/*
 * server.h - the engine host: one process that keeps a model resident and
 * serves requests from many clients over a UNIX socket (`r1 serve`).  The
 * PostgreSQL extension's "r1 engine" worker starts it with fork+exec and
 * supervises it; backends connect to its socket directly.  The socket
 * protocol is protocol.h's.
 *
 * The command line is the r1 tool's (src/tool/r1.c parses it into
 * r1_serve_opts, with the options the other commands share: --model,
 * --device, --threads, ...).
 */
#ifndef R1_SERVER_H
#define R1_SERVER_H

#include <stdio.h>

#include "engine.h"
#include "protocol.h"

typedef struct r1_serve_opts
{
	r1_engine_opts engine;		/* --model, --random-weights, --device,
								 * --max-ctx, ... */
	const char *socket_path;	/* --socket (required) */
	int			max_clients;	/* --max-clients: open connections (default
								 * 4096) */
	int			status_fd;		/* --status-fd: state lines for a supervisor;
								 * -1 = none */
} r1_serve_opts;

void		r1_serve_opts_defaults(r1_serve_opts *o);

/* the options of `r1 serve`, for --help and usage errors */
void		r1_serve_usage(FILE *f);

/* Run the host until SIGTERM/SIGINT or a drain (SIGUSR1).  Returns the process exit status. */
int			r1_serve(const r1_serve_opts *o);

#endif							/* R1_SERVER_H */
