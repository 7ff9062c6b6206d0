/*
 * serve_int.h - what the engine host's two halves share: server.c (the event
 * loop, the connections, the preparation pool, the engine) and prepare.c
 * (parsing a request and tokenizing its text, on any thread).  Private to
 * src/serve.
 */
#ifndef R1_SERVE_INT_H
#define R1_SERVE_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "protocol.h"

/* requests up to this size are prepared on the loop; larger ones by the pool */
#define R1_SRV_INLINE_MAX	(64u << 10)
#define R1_SRV_PREP_THREADS 4

typedef enum r1_client_state
{
	R1_CLIENT_READ,				/* reading the request */
	R1_CLIENT_PREP,				/* parsed and tokenized by a pool thread */
	R1_CLIENT_QUEUED,			/* engine queue full: waiting for a slot */
	R1_CLIENT_RUNNING,			/* submitted; waiting for the completion */
	R1_CLIENT_WRITE,			/* sending the response */
	R1_CLIENT_DONE				/* to be freed */
} r1_client_state;

typedef struct r1_client
{
	int			fd;				/* -1 once closed */
	r1_client_state state;
	unsigned char hdr[R1_PROTO_HEADER_LEN]; /* length prefix being read */
	size_t		hdr_got;
	char	   *in;				/* request body [in_len] */
	size_t		in_len;
	size_t		in_got;
	char	   *out;			/* framed response [out_len] */
	size_t		out_len;
	size_t		out_sent;
	int64_t		id;				/* engine request id while RUNNING */
	r1_request	req;			/* while QUEUED: the request to submit */
	int32_t    *ids;			/* while QUEUED: prompt ids (owned) */
	double		queue_deadline; /* while QUEUED: r1_now_ms() limit */
	char		tag[R1_PROTO_MAX_TAG + 1];	/* the caller's name for the
											 * request ("" = none) */
	struct r1_prep *prep;		/* while PREP: the pool's job (the pool owns
								 * it) */
} r1_client;

/*
 * A request being parsed and tokenized (r1_srv_prepare), by a pool thread or
 * on the loop.  The outcome is one of: a response to send now (a tokenize
 * result, an error), a generate request to submit, or an op the loop
 * answers itself (status, activity).
 */
typedef struct r1_prep
{
	char	   *in;				/* the request body [in_len] (owned) */
	size_t		in_len;
	int			cancel;			/* set by the loop (__atomic) when the client
								 * goes away */
	r1_client  *client;			/* only the loop dereferences it */
	struct r1_prep *next;		/* in the pool's todo or done list */
	json_t	   *response;		/* outcome: answer this */
	json_t	   *loop_req;		/* outcome: the loop answers this request */
	int			submit;			/* outcome: submit req (prompt ids: ids,
								 * owned) */
	r1_request	req;
	int32_t    *ids;
	double		queue_timeout_ms;
	char		tag[R1_PROTO_MAX_TAG + 1];
} r1_prep;

typedef struct r1_prep_pool
{
	pthread_mutex_t mu;
	pthread_cond_t cv;			/* todo has work, or stop */
	r1_prep    *todo;			/* FIFO: todo .. todo_tail */
	r1_prep    *todo_tail;
	r1_prep    *done;			/* prepared, for the loop (any order) */
	int			stop;
	int			wake[2];		/* a byte on wake[1] tells the loop that done
								 * has jobs */
	pthread_t	threads[R1_SRV_PREP_THREADS];
	int			n_threads;
} r1_prep_pool;

typedef struct r1_server
{
	r1_engine  *engine;
	int			listen_fd;
	const char *socket_path;
	r1_client **clients;		/* in accept order */
	int			n_clients;
	int			cap_clients;
	int			max_clients;
	int			n_queued;		/* clients in R1_CLIENT_QUEUED */
	pthread_t	checksum_thread;	/* computes the weights checksum after
									 * "ready" */
	int			checksum_started;
	uint64_t	checksum;		/* 0 until computed; __atomic access */
	r1_prep_pool pool;
} r1_server;

/* ---- prepare.c ---- */

/* Parse a request and do the work that needs no engine state (any thread). */
void		r1_srv_prepare(r1_server *srv, r1_prep *p);

/* The outcome of a preparation: this error response. */
void		r1_prep_fail(r1_prep *p, const char *code, const char *error, const char *detail,
						 const char *hint);

/* An error response ("options" included: protocol.h). */
json_t	   *r1_srv_error_json(const char *code, const char *error, const char *detail,
							  const char *hint);

/* A JSON string for possibly invalid UTF-8: invalid bytes and NULs become U+FFFD. */
json_t	   *r1_srv_json_text(const char *s, size_t len);

#endif							/* R1_SERVE_INT_H */
