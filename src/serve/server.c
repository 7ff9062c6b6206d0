/*
 * server.c - the engine host (`r1 serve`): a resident engine behind a UNIX
 * socket.  See protocol.h for the protocol, server.h for the interface;
 * prepare.c parses and tokenizes requests.
 *
 * One thread, the loop, runs the engine: poll() on the listening socket and
 * the client sockets (timeout 0 while the engine has work, so decoding never
 * waits on a client), read requests, submit them, run one engine step, hand
 * finished completions to their clients.  Responses are written non-blocking
 * from a buffer, so a slow reader delays only itself.  A client that goes
 * away cancels its request.
 *
 * Parsing a request and tokenizing its text (the chat template included)
 * take time in proportion to the text: a 16 MB prompt is seconds of work.
 * Requests of more than R1_SRV_INLINE_MAX bytes are therefore prepared by a
 * small pool of threads (r1_prep) while the loop goes on stepping; smaller
 * ones, a few milliseconds at most, are prepared on the loop at once, so a
 * short call never queues behind long ones.  The loop watches the client of
 * a request in preparation too: when it goes away, the request's cancel
 * flag stops the tokenizer within milliseconds.  Everything the threads read
 * (the tokenizer, the context size) is read-only after loading; only the
 * loop touches the engine, the clients and the sockets.
 */
#define _GNU_SOURCE
#include "server.h"
#include "serve_int.h"
#include "cpu_features.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "chat.h"
#include "checksum.h"
#include "engine.h"
#include "util.h"


static volatile sig_atomic_t r1_srv_stop = 0;
static volatile sig_atomic_t r1_srv_drain = 0;

static void
r1_srv_on_signal(int sig)
{
	r1_srv_stop = 1;
}

/*
 * SIGUSR1: drain.  The supervisor wants a new host (the model or a setting
 * changed): stop accepting connections, answer every client already
 * connected, then exit 0.  The supervisor bounds the wait and sends SIGTERM
 * after it.
 */
static void
r1_srv_on_drain(int sig)
{
	r1_srv_drain = 1;
}

static void
			r1_srv_log(const char *fmt,...) __attribute__((format(printf, 1, 2)));

static void
r1_srv_log(const char *fmt,...)
{
	va_list		ap;
	char		buf[1024];

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "r1 engine host[%d]: %s\n", (int) getpid(), buf);
}

/* One line to the supervisor; best effort (it may be gone). */
static void
r1_srv_status(int fd, const char *word, const char *rest)
{
	char	   *line;
	size_t		len;
	size_t		off = 0;

	if (fd < 0)
		return;
	len = strlen(word) + (rest ? 1 + strlen(rest) : 0) + 1;
	line = malloc(len + 1);
	if (!line)
		return;
	snprintf(line, len + 1, "%s%s%s\n", word, rest ? " " : "", rest ? rest : "");
	while (off < len)
	{
		ssize_t		n = write(fd, line + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t) n;
	}
	free(line);
}

/* Frame a JSON object as the client's response (steals obj). */
static void
r1_srv_respond(r1_client *c, json_t *obj)
{
	char	   *body;
	size_t		len;

	free(c->in);
	c->in = NULL;
	c->state = R1_CLIENT_WRITE;
	body = obj ? json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(obj);
	if (body == NULL)
	{
		/* out of memory: drop the connection, the client reports it */
		c->state = R1_CLIENT_DONE;
		return;
	}
	len = strlen(body);
	if (len > R1_PROTO_MAX_RESPONSE || (c->out = malloc(len + R1_PROTO_HEADER_LEN)) == NULL)
	{
		free(body);
		c->state = R1_CLIENT_DONE;
		return;
	}
	r1_proto_put_len((unsigned char *) c->out, len);
	memcpy(c->out + R1_PROTO_HEADER_LEN, body, len);
	free(body);
	c->out_len = len + R1_PROTO_HEADER_LEN;
	c->out_sent = 0;
}

static void
r1_srv_respond_error(r1_client *c, const char *code, const char *error,
					 const char *detail, const char *hint)
{
	r1_srv_respond(c, r1_srv_error_json(code, error, detail, hint));
}

static void
r1_prep_free(r1_prep *p)
{
	if (!p)
		return;
	free(p->in);
	json_decref(p->response);
	json_decref(p->loop_req);
	free(p->ids);
	free(p);
}

static void
r1_srv_close(r1_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* c->prep is not freed: the pool owns it until the loop takes it back */
static void
r1_srv_client_free(r1_client *c)
{
	r1_srv_close(c);
	free(c->in);
	free(c->out);
	free(c->ids);
	free(c);
}

/* ---- state ---- */

/* "weights_checksum": hex, or null while the background thread computes it */
static void
r1_srv_checksum_json(r1_server *srv, json_t *o)
{
	uint64_t	h = __atomic_load_n(&srv->checksum, __ATOMIC_ACQUIRE);
	char		hex[17];

	if (h == 0)
	{
		json_object_set_new(o, "weights_checksum", json_null());
		return;
	}
	r1_checksum_hex(h, hex);
	json_object_set_new(o, "weights_checksum", json_string(hex));
}

/* Hash every weight byte off the request path, so loading stays fast. */
static void *
r1_srv_checksum_main(void *arg)
{
	r1_server  *srv = arg;

	__atomic_store_n(&srv->checksum, r1_weights_checksum(r1_engine_model(srv->engine)), __ATOMIC_RELEASE);
	return NULL;
}

static void
r1_srv_status_json(r1_server *srv, json_t *o)
{
	r1_engine_stats st;
	const r1_model *m = r1_engine_model(srv->engine);
	const char *note = r1_engine_note(srv->engine);

	r1_engine_stats_get(srv->engine, &st);
	json_object_set_new(o, "model", json_string(m->name));
	json_object_set_new(o, "path", json_string(m->path));
	json_object_set_new(o, "device", json_string(r1_engine_device(srv->engine)));

	/*
	 * the CPU kernel path chosen at start (cpu_features.h), whatever the
	 * device
	 */
	json_object_set_new(o, "cpu_path", json_string(r1_cpu_path_name(r1_cpu()->path)));
	json_object_set_new(o, "cpu_features", json_string(r1_cpu_features_string()));
	json_object_set_new(o, "note", json_string(note ? note : ""));
	json_object_set_new(o, "ctx", json_integer(r1_engine_ctx(srv->engine)));
	json_object_set_new(o, "waiting", json_integer(st.waiting + srv->n_queued));
	json_object_set_new(o, "running", json_integer(st.running));
	json_object_set_new(o, "tokens_generated", json_integer((json_int_t) st.tokens_generated));
	json_object_set_new(o, "prompt_tokens", json_integer((json_int_t) st.prompt_tokens));
	json_object_set_new(o, "requests_done", json_integer((json_int_t) st.requests_done));
	json_object_set_new(o, "preemptions", json_integer((json_int_t) st.preemptions));
	json_object_set_new(o, "repetitions", json_integer((json_int_t) st.repetitions));
	json_object_set_new(o, "prefill_shared", json_integer((json_int_t) st.prefill_shared));
	json_object_set_new(o, "memory_used", json_integer((json_int_t) st.memory_used));
	json_object_set_new(o, "weight_bytes", json_integer((json_int_t) st.weight_bytes));
	json_object_set_new(o, "clients", json_integer(srv->n_clients));
	r1_srv_checksum_json(srv, o);
}

static int
r1_srv_is_queue_full(const r1_error *err)
{
	return strncmp(err->msg, "queue full", 10) == 0;
}

/* Submit a prepared generate request (the loop), or queue it for a slot. */
static void
r1_srv_submit(r1_server *srv, r1_client *c, r1_prep *p)
{
	r1_error	err;
	int32_t    *ids = p->ids;

	memcpy(c->tag, p->tag, sizeof(c->tag));
	p->ids = NULL;
	p->req.user = c;

	/* a queued client keeps its place behind earlier ones */
	if (srv->n_queued == 0 && r1_engine_submit(srv->engine, &p->req, &c->id, &err) == 0)
	{
		free(ids);
		c->state = R1_CLIENT_RUNNING;
		return;
	}
	if (srv->n_queued == 0 && !r1_srv_is_queue_full(&err))
	{
		free(ids);
		r1_srv_respond_error(c, R1_SQLSTATE_INTERNAL, err.msg, NULL, NULL);
		return;
	}
	if (p->queue_timeout_ms <= 0)
	{
		free(ids);
		r1_srv_respond_error(c, R1_SQLSTATE_QUEUE_FULL, "r1 request queue is full",
							 "Too many requests are queued or running in the engine.",
							 "Retry later, raise queue_timeout_ms to wait longer, or raise --max-queued.");
		return;
	}
	c->ids = ids;
	c->req = p->req;
	c->queue_deadline = r1_now_ms() + p->queue_timeout_ms;
	c->state = R1_CLIENT_QUEUED;
	srv->n_queued++;
}

/* Submit queued clients in arrival order while the engine takes them; expire the rest. */
static void
r1_srv_drain_queue(r1_server *srv)
{
	int			full = 0;
	double		now = r1_now_ms();

	if (srv->n_queued == 0)
		return;
	for (int i = 0; i < srv->n_clients; i++)
	{
		r1_client  *c = srv->clients[i];
		r1_error	err;

		if (c->state != R1_CLIENT_QUEUED)
			continue;
		if (!full)
		{
			if (r1_engine_submit(srv->engine, &c->req, &c->id, &err) == 0)
			{
				free(c->ids);
				c->ids = NULL;
				c->state = R1_CLIENT_RUNNING;
				srv->n_queued--;
				continue;
			}
			if (r1_srv_is_queue_full(&err))
				full = 1;
			else
			{
				srv->n_queued--;
				r1_srv_respond_error(c, R1_SQLSTATE_INTERNAL, err.msg, NULL, NULL);
				continue;
			}
		}
		if (now >= c->queue_deadline)
		{
			srv->n_queued--;
			r1_srv_respond_error(c, R1_SQLSTATE_QUEUE_FULL, "r1 request queue is full",
								 "No slot became free within queue_timeout_ms.",
								 "Retry later, raise queue_timeout_ms to wait longer, or raise --max-queued.");
		}
	}
}

/* Progress of every tagged request that waits or runs. */
static void
r1_srv_activity(r1_server *srv, r1_client *c)
{
	json_t	   *o = json_object();
	json_t	   *arr = json_array();
	r1_engine_stats st;
	int			queued = 0;

	r1_engine_stats_get(srv->engine, &st);
	for (int i = 0; i < srv->n_clients; i++)
	{
		r1_client  *x = srv->clients[i];
		r1_progress p;
		json_t	   *a;

		if (x->tag[0] == '\0' || (x->state != R1_CLIENT_QUEUED && x->state != R1_CLIENT_RUNNING))
			continue;
		memset(&p, 0, sizeof(p));
		if (x->state == R1_CLIENT_QUEUED)
		{
			/*
			 * behind everything the engine holds and the earlier queued
			 * clients
			 */
			p.queue_position = st.waiting + ++queued;
			p.prompt_tokens = (int) x->req.n_prompt;
		}
		else if (r1_engine_progress(srv->engine, x->id, &p) != 0)
			continue;			/* finished, not yet delivered */
		a = json_object();
		json_object_set_new(a, "tag", json_string(x->tag));
		json_object_set_new(a, "state", json_string(p.running ? "running" : "queued"));
		json_object_set_new(a, "queue_position", p.running ? json_null() : json_integer(p.queue_position));
		json_object_set_new(a, "prompt_tokens", json_integer(p.prompt_tokens));
		json_object_set_new(a, "completion_tokens", json_integer(p.completion_tokens));
		json_object_set_new(a, "tokens_per_s", json_real(p.tokens_per_s));
		json_array_append_new(arr, a);
	}
	json_object_set_new(o, "ok", json_true());
	json_object_set_new(o, "requests", arr);
	r1_srv_respond(c, o);
}

/* The ops that read the engine's or the clients' state, on the loop. */
static void
r1_srv_answer_on_loop(r1_server *srv, r1_client *c, json_t *req)
{
	const char *op = json_string_value(json_object_get(req, "op"));

	if (strcmp(op, "activity") == 0)
		r1_srv_activity(srv, c);
	else if (strcmp(op, "status") == 0)
	{
		json_t	   *o = json_object();

		json_object_set_new(o, "ok", json_true());
		r1_srv_status_json(srv, o);
		r1_srv_respond(c, o);
	}
	else
		r1_srv_respond_error(c, R1_SQLSTATE_PROTOCOL, "unknown op", op, NULL);
}

/* A prepared request back on the loop: answer it, submit it, or drop it. */
static void
r1_srv_apply(r1_server *srv, r1_client *c, r1_prep *p)
{
	c->prep = NULL;
	if (c->fd < 0)
		c->state = R1_CLIENT_DONE;	/* went away meanwhile */
	else if (p->response)
	{
		r1_srv_respond(c, p->response);
		p->response = NULL;
	}
	else if (p->loop_req)
		r1_srv_answer_on_loop(srv, c, p->loop_req);
	else if (p->submit)
		r1_srv_submit(srv, c, p);
	else
		r1_srv_respond_error(c, R1_SQLSTATE_INTERNAL, "r1 engine host lost a request", NULL, NULL);
	r1_prep_free(p);
}

/* ---- the preparation pool ---- */

static void *
r1_prep_main(void *arg)
{
	r1_server  *srv = arg;
	r1_prep_pool *pool = &srv->pool;

	/*
	 * the decode threads come first: a long tokenization yields the CPU to
	 * them
	 */
	(void) setpriority(PRIO_PROCESS, (id_t) gettid(), 10);
	for (;;)
	{
		r1_prep    *p;
		ssize_t		w;

		pthread_mutex_lock(&pool->mu);
		while (!pool->stop && pool->todo == NULL)
			pthread_cond_wait(&pool->cv, &pool->mu);
		if (pool->stop)
		{
			pthread_mutex_unlock(&pool->mu);
			return NULL;
		}
		p = pool->todo;
		pool->todo = p->next;
		if (pool->todo == NULL)
			pool->todo_tail = NULL;
		pthread_mutex_unlock(&pool->mu);

		if (__atomic_load_n(&p->cancel, __ATOMIC_RELAXED))
			r1_prep_fail(p, R1_SQLSTATE_CANCELED, "r1 request was cancelled", NULL, NULL);
		else
			r1_srv_prepare(srv, p);

		pthread_mutex_lock(&pool->mu);
		p->next = pool->done;
		pool->done = p;
		pthread_mutex_unlock(&pool->mu);
		do
			w = write(pool->wake[1], "", 1);
		while (w < 0 && errno == EINTR);
		/* EAGAIN: the pipe is full of wake-ups already */
	}
}

static int
r1_prep_pool_init(r1_prep_pool *pool, r1_error *err)
{
	memset(pool, 0, sizeof(*pool));
	pool->wake[0] = pool->wake[1] = -1;
	if (pipe2(pool->wake, O_NONBLOCK | O_CLOEXEC) != 0)
		return r1_fail(err, "pipe: %s", strerror(errno));
	pthread_mutex_init(&pool->mu, NULL);
	pthread_cond_init(&pool->cv, NULL);
	return 0;
}

/* Hand a request to the pool; threads start with the first one. */
static void
r1_prep_enqueue(r1_server *srv, r1_prep *p)
{
	r1_prep_pool *pool = &srv->pool;

	pthread_mutex_lock(&pool->mu);
	if (pool->n_threads < R1_SRV_PREP_THREADS)
	{
		sigset_t	all,
					old;

		/* signals (SIGTERM) go to the loop, whose poll() they interrupt */
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		while (pool->n_threads < R1_SRV_PREP_THREADS &&
			   pthread_create(&pool->threads[pool->n_threads], NULL, r1_prep_main, srv) == 0)
			pool->n_threads++;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (pool->n_threads == 0)
	{
		/* no thread could start: prepare it here, late but correct */
		pthread_mutex_unlock(&pool->mu);
		r1_srv_log("could not start a preparation thread; preparing on the loop");
		r1_srv_prepare(srv, p);
		r1_srv_apply(srv, p->client, p);
		return;
	}
	p->next = NULL;
	if (pool->todo_tail)
		pool->todo_tail->next = p;
	else
		pool->todo = p;
	pool->todo_tail = p;
	pthread_cond_signal(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
}

/* The loop takes back what the pool prepared. */
static void
r1_prep_collect(r1_server *srv)
{
	r1_prep_pool *pool = &srv->pool;
	char		buf[256];
	r1_prep    *done;

	while (read(pool->wake[0], buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&pool->mu);
	done = pool->done;
	pool->done = NULL;
	pthread_mutex_unlock(&pool->mu);
	while (done)
	{
		r1_prep    *next = done->next;

		r1_srv_apply(srv, done->client, done);
		done = next;
	}
}

/* Stop the threads (cancelling their work) and free what they held. */
static void
r1_prep_pool_stop(r1_server *srv)
{
	r1_prep_pool *pool = &srv->pool;

	for (int i = 0; i < srv->n_clients; i++)
		if (srv->clients[i]->state == R1_CLIENT_PREP && srv->clients[i]->prep)
			__atomic_store_n(&srv->clients[i]->prep->cancel, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&pool->mu);
	pool->stop = 1;
	pthread_cond_broadcast(&pool->cv);
	pthread_mutex_unlock(&pool->mu);
	for (int i = 0; i < pool->n_threads; i++)
		pthread_join(pool->threads[i], NULL);
	for (r1_prep *l = pool->todo; l;)
	{
		r1_prep    *next = l->next;

		r1_prep_free(l);
		l = next;
	}
	for (r1_prep *l = pool->done; l;)
	{
		r1_prep    *next = l->next;

		r1_prep_free(l);
		l = next;
	}
	pool->todo = pool->todo_tail = pool->done = NULL;
	if (pool->wake[0] >= 0)
		close(pool->wake[0]);
	if (pool->wake[1] >= 0)
		close(pool->wake[1]);
}

/* A whole request has arrived: prepare it here when small, else in the pool. */
static void
r1_srv_handle_request(r1_server *srv, r1_client *c)
{
	r1_prep    *p = calloc(1, sizeof(*p));

	if (p == NULL)
	{
		r1_srv_respond_error(c, R1_SQLSTATE_OUT_OF_MEMORY, "out of memory in the r1 engine host", NULL, NULL);
		return;
	}
	p->in = c->in;
	p->in_len = c->in_len;
	p->client = c;
	c->in = NULL;
	c->prep = p;
	c->state = R1_CLIENT_PREP;
	if (p->in_len <= R1_SRV_INLINE_MAX)
	{
		r1_srv_prepare(srv, p);
		r1_srv_apply(srv, c, p);
	}
	else
		r1_prep_enqueue(srv, p);
}

/* Completion -> response (or nothing, for a client that went away). */
static void
r1_srv_deliver(r1_server *srv, r1_completion *done)
{
	r1_client  *c = done->user;
	json_t	   *o;

	if (c == NULL || c->state != R1_CLIENT_RUNNING || c->id != done->id)
		return;
	if (c->fd < 0)
	{
		c->state = R1_CLIENT_DONE;
		return;
	}
	switch (done->finish)
	{
		case R1_FINISH_ERROR:
			r1_srv_respond_error(c, R1_SQLSTATE_INTERNAL, "r1 engine failed", done->error, NULL);
			return;
		case R1_FINISH_TIMEOUT:
			r1_srv_respond_error(c, R1_SQLSTATE_CANCELED, "r1 request timed out in the engine", NULL, NULL);
			return;
		case R1_FINISH_CANCELLED:
			r1_srv_respond_error(c, R1_SQLSTATE_CANCELED, "r1 request was cancelled", NULL, NULL);
			return;
		default:
			break;
	}
	o = json_object();
	json_object_set_new(o, "ok", json_true());
	json_object_set_new(o, "think", r1_srv_json_text(done->think ? done->think : "", done->think ? strlen(done->think) : 0));
	json_object_set_new(o, "answer", r1_srv_json_text(done->answer, done->answer ? strlen(done->answer) : 0));
	json_object_set_new(o, "boxed", r1_srv_json_text(done->boxed, done->boxed ? strlen(done->boxed) : 0));
	json_object_set_new(o, "finish_reason", json_string(r1_finish_name(done->finish)));
	json_object_set_new(o, "prompt_tokens", json_integer(done->prompt_tokens));
	json_object_set_new(o, "completion_tokens", json_integer(done->completion_tokens));
	json_object_set_new(o, "think_tokens", json_integer(done->think_tokens));
	json_object_set_new(o, "think_budget_hit", json_boolean(done->think_budget_hit));
	json_object_set_new(o, "repetition_span", json_integer(done->repetition_span));

	/*
	 * milliseconds to the microsecond: more digits are noise, and read as
	 * such
	 */
	json_object_set_new(o, "ms", json_real(round(done->ms * 1000.0) / 1000.0));
	json_object_set_new(o, "model", json_string(r1_engine_model(srv->engine)->name));
	r1_srv_checksum_json(srv, o);
	r1_srv_respond(c, o);
}

/* ---- I/O ---- */

static void
r1_srv_client_gone(r1_server *srv, r1_client *c)
{
	r1_srv_close(c);
	switch (c->state)
	{
		case R1_CLIENT_RUNNING:
			/* freed when its "cancelled" completion comes back */
			r1_engine_cancel(srv->engine, c->id);
			break;
		case R1_CLIENT_QUEUED:
			srv->n_queued--;
			c->state = R1_CLIENT_DONE;
			break;
		case R1_CLIENT_PREP:
			/* done when the pool hands the request back; stop the tokenizer */
			__atomic_store_n(&c->prep->cancel, 1, __ATOMIC_RELAXED);
			break;
		default:
			c->state = R1_CLIENT_DONE;
			break;
	}
}

static void
r1_srv_read(r1_server *srv, r1_client *c)
{
	for (;;)
	{
		ssize_t		n;

		if (c->hdr_got < R1_PROTO_HEADER_LEN)
			n = recv(c->fd, c->hdr + c->hdr_got, R1_PROTO_HEADER_LEN - c->hdr_got, 0);
		else
			n = recv(c->fd, c->in + c->in_got, c->in_len - c->in_got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
		{
			r1_srv_client_gone(srv, c);
			return;
		}
		if (c->hdr_got < R1_PROTO_HEADER_LEN)
		{
			c->hdr_got += (size_t) n;
			if (c->hdr_got < R1_PROTO_HEADER_LEN)
				continue;
			c->in_len = r1_proto_get_len(c->hdr);
			if (c->in_len > R1_PROTO_MAX_MESSAGE)
			{
				r1_srv_respond_error(c, R1_SQLSTATE_TOO_LONG, "request is too large",
									 "Requests are limited to 128 MB.", NULL);
				return;
			}
			if ((c->in = malloc(c->in_len + 1)) == NULL)
			{
				r1_srv_respond_error(c, R1_SQLSTATE_OUT_OF_MEMORY, "out of memory in the r1 engine host", NULL, NULL);
				return;
			}
		}
		else
			c->in_got += (size_t) n;
		if (c->in_got == c->in_len)
		{
			r1_srv_handle_request(srv, c);
			return;
		}
	}
}

/* While a request waits or runs, the client must stay silent: anything readable is EOF. */
static void
r1_srv_watch(r1_server *srv, r1_client *c)
{
	char		b[64];
	ssize_t		n = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	r1_srv_client_gone(srv, c);
}

static void
r1_srv_write(r1_server *srv, r1_client *c)
{
	while (c->out_sent < c->out_len)
	{
		ssize_t		n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
			break;
		c->out_sent += (size_t) n;
	}
	r1_srv_close(c);
	c->state = R1_CLIENT_DONE;
}

static void
r1_srv_accept(r1_server *srv)
{
	for (;;)
	{
		int			fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		r1_client  *c;

		if (fd < 0)
			return;				/* EAGAIN, or a transient error: try at the
								 * next poll */
		if (srv->n_clients == srv->cap_clients)
		{
			int			cap = srv->cap_clients ? srv->cap_clients * 2 : 64;
			r1_client **p = realloc(srv->clients, (size_t) cap * sizeof(*p));

			if (!p)
			{
				close(fd);
				return;
			}
			srv->clients = p;
			srv->cap_clients = cap;
		}
		c = calloc(1, sizeof(*c));
		if (!c)
		{
			close(fd);
			return;
		}
		c->fd = fd;
		c->state = R1_CLIENT_READ;
		srv->clients[srv->n_clients++] = c;
		if (srv->n_clients > srv->max_clients)
			r1_srv_respond_error(c, R1_SQLSTATE_TOO_MANY_CONNECTIONS, "too many connections to the r1 engine host", NULL,
								 "Retry later, or lower the number of concurrent callers.");
	}
}

/* Drop finished clients, keeping arrival order. */
static void
r1_srv_reap(r1_server *srv)
{
	int			j = 0;

	for (int i = 0; i < srv->n_clients; i++)
	{
		r1_client  *c = srv->clients[i];

		if (c->state == R1_CLIENT_DONE)
			r1_srv_client_free(c);
		else
			srv->clients[j++] = c;
	}
	srv->n_clients = j;
}

static int
r1_srv_listen(const char *path, r1_error *err)
{
	struct sockaddr_un addr;
	int			fd;
	mode_t		old;

	if (strlen(path) >= sizeof(addr.sun_path))
		return r1_fail(err, "socket path \"%s\" is too long", path);
	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return r1_fail(err, "socket: %s", strerror(errno));
	unlink(path);
	old = umask(077);
	if (bind(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0)
	{
		umask(old);
		r1_fail(err, "could not bind \"%s\": %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	if (listen(fd, 1024) != 0)
	{
		r1_fail(err, "listen: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* ---- main ---- */

void
r1_serve_opts_defaults(r1_serve_opts *o)
{
	memset(o, 0, sizeof(*o));
	r1_engine_opts_defaults(&o->engine);
	o->max_clients = 4096;
	o->status_fd = -1;
}

void
r1_serve_usage(FILE *f)
{
	fprintf(f,
			"usage: r1 serve --socket PATH --model DIR [options]\n"
			"  --socket PATH            UNIX socket to listen on (required)\n"
			"  --model DIR              checkpoint directory\n"
			"  --random-weights SHAPE   random weights instead (1.5b, 7b, ..., or a config.json);\n"
			"                           --random SHAPE is the old spelling\n"
			"  --tokenizer DIR          tokenizer for --random-weights\n"
			"  --device cpu|cuda|auto   (default auto)\n"
			"  --threads N              CPU threads, 0 = all cores\n"
			"  --max-seqs N             sequences decoded together\n"
			"  --max-queued N           requests queued or running\n"
			"  --max-ctx N              positions per sequence, 0 = model's\n"
			"  --gpu-memory-fraction F  KV cache share of free GPU memory\n"
			"  --kv-memory MB           most KV cache on the CPU, 0 = no limit\n"
			"  --kv-cache-dtype f16|bf16|f32  CPU KV cache element type (default f16)\n"
			"  --cpu-precision fast|exact  CPU: 8-bit (quantised weights) or bf16 activations\n"
			"                           (fast, the default) or float32 everywhere (exact)\n"
			"  --batch-invariant        results bitwise independent of the batch (no value)\n"
			"  --max-clients N          open connections (default 4096)\n"
			"  --status-fd N            write state lines for a supervisor to fd N\n"
			"  --cluster NAME           a label for ps (the PostgreSQL cluster it serves)\n"
			"  SIGUSR1 drains: no new connections, answer the open ones, exit 0\n");
}

/* "no_device" when a GPU was demanded and the failure is about the GPU. */
static int
r1_srv_is_no_device(const char *device, const char *msg)
{
	if (device == NULL || strcmp(device, "cuda") != 0)
		return 0;
	return strcasestr(msg, "cuda") || strcasestr(msg, "gpu") || strcasestr(msg, "device");
}

int
r1_serve(const r1_serve_opts *so)
{
	r1_engine_opts opts = so->engine;
	r1_server	srv;
	r1_error	err;
	int			status_fd = so->status_fd;
	struct pollfd *pfds = NULL;
	int			cap_pfds = 0;
	int			rc = 0;
	json_t	   *ready;
	char	   *ready_s;

	memset(&srv, 0, sizeof(srv));
	srv.listen_fd = -1;
	srv.socket_path = so->socket_path;
	srv.max_clients = so->max_clients > 0 ? so->max_clients : 1;
	if (opts.max_ctx == 0)
	{
		/* 0 means the model's own; the engine's defaults apply */
		r1_engine_opts d;

		r1_engine_opts_defaults(&d);
		opts.max_ctx = d.max_ctx;
	}
	prctl(PR_SET_NAME, "r1 engine host", 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);

	/* load: SIGTERM keeps its default action until the loop can honour it */
	r1_srv_status(status_fd, "loading", NULL);
	if (r1_engine_open(&srv.engine, &opts, &err) != 0)
	{
		r1_srv_log("could not load the model: %s", err.msg);
		r1_srv_status(status_fd, r1_srv_is_no_device(opts.device, err.msg) ? "no_device" : "failed", err.msg);
		return 0;
	}
	signal(SIGTERM, r1_srv_on_signal);
	signal(SIGINT, r1_srv_on_signal);
	signal(SIGUSR1, r1_srv_on_drain);
	if (r1_prep_pool_init(&srv.pool, &err) != 0 ||
		(srv.listen_fd = r1_srv_listen(srv.socket_path, &err)) < 0)
	{
		r1_srv_log("%s", err.msg);
		r1_srv_status(status_fd, "failed", err.msg);
		r1_engine_close(srv.engine);
		return 0;
	}

	ready = json_object();
	r1_srv_status_json(&srv, ready);
	ready_s = json_dumps(ready, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(ready);
	r1_srv_status(status_fd, "ready", ready_s ? ready_s : "{}");
	r1_srv_log("ready: %s", ready_s ? ready_s : "");
	free(ready_s);
	srv.checksum_started = pthread_create(&srv.checksum_thread, NULL, r1_srv_checksum_main, &srv) == 0;
	if (!srv.checksum_started)
		r1_srv_log("could not start the weights checksum thread; weights_checksum stays null");

	while (!r1_srv_stop)
	{
		int			busy;

		if (r1_srv_drain && srv.listen_fd >= 0)
		{
			/*
			 * new calls wait for the next host, which creates the socket
			 * again
			 */
			close(srv.listen_fd);
			srv.listen_fd = -1;
			unlink(srv.socket_path);
			r1_srv_log("draining: %d connection(s) to finish", srv.n_clients);
		}
		if (r1_srv_drain && srv.n_clients == 0)
		{
			r1_srv_log("drained; exiting");
			break;
		}
		busy = r1_engine_busy(srv.engine);
		int			timeout = -1;
		int			n_pfds = 0;
		int			n;

		/*
		 * poll set: the listening socket, the pool's wake-ups, every open
		 * client
		 */
		if (cap_pfds < srv.n_clients + 2)
		{
			struct pollfd *p = realloc(pfds, (size_t) (srv.n_clients + 64) * sizeof(*p));

			if (!p)
			{
				r1_srv_log("out of memory");
				rc = 1;
				break;
			}
			pfds = p;
			cap_pfds = srv.n_clients + 64;
		}
		pfds[n_pfds].fd = srv.listen_fd;
		pfds[n_pfds].events = POLLIN;
		pfds[n_pfds++].revents = 0;
		pfds[n_pfds].fd = srv.pool.wake[0];
		pfds[n_pfds].events = POLLIN;
		pfds[n_pfds++].revents = 0;
		for (int i = 0; i < srv.n_clients; i++)
		{
			r1_client  *c = srv.clients[i];

			pfds[n_pfds].fd = c->fd;	/* -1 is ignored by poll */
			pfds[n_pfds].events = c->state == R1_CLIENT_WRITE ? POLLOUT : POLLIN;
			pfds[n_pfds++].revents = 0;
		}
		if (busy)
			timeout = 0;
		else if (srv.n_queued > 0)
			timeout = 10;
		n = poll(pfds, (nfds_t) n_pfds, timeout);
		if (n < 0 && errno != EINTR)
		{
			r1_srv_log("poll: %s", strerror(errno));
			rc = 1;
			break;
		}
		if (n > 0)
		{
			int			n_before = srv.n_clients;

			for (int i = 0; i < n_before; i++)
			{
				r1_client  *c = srv.clients[i];
				short		re = pfds[i + 2].revents;

				if (re == 0 || c->fd < 0)
					continue;
				switch (c->state)
				{
					case R1_CLIENT_READ:
						r1_srv_read(&srv, c);
						break;
					case R1_CLIENT_PREP:
					case R1_CLIENT_QUEUED:
					case R1_CLIENT_RUNNING:
						r1_srv_watch(&srv, c);
						break;
					case R1_CLIENT_WRITE:
						r1_srv_write(&srv, c);
						break;
					case R1_CLIENT_DONE:
						break;
				}
				/* a request answered at once: try writing now */
				if (c->state == R1_CLIENT_WRITE && c->fd >= 0)
					r1_srv_write(&srv, c);
			}
			if (pfds[0].revents)
			{
				int			first = srv.n_clients;

				r1_srv_accept(&srv);
				for (int i = first; i < srv.n_clients; i++)
					if (srv.clients[i]->state == R1_CLIENT_WRITE)
						r1_srv_write(&srv, srv.clients[i]);
			}
		}

		if (n > 0 && pfds[1].revents)
			r1_prep_collect(&srv);

		if (r1_engine_busy(srv.engine))
		{
			if (r1_engine_step(srv.engine, &err) != 0)
			{
				/*
				 * the engine failed the batch; a sticky device fault needs a
				 * fresh process
				 */
				r1_srv_log("engine step failed: %s", err.msg);
				rc = 3;
			}
		}
		for (;;)
		{
			r1_completion done;

			memset(&done, 0, sizeof(done));
			if (!r1_engine_poll(srv.engine, &done))
				break;
			r1_srv_deliver(&srv, &done);
			r1_completion_free(&done);
		}
		r1_srv_drain_queue(&srv);
		for (int i = 0; i < srv.n_clients; i++)
			if (srv.clients[i]->state == R1_CLIENT_WRITE && srv.clients[i]->fd >= 0 &&
				srv.clients[i]->out_sent == 0)
				r1_srv_write(&srv, srv.clients[i]);
		r1_srv_reap(&srv);
		if (rc == 3)
			break;				/* waiting clients see EOF; the supervisor
								 * restarts us */
	}

	if (r1_srv_stop)
		r1_srv_log("shutting down");
	r1_prep_pool_stop(&srv);
	if (srv.listen_fd >= 0)
	{
		close(srv.listen_fd);
		unlink(srv.socket_path);
	}
	for (int i = 0; i < srv.n_clients; i++)
		r1_srv_client_free(srv.clients[i]);
	free(srv.clients);
	free(pfds);
	if (srv.checksum_started && __atomic_load_n(&srv.checksum, __ATOMIC_ACQUIRE) == 0)
		return rc;				/* still hashing: the exit unmaps the weights
								 * under it */
	if (srv.checksum_started)
		pthread_join(srv.checksum_thread, NULL);
	r1_engine_close(srv.engine);
	return rc;
}
