/*
 * client.h - a backend's side of the engine host's socket protocol
 * (src/serve/protocol.h).
 */
#ifndef R1_CLIENT_H
#define R1_CLIENT_H

#include "utils/jsonb.h"

/*
 * Send one request (JSON text, UTF-8) and return the parsed response of a
 * successful call.  (The backend does not link jansson: its json_object
 * would collide with PostgreSQL's own; responses are parsed as jsonb.)  An
 * error response, an engine that is not available or a host that dies during
 * the call raise an ERROR; so do query cancel, statement_timeout and
 * termination, which close the connection and so cancel the request.
 *
 * With soft = true (r1_status), an engine that is not ready or goes away
 * returns NULL instead of raising an ERROR.
 */
extern Jsonb *r1_call(const char *request, size_t len, bool soft);

/*
 * Pieces of r1_call for clients with many requests in flight (client_many.c).
 * r1_wait_ready waits for a ready engine (false only in soft mode);
 * r1_connect returns a non-blocking socket connected to the host, or -1;
 * r1_host_lost raises the error for a host that went away.
 */
struct R1Shared;
extern bool r1_wait_ready(struct R1Shared *snap, bool soft);
extern int	r1_connect(void);
extern void r1_host_lost(uint32 generation, bool soft);
extern Jsonb *r1_parse_response(const char *resp);	/* a JSON object, or ERROR */
extern bool r1_response_ok(Jsonb *j);
extern void r1_raise_response(Jsonb *j) pg_attribute_noreturn();	/* an error response */

/* Members of a response object: false when missing or null. */
extern bool r1_json_get(Jsonb *j, const char *key, JsonbValue *out);
extern text *r1_json_text(Jsonb *j, const char *key);	/* NULL if not a string */
extern int64 r1_json_int(Jsonb *j, const char *key);	/* 0 if not a number */
extern double r1_json_float(Jsonb *j, const char *key);

/*
 * r1.model is GUC_SUPERUSER_ONLY: superusers and members of
 * pg_read_all_settings read it.  Other roles see no model_path in r1_status()
 * and "r1.model" in place of the path in the engine's load errors.
 */
extern bool r1_can_read_model_path(void);
extern char *r1_redact_model_path(const char *s, const char *path);

/*
 * r1_parse_response for one response among many (r1_reason_many): output
 * the database encoding cannot hold becomes an error response (22P05), so
 * the caller can make an error row of it instead of failing every prompt.
 */
extern Jsonb *r1_parse_response_row(const char *resp);

/*
 * r1_text_to_utf8 that returns NULL and sets *error ("SQLSTATE: message",
 * palloc'd) for text that is not valid in UTF-8 (SQL_ASCII bytes, a
 * character without a UTF-8 conversion) instead of raising it.
 */
extern char *r1_text_to_utf8_row(text *t, size_t *len, char **error);

/* Text in the database encoding <-> UTF-8 (palloc'd). */
extern char *r1_text_to_utf8(text *t, size_t *len);
extern text *r1_utf8_to_text(const char *s, size_t len);

#endif							/* R1_CLIENT_H */
