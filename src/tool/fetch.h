/*
 * fetch.h - HTTP(S) transfers of `r1 pull` (libcurl; digests with libcrypto).
 *
 * Two operations: GET a small document (an API's JSON, a manifest) into
 * memory, and GET a file to disk under a temporary name, checked against its
 * size and digest while it streams, then fsynced and renamed into place.  A
 * temporary file left by an interrupted transfer is resumed with a Range
 * request (206 appends, 200 starts again).  Redirects are followed (at most
 * R1_FETCH_MAX_REDIRECTS, http and https only); a bearer token is sent to the
 * first host only (libcurl's rule for a custom Authorization header).  A
 * connection that delivers under 1 KiB/s for R1_PULL_STALL_S seconds (default
 * 60) is dropped.
 *
 * Only bin/r1 links this (-lcurl -lcrypto), never the engine library or the
 * extension.
 */
#ifndef R1_FETCH_H
#define R1_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define R1_FETCH_MAX_REDIRECTS 10

/* what a server said when a transfer did not succeed */
typedef struct r1_http_reply
{
	long		status;			/* final HTTP status; 0 when none came */
	int			unreachable;	/* no connection at all (DNS, refused, connect
								 * timeout) */
	char		error_code[64]; /* X-Error-Code header (the Hugging Face hub),
								 * or "" */
	char		error_message[256]; /* X-Error-Message header or a JSON body's
									 * "error", or "" */
} r1_http_reply;

/* digests a file is checked against */
typedef enum r1_digest_kind
{
	R1_DIGEST_SHA256,			/* sha256 of the content (LFS files, Ollama
								 * blobs) */
	R1_DIGEST_GIT_SHA1			/* git blob id: sha1("blob <size>\0" +
								 * content) */
} r1_digest_kind;

/* one file to download */
typedef struct r1_fetch_file
{
	/* in */
	const char *url;
	const char *bearer;			/* Authorization: Bearer ..., or NULL */
	const char *label;			/* name shown in progress and errors */
	const char *dest;			/* final path: appears only when verified */
	const char *partial;		/* temporary path, kept for a resume */
	int64_t		size;			/* expected bytes */
	r1_digest_kind kind;
	const char *digest;			/* expected digest, lower-case hex */
	/* out */
	int			resumed;		/* the transfer continued a partial file */
	char		sha256[65];		/* sha256 of the content, hex */
} r1_fetch_file;

int			r1_http_init(r1_error *err);
void		r1_http_cleanup(void);

/*
 * GET url into a NUL-terminated heap buffer.  Non-2xx statuses and transfer
 * errors return -1 with reply filled and a generic message in err; callers
 * that know what a status means there say it better.
 */
int			r1_http_get(const char *url, const char *bearer, const char *accept,
						char **body, size_t *len, r1_http_reply *reply, r1_error *err);

/* download f->url to f->dest as described above */
int			r1_fetch(r1_fetch_file *f, r1_http_reply *reply, r1_error *err);

/*
 * Digest of a file on disk: hex of kind into hex (65 bytes), and the sha256
 * into sha256 (65 bytes, may be NULL).
 */
int			r1_digest_file(const char *path, r1_digest_kind kind, char *hex, char *sha256,
						   r1_error *err);

/* 1 when stderr is a terminal: a live progress line instead of JSON lines */
int			r1_fetch_tty(void);

/* "1.5 GB" style; buf of 16 bytes */
const char *r1_human_bytes(double b, char *buf);

#endif							/* R1_FETCH_H */
