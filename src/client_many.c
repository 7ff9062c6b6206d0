/*
 * client_many.c - a window of requests in flight to the engine host at once
 * (see client_many.h).  Each request has its own connection (the protocol is
 * one request per connection) driven by a small state machine: send the
 * framed request, read the 4-byte length, read the body.  One WaitEventSet
 * over the latch and every open socket is the only place the backend waits,
 * followed by CHECK_FOR_INTERRUPTS(): a cancel or statement_timeout raises,
 * the memory context holding the connections goes away and its reset
 * callback closes them, which the host takes as cancels.
 */
#include "postgres.h"

#include <sys/socket.h>
#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "serve/protocol.h"
#include "client.h"
#include "activity.h"
#include "client_many.h"
#include "shmem.h"

#define R1_MANY_CONNECT_RETRY_MS	5000	/* for a host that is ready but
											 * not there */

typedef enum R1ConnState
{
	R1_CONN_SEND,				/* writing the framed request */
	R1_CONN_HDR,				/* reading the response length */
	R1_CONN_BODY				/* reading the response */
} R1ConnState;

typedef struct R1Conn
{
	int			fd;
	int			index;			/* request index */
	R1ConnState state;
	char	   *out;			/* 4-byte length + body */
	size_t		out_len,
				out_sent;
	unsigned char hdr[R1_PROTO_HEADER_LEN];
	size_t		hdr_got;
	char	   *in;				/* response body + NUL */
	size_t		in_len,
				in_got;
} R1Conn;

struct R1Many
{
	MemoryContext mcxt;
	int			n;
	char	  **bodies;
	size_t	   *lens;
	int			next;			/* next request index to send */
	int			remaining;		/* requests not yet finished (NULL bodies
								 * excluded) */
	int			window;
	R1Conn	   *conns;			/* [window]; fd -1 = free */
	int			n_open;
	uint32		generation;		/* host generation the requests went to */
	MemoryContextCallback cb;
	R1ManyAdmit admit;			/* NULL: send everything */
	void	   *admit_arg;
	int		   *refused;		/* [n] indexes refused, returned first */
	int			refused_head,
				refused_tail;
};

static void
r1_many_close_all(void *arg)
{
	R1Many	   *m = (R1Many *) arg;

	for (int i = 0; i < m->window; i++)
		if (m->conns[i].fd >= 0)
		{
			close(m->conns[i].fd);
			m->conns[i].fd = -1;
		}
	m->n_open = 0;
}

/* a connection to a ready host, riding out a restart like r1_call does */
static int
r1_many_connect(R1Many *m)
{
	TimestampTz start = GetCurrentTimestamp();
	R1Shared	snap;

	for (;;)
	{
		int			fd;

		r1_wait_ready(&snap, false);
		if (m->n_open > 0 && snap.host_generation != m->generation)
			r1_host_lost(m->generation, false); /* the others went to a host
												 * that died */
		m->generation = snap.host_generation;
		fd = r1_connect();
		if (fd >= 0)
			return fd;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), R1_MANY_CONNECT_RETRY_MS))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("could not connect to the r1 engine host: %m"),
					 errhint("Check the server log for messages from the \"r1 engine\" worker.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Move a connection along without blocking.  Returns 1 when its response is
 * complete, 0 when it must wait, -1 when the host went away.
 */
static int
r1_conn_progress(R1Many *m, R1Conn *c)
{
	for (;;)
	{
		ssize_t		k;

		if (c->state == R1_CONN_SEND)
		{
			k = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
			if (k > 0)
			{
				c->out_sent += (size_t) k;
				if (c->out_sent == c->out_len)
				{
					pfree(c->out);
					c->out = NULL;
					c->state = R1_CONN_HDR;
				}
				continue;
			}
		}
		else if (c->state == R1_CONN_HDR)
		{
			k = recv(c->fd, c->hdr + c->hdr_got, R1_PROTO_HEADER_LEN - c->hdr_got, 0);
			if (k > 0)
			{
				c->hdr_got += (size_t) k;
				if (c->hdr_got == R1_PROTO_HEADER_LEN)
				{
					c->in_len = r1_proto_get_len(c->hdr);
					if (c->in_len > R1_PROTO_MAX_RESPONSE)
						ereport(ERROR,
								(errcode(ERRCODE_PROTOCOL_VIOLATION),
								 errmsg("r1 engine host sent an oversized response (%zu bytes)", c->in_len)));
					c->in = MemoryContextAllocExtended(m->mcxt, c->in_len + 1, MCXT_ALLOC_HUGE);
					c->state = R1_CONN_BODY;
					if (c->in_len == 0)
						break;
				}
				continue;
			}
		}
		else
		{
			k = recv(c->fd, c->in + c->in_got, c->in_len - c->in_got, 0);
			if (k > 0)
			{
				c->in_got += (size_t) k;
				if (c->in_got == c->in_len)
					break;
				continue;
			}
		}
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (k < 0 && errno == EINTR)
			continue;
		return -1;				/* EOF or a socket error */
	}
	c->in[c->in_len] = '\0';
	return 1;
}

/* open connections for waiting requests while the window has room */
static void
r1_many_fill(R1Many *m)
{
	for (int i = 0; i < m->window && m->next < m->n; i++)
	{
		R1Conn	   *c = &m->conns[i];
		size_t		len;

		if (c->fd >= 0)
			continue;
		while (m->next < m->n && m->bodies[m->next] == NULL)
			m->next++;
		if (m->next >= m->n)
			break;
		if (m->admit)
		{
			R1Admit		a = m->admit(m->next, m->n_open, m->admit_arg);

			if (a == R1_ADMIT_LATER && m->n_open > 0)
				break;			/* again when one of ours finishes */
			if (a != R1_ADMIT_SEND)
			{
				pfree(m->bodies[m->next]);
				m->bodies[m->next] = NULL;
				m->refused[m->refused_tail++] = m->next;
				m->next++;
				m->remaining--;
				i--;			/* this connection slot is still free */
				continue;
			}
		}
		len = m->lens[m->next];
		memset(c, 0, sizeof(*c));
		c->fd = -1;				/* not 0: an ERROR below must not close stdin */
		c->index = m->next;
		c->out = MemoryContextAlloc(m->mcxt, len + R1_PROTO_HEADER_LEN);
		r1_proto_put_len((unsigned char *) c->out, len);
		memcpy(c->out + R1_PROTO_HEADER_LEN, m->bodies[m->next], len);
		c->out_len = len + R1_PROTO_HEADER_LEN;
		c->state = R1_CONN_SEND;
		/* the request text is not needed any more */
		pfree(m->bodies[m->next]);
		m->bodies[m->next] = NULL;
		m->next++;
		c->fd = r1_many_connect(m);
		m->n_open++;
		pg_atomic_fetch_add_u64(&r1_shared->requests, 1);
		r1_stats_count_request();
	}
}

R1Many *
r1_many_start(int n, char **bodies, size_t *lens, int window)
{
	R1Many	   *m = palloc0(sizeof(R1Many));

	m->mcxt = CurrentMemoryContext;
	m->n = n;
	m->bodies = bodies;
	m->lens = lens;
	m->window = Max(1, window);
	m->conns = palloc(sizeof(R1Conn) * m->window);
	for (int i = 0; i < m->window; i++)
		m->conns[i].fd = -1;
	for (int i = 0; i < n; i++)
		if (bodies[i] != NULL)
			m->remaining++;
	m->cb.func = r1_many_close_all;
	m->cb.arg = m;
	MemoryContextRegisterResetCallback(m->mcxt, &m->cb);
	return m;
}

void
r1_many_set_admit(R1Many *m, R1ManyAdmit admit, void *arg)
{
	m->admit = admit;
	m->admit_arg = arg;
	if (m->refused == NULL)
		m->refused = MemoryContextAlloc(m->mcxt, sizeof(int) * Max(m->n, 1));
}

int
r1_many_next(R1Many *m, Jsonb **resp)
{
	*resp = NULL;
	if (m->refused_head < m->refused_tail)
		return m->refused[m->refused_head++];
	if (m->remaining == 0)
		return -1;
	r1_many_fill(m);
	if (m->refused_head < m->refused_tail)
		return m->refused[m->refused_head++];
	if (m->remaining == 0)
		return -1;
	for (;;)
	{
		WaitEventSet *set;
		WaitEvent  *events;
		int			nev;
		int			done_slot = -1;

		/* progress first: a fresh connection can usually send at once */
		for (int i = 0; i < m->window && done_slot < 0; i++)
		{
			R1Conn	   *c = &m->conns[i];
			int			rc;

			if (c->fd < 0)
				continue;
			rc = r1_conn_progress(m, c);
			if (rc < 0)
				r1_host_lost(m->generation, false);
			if (rc > 0)
				done_slot = i;
		}
		if (done_slot >= 0)
		{
			R1Conn	   *c = &m->conns[done_slot];
			int			index = c->index;

			close(c->fd);
			c->fd = -1;
			m->n_open--;
			m->remaining--;
			*resp = r1_parse_response_row(c->in);
			pfree(c->in);
			c->in = NULL;
			return index;
		}

		/* wait for any socket (or the latch), then check for interrupts */
		set = CreateWaitEventSet(CurrentMemoryContext, m->n_open + 2);
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (int i = 0; i < m->window; i++)
			if (m->conns[i].fd >= 0)
				AddWaitEventToSet(set, m->conns[i].state == R1_CONN_SEND ?
								  WL_SOCKET_WRITEABLE : WL_SOCKET_READABLE,
								  m->conns[i].fd, NULL, NULL);
		events = palloc(sizeof(WaitEvent) * (m->n_open + 2));
		nev = WaitEventSetWait(set, -1L, events, m->n_open + 2, PG_WAIT_EXTENSION);
		for (int i = 0; i < nev; i++)
			if (events[i].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
		FreeWaitEventSet(set);
		pfree(events);
		CHECK_FOR_INTERRUPTS();
	}
}
