/*
 * client.c - backends talk to the engine host directly over its UNIX socket
 * (beside the server's own, see shmem.h), one connection per call.
 *
 * Every wait is WaitLatchOrSocket() followed by CHECK_FOR_INTERRUPTS(), so
 * pg_cancel_backend(), statement_timeout and pg_terminate_backend() end the
 * call at once; the connection is then closed, which the host takes as a
 * cancel: the sequence leaves the batch at the next step.  A host that dies
 * shows up as EOF, reported with the worker's reason from shared memory.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "catalog/pg_authid.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "serve/protocol.h"
#include "client.h"
#include "shmem.h"

#define R1_POLL_MS				20	/* while the engine loads or restarts */
#define R1_START_WAIT_MS		10000	/* for a worker that has not started */
#define R1_CONNECT_RETRY_MS		5000	/* for a host that is ready but not
										 * there */
#define R1_HOST_LOST_WAIT_MS	1000	/* for the worker to notice a dead
										 * host */

static void
r1_sleep(long ms)
{
	int			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   ms, PG_WAIT_EXTENSION);

	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

static void
r1_wait_socket(int fd, int event)
{
	int			rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | event,
									   fd, -1L, PG_WAIT_EXTENSION);

	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

bool
r1_can_read_model_path(void)
{
	return superuser() || has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_SETTINGS);
}

/* s with every occurrence of path replaced by "r1.model" (palloc'd) */
char *
r1_redact_model_path(const char *s, const char *path)
{
	StringInfoData out;
	size_t		plen = strlen(path);
	const char *hit;

	if (plen == 0)
		return pstrdup(s);
	initStringInfo(&out);
	while ((hit = strstr(s, path)) != NULL)
	{
		appendBinaryStringInfo(&out, s, (int) (hit - s));
		appendStringInfoString(&out, "r1.model");
		s = hit + plen;
	}
	appendStringInfoString(&out, s);
	return out.data;
}

static void
r1_not_loaded(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("r1_pg is not loaded"),
			 errdetail("The r1 engine runs only when r1_pg is in shared_preload_libraries."),
			 errhint("Add r1_pg to shared_preload_libraries and restart the server.")));
}

/*
 * Wait until the engine is ready (it may be loading or restarting) and
 * return its state; raise the reason when it cannot become ready.
 */
bool
r1_wait_ready(R1Shared *snap, bool soft)
{
	TimestampTz start = GetCurrentTimestamp();

	if (r1_shared == NULL)
	{
		if (soft)
			return false;
		r1_not_loaded();
	}
	for (;;)
	{
		r1_shmem_snapshot(snap);
		switch (snap->state)
		{
			case R1_STATE_READY:
				return true;
			case R1_STATE_NOT_CONFIGURED:
				if (soft)
					return false;
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("no model configured for r1_pg"),
						 errdetail("r1.model is not set."),
						 errhint("Set r1.model to a DeepSeek-R1-Distill-Qwen checkpoint directory with ALTER SYSTEM, then run SELECT pg_reload_conf().")));
				break;
			case R1_STATE_FAILED:
				if (soft)
					return false;
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 r1_can_read_model_path() ?
						 errmsg("r1 engine could not load model \"%s\"", snap->model_path) :
						 errmsg("r1 engine could not load its model (r1.model)"),
						 errdetail("%s", r1_can_read_model_path() ? snap->reason :
								   r1_redact_model_path(snap->reason, snap->model_path)),
						 errhint("Fix the model files or set r1.model to a valid checkpoint directory, then run SELECT pg_reload_conf().")));
				break;
			case R1_STATE_NO_DEVICE:
				if (soft)
					return false;
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("r1 engine has no usable GPU"),
						 errdetail("%s", r1_can_read_model_path() ? snap->reason :
								   r1_redact_model_path(snap->reason, snap->model_path)),
						 errhint("Set r1.device to 'auto' or 'cpu', or fix the GPU setup, then run SELECT pg_reload_conf().")));
				break;
			case R1_STATE_STARTING:
				if (soft)
					return false;
				if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), R1_START_WAIT_MS))
					ereport(ERROR,
							(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
							 errmsg("r1 engine worker is not running"),
							 errdetail("%s", snap->reason[0] ? snap->reason : "The worker has not started."),
							 errhint("Check the server log for messages from the \"r1 engine\" worker.")));
				break;
			case R1_STATE_LOADING:
			case R1_STATE_RESTARTING:
				if (soft)
					return false;
				break;
		}
		r1_sleep(R1_POLL_MS);
	}
}

/* Connect to the host; -1 (errno set) when it is not there. */
int
r1_connect(void)
{
	struct sockaddr_un addr;
	int			fd;

	memset(&addr, 0, sizeof(addr));
	addr.sun_family = AF_UNIX;
	SpinLockAcquire(&r1_shared->mutex);
	strlcpy(addr.sun_path, r1_shared->socket_path[0] ? r1_shared->socket_path : R1_SOCKET_FALLBACK,
			sizeof(addr.sun_path));
	SpinLockRelease(&r1_shared->mutex);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create a socket for the r1 engine: %m")));
	for (;;)
	{
		if (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) == 0)
			return fd;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
		{
			/* the host's backlog is full: it is busy accepting */
			r1_sleep(1);
			continue;
		}
		close(fd);
		return -1;
	}
}

/* The host went away during the call: report why, as the worker saw it. */
void
r1_host_lost(uint32 generation, bool soft)
{
	TimestampTz start = GetCurrentTimestamp();
	R1Shared	snap;

	if (soft)
		return;
	for (;;)
	{
		r1_shmem_snapshot(&snap);
		if (snap.host_generation != generation || snap.state != R1_STATE_READY)
			break;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), R1_HOST_LOST_WAIT_MS))
			break;
		r1_sleep(R1_POLL_MS);
	}
	pg_atomic_fetch_add_u64(&r1_shared->errors, 1);
	if (snap.reload_stopped_generation == generation)
		ereport(ERROR,
				(errcode(ERRCODE_OPERATOR_INTERVENTION),
				 errmsg("r1 engine host was stopped for a configuration change during the request"),
				 errdetail("An engine setting (r1.model, r1.device, ...) changed and the request did not finish within r1.reload_timeout."),
				 errhint("Run the call again: it runs on the new model.")));
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("r1 engine host terminated during the request"),
			 errdetail("%s", snap.state != R1_STATE_READY && snap.reason[0] ? snap.reason :
					   "The engine host closed the connection."),
			 errhint("The engine host is restarted automatically; run the call again.")));
}

/* Returns false when the host went away. */
static bool
r1_send_all(int fd, const char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n > 0)
		{
			buf += n;
			len -= (size_t) n;
		}
		else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			r1_wait_socket(fd, WL_SOCKET_WRITEABLE);
		else if (n < 0 && errno == EINTR)
			CHECK_FOR_INTERRUPTS();
		else
			return false;
	}
	return true;
}

/* Fill buf[len]; false when the host went away first. */
static bool
r1_recv_all(int fd, char *buf, size_t len)
{
	while (len > 0)
	{
		ssize_t		n = recv(fd, buf, len, 0);

		if (n > 0)
		{
			buf += n;
			len -= (size_t) n;
		}
		else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			r1_wait_socket(fd, WL_SOCKET_READABLE);
		else if (n < 0 && errno == EINTR)
			CHECK_FOR_INTERRUPTS();
		else
			return false;
	}
	return true;
}

/*
 * One round trip.  Returns the response body (palloc'd, NUL-terminated), or
 * NULL in soft mode when the host is not there.
 */
static char *
r1_round_trip(const char *body, size_t len, size_t *resp_len, bool soft)
{
	R1Shared	snap;
	TimestampTz start = GetCurrentTimestamp();
	int			fd;
	char	   *volatile resp = NULL;
	volatile bool lost = false;
	uint32		generation;

	/* connect to a ready host, riding out a restart */
	for (;;)
	{
		if (!r1_wait_ready(&snap, soft))
			return NULL;
		fd = r1_connect();
		if (fd >= 0)
			break;
		if (soft || TimestampDifferenceExceeds(start, GetCurrentTimestamp(), R1_CONNECT_RETRY_MS))
		{
			if (soft)
				return NULL;
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("could not connect to the r1 engine host: %m"),
					 errdetail("The engine reports state \"%s\".", r1_state_name(snap.state)),
					 errhint("Check the server log for messages from the \"r1 engine\" worker.")));
		}
		r1_sleep(R1_POLL_MS);
	}
	generation = snap.host_generation;

	/*
	 * from here on, any ERROR (a cancel too) closes the socket: that cancels
	 * the request
	 */
	PG_TRY();
	{
		unsigned char hdr[R1_PROTO_HEADER_LEN];
		size_t		n;

		r1_proto_put_len(hdr, len);
		if (!r1_send_all(fd, (const char *) hdr, R1_PROTO_HEADER_LEN) || !r1_send_all(fd, body, len) ||
			!r1_recv_all(fd, (char *) hdr, R1_PROTO_HEADER_LEN))
			lost = true;
		else
		{
			n = r1_proto_get_len(hdr);
			if (n > R1_PROTO_MAX_RESPONSE)
				ereport(ERROR,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg("r1 engine host sent an oversized response (%zu bytes)", n)));
			resp = palloc_extended(n + 1, MCXT_ALLOC_HUGE);
			if (!r1_recv_all(fd, resp, n))
				lost = true;
			else
			{
				resp[n] = '\0';
				*resp_len = n;
			}
		}
	}
	PG_FINALLY();
	{
		close(fd);
	}
	PG_END_TRY();

	if (lost)
	{
		r1_host_lost(generation, soft);
		return NULL;
	}
	return resp;
}

static int
r1_sqlstate(const char *code)
{
	if (code == NULL || strlen(code) != 5)
		return ERRCODE_INTERNAL_ERROR;
	return MAKE_SQLSTATE(code[0], code[1], code[2], code[3], code[4]);
}

/*
 * Parse a response.  In a database whose encoding lacks a character of the
 * model's output, say so plainly (SQLSTATE 22P05) rather than with the JSON
 * parser's words about Unicode escapes.
 */
static Jsonb *
jsonb_from_response(const char *resp)
{
	MemoryContext ctx = CurrentMemoryContext;
	Jsonb	   *volatile j = NULL;

	PG_TRY();
	{
		j = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(resp)));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(ctx);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_UNTRANSLATABLE_CHARACTER || GetDatabaseEncoding() == PG_UTF8)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("the model's output has a character that encoding \"%s\" cannot represent",
						GetDatabaseEncodingName()),
				 edata->detail ? errdetail("%s", edata->detail) : 0,
				 errhint("Call the model from a UTF8 database, or ask it for output in characters of %s.",
						 GetDatabaseEncodingName())));
	}
	PG_END_TRY();
	return j;
}

Jsonb *
r1_parse_response(const char *resp)
{
	/* the response is ASCII; \u escapes become the server encoding */
	Jsonb	   *j = jsonb_from_response(resp);

	if (!JB_ROOT_IS_OBJECT(j))
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("r1 engine host sent a malformed response")));
	return j;
}

Jsonb *
r1_parse_response_row(const char *resp)
{
	MemoryContext ctx = CurrentMemoryContext;
	Jsonb	   *volatile j = NULL;

	PG_TRY();
	{
		j = r1_parse_response(resp);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		StringInfoData e;

		MemoryContextSwitchTo(ctx);
		edata = CopyErrorData();
		/* only the conversion error: it has no side effects to undo */
		if (edata->sqlerrcode != ERRCODE_UNTRANSLATABLE_CHARACTER)
			PG_RE_THROW();
		FlushErrorState();
		initStringInfo(&e);
		appendStringInfoString(&e, "{\"ok\":false,\"code\":\"22P05\",\"error\":");
		escape_json(&e, edata->message);
		if (edata->hint)
		{
			appendStringInfoString(&e, ",\"hint\":");
			escape_json(&e, edata->hint);
		}
		appendStringInfoChar(&e, '}');
		FreeErrorData(edata);
		j = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(e.data)));
	}
	PG_END_TRY();
	return j;
}

bool
r1_response_ok(Jsonb *j)
{
	JsonbValue	ok;

	return r1_json_get(j, "ok", &ok) && ok.type == jbvBool && ok.val.boolean;
}

/* the setting of each engine option the host may name (protocol.h: "options") */
static const struct
{
	const char *option;
	const char *setting;
}			r1_option_settings[] = {
	{"max_ctx", "r1.max_ctx"},
	{"max_queued", "r1.max_queued"},
	{"kv_memory", "r1.kv_memory"},
	{"gpu_memory_fraction", "r1.gpu_memory_fraction"},
	{"queue_timeout", "r1.queue_timeout"},
};

/*
 * A detail or hint of the host as a user of the extension reads it: the
 * engine options it names (listed in the response's "options", spelt the
 * host's way, --max-ctx) become the settings that set them (r1.max_ctx).
 */
static char *
r1_host_text(Jsonb *j, text *t)
{
	JsonbValue	options;
	char	   *s;

	if (t == NULL)
		return NULL;
	s = text_to_cstring(t);
	if (!r1_json_get(j, "options", &options) || options.type != jbvBinary)
		return s;
	for (int i = 0; i < lengthof(r1_option_settings); i++)
	{
		const char *spelling = r1_proto_option_spelling(r1_option_settings[i].option);
		JsonbValue	name;
		StringInfoData out;
		const char *p;
		const char *hit;

		name.type = jbvString;
		name.val.string.val = (char *) r1_option_settings[i].option;
		name.val.string.len = strlen(r1_option_settings[i].option);
		if (spelling == NULL ||
			findJsonbValueFromContainer(options.val.binary.data, JB_FARRAY, &name) == NULL)
			continue;
		initStringInfo(&out);
		for (p = s; (hit = strstr(p, spelling)) != NULL; p = hit + strlen(spelling))
		{
			appendBinaryStringInfo(&out, p, hit - p);
			appendStringInfoString(&out, r1_option_settings[i].setting);
		}
		appendStringInfoString(&out, p);
		s = out.data;
	}
	return s;
}

void
r1_raise_response(Jsonb *j)
{
	text	   *code = r1_json_text(j, "code");
	text	   *error = r1_json_text(j, "error");
	char	   *detail = r1_host_text(j, r1_json_text(j, "detail"));
	char	   *hint = r1_host_text(j, r1_json_text(j, "hint"));

	pg_atomic_fetch_add_u64(&r1_shared->errors, 1);
	ereport(ERROR,
			(errcode(r1_sqlstate(code ? text_to_cstring(code) : NULL)),
			 errmsg("%s", error ? text_to_cstring(error) : "r1 engine error"),
			 detail ? errdetail("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

Jsonb *
r1_call(const char *request, size_t len, bool soft)
{
	char	   *resp;
	size_t		resp_len = 0;
	Jsonb	   *j;

	resp = r1_round_trip(request, len, &resp_len, soft);
	if (resp == NULL)
		return NULL;
	j = r1_parse_response(resp);
	pfree(resp);
	if (r1_response_ok(j))
		return j;
	if (soft)
		return NULL;
	r1_raise_response(j);
	return NULL;				/* keep the compiler quiet */
}

bool
r1_json_get(Jsonb *j, const char *key, JsonbValue *out)
{
	if (getKeyJsonValueFromContainer(&j->root, key, strlen(key), out) == NULL)
		return false;
	return out->type != jbvNull;
}

text *
r1_json_text(Jsonb *j, const char *key)
{
	JsonbValue	v;

	if (!r1_json_get(j, key, &v) || v.type != jbvString)
		return NULL;
	return cstring_to_text_with_len(v.val.string.val, v.val.string.len);
}

int64
r1_json_int(Jsonb *j, const char *key)
{
	JsonbValue	v;

	if (!r1_json_get(j, key, &v) || v.type != jbvNumeric)
		return 0;
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v.val.numeric)));
}

double
r1_json_float(Jsonb *j, const char *key)
{
	JsonbValue	v;

	if (!r1_json_get(j, key, &v) || v.type != jbvNumeric)
		return 0;
	return DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v.val.numeric)));
}

char *
r1_text_to_utf8(text *t, size_t *len)
{
	char	   *s = text_to_cstring(t);
	size_t		n = strlen(s);
	char	   *u;

	if (GetDatabaseEncoding() == PG_UTF8)
	{
		*len = n;
		return s;
	}
	u = pg_server_to_any(s, (int) n, PG_UTF8);
	n = strlen(u);
	/* SQL_ASCII passes bytes through unchecked */
	if (!pg_verify_mbstr(PG_UTF8, u, (int) n, true))
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("text is not valid UTF-8"),
				 errdetail("The r1 engine works on UTF-8; the database encoding is %s.",
						   GetDatabaseEncodingName()),
				 errhint("Use a UTF8 database, or pass text that converts to UTF-8.")));
	*len = n;
	return u;
}

char *
r1_text_to_utf8_row(text *t, size_t *len, char **error)
{
	MemoryContext ctx = CurrentMemoryContext;
	char	   *volatile u = NULL;

	*error = NULL;
	PG_TRY();
	{
		u = r1_text_to_utf8(t, len);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(ctx);
		edata = CopyErrorData();
		/* conversion and validation errors only (class 22): nothing to undo */
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_DATA_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		*error = psprintf("%s: %s", unpack_sql_state(edata->sqlerrcode), edata->message);
		FreeErrorData(edata);
		u = NULL;
	}
	PG_END_TRY();
	return u;
}

text *
r1_utf8_to_text(const char *s, size_t len)
{
	char	   *c;

	if (GetDatabaseEncoding() == PG_UTF8)
		return cstring_to_text_with_len(s, (int) len);
	c = pg_any_to_server(s, (int) len, PG_UTF8);
	return cstring_to_text(c);
}
