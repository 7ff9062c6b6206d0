/*
 * fetch.c - HTTP(S) transfers of `r1 pull`: documents into memory, files to
 * disk verified while they stream (see fetch.h).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "fetch.h"

#define USER_AGENT "r1/0.1 (r1_pg; libcurl)"
#define ERROR_BODY_MAX 4096

/* ---------- digests ---------- */

typedef struct digest
{
	EVP_MD_CTX *main;			/* the digest the file is checked against */
	EVP_MD_CTX *sha256;			/* sha256 for the report (== main for SHA256) */
	r1_digest_kind kind;
} digest;

static int
digest_begin(digest *d, r1_digest_kind kind, int64_t size, r1_error *err)
{
	d->kind = kind;
	d->main = EVP_MD_CTX_new();
	d->sha256 = kind == R1_DIGEST_SHA256 ? d->main : EVP_MD_CTX_new();
	if (!d->main || !d->sha256)
		return r1_fail(err, "out of memory");
	if (kind == R1_DIGEST_SHA256)
		return EVP_DigestInit_ex(d->main, EVP_sha256(), NULL) == 1 ? 0 :
			r1_fail(err, "libcrypto: cannot start sha256");
	if (EVP_DigestInit_ex(d->main, EVP_sha1(), NULL) != 1 ||
		EVP_DigestInit_ex(d->sha256, EVP_sha256(), NULL) != 1)
		return r1_fail(err, "libcrypto: cannot start sha1/sha256");
	{
		char		hdr[64];
		int			n = snprintf(hdr, sizeof(hdr), "blob %" PRId64, size);

		/* git hashes "blob <size>" and its NUL terminator before the content */
		EVP_DigestUpdate(d->main, hdr, (size_t) n + 1);
	}
	return 0;
}

static void
digest_update(digest *d, const void *p, size_t n)
{
	EVP_DigestUpdate(d->main, p, n);
	if (d->sha256 != d->main)
		EVP_DigestUpdate(d->sha256, p, n);
}

static void
to_hex(const unsigned char *b, unsigned n, char *hex)
{
	for (unsigned i = 0; i < n; i++)
		sprintf(hex + 2 * i, "%02x", b[i]);
	hex[2 * n] = '\0';
}

/* finish: hex of the main digest and of the sha256 (either may be NULL) */
static void
digest_end(digest *d, char *hex, char *sha256)
{
	unsigned char b[EVP_MAX_MD_SIZE];
	unsigned	n;

	if (d->main)
	{
		EVP_DigestFinal_ex(d->main, b, &n);
		if (hex)
			to_hex(b, n, hex);
		if (sha256 && d->sha256 == d->main)
			to_hex(b, n, sha256);
	}
	if (d->sha256 && d->sha256 != d->main)
	{
		EVP_DigestFinal_ex(d->sha256, b, &n);
		if (sha256)
			to_hex(b, n, sha256);
		EVP_MD_CTX_free(d->sha256);
	}
	EVP_MD_CTX_free(d->main);
	d->main = d->sha256 = NULL;
}

static void
digest_free(digest *d)
{
	if (d->sha256 && d->sha256 != d->main)
		EVP_MD_CTX_free(d->sha256);
	EVP_MD_CTX_free(d->main);
	d->main = d->sha256 = NULL;
}

/* feed the first n bytes of fd (from offset 0) to d */
static int
digest_fd(digest *d, int fd, int64_t n, const char *path, r1_error *err)
{
	static char buf[1 << 20];
	int64_t		done = 0;

	if (lseek(fd, 0, SEEK_SET) < 0)
		return r1_fail(err, "%s: cannot seek: %s", path, strerror(errno));
	while (done < n)
	{
		size_t		want = n - done < (int64_t) sizeof(buf) ? (size_t) (n - done) : sizeof(buf);
		ssize_t		got = read(fd, buf, want);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return r1_fail(err, "%s: cannot read: %s", path, got < 0 ? strerror(errno) : "file shrank");
		digest_update(d, buf, (size_t) got);
		done += got;
	}
	return 0;
}

int
r1_digest_file(const char *path, r1_digest_kind kind, char *hex, char *sha256, r1_error *err)
{
	digest		d = {0};
	struct stat sb;
	int			fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return r1_fail(err, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &sb) != 0 || digest_begin(&d, kind, sb.st_size, err) != 0 ||
		digest_fd(&d, fd, sb.st_size, path, err) != 0)
	{
		digest_free(&d);
		close(fd);
		return -1;
	}
	close(fd);
	digest_end(&d, hex, sha256);
	return 0;
}

/* ---------- progress ---------- */

int
r1_fetch_tty(void)
{
	return isatty(2);
}

const char *
r1_human_bytes(double b, char *buf)
{
	static const char *unit[] = {"B", "kB", "MB", "GB", "TB"};
	int			u = 0;

	while (b >= 1000 && u < 4)
	{
		b /= 1000;
		u++;
	}
	snprintf(buf, 16, u ? "%.1f %s" : "%.0f %s", b, unit[u]);
	return buf;
}

/* ---------- one transfer ---------- */

typedef struct xfer
{
	CURL	   *curl;
	/* a document into memory */
	char	   *mem;
	size_t		mem_len,
				mem_cap,
				mem_max;
	/* a file */
	r1_fetch_file *f;
	int			fd;
	int64_t		offset;			/* bytes already in the partial file at the
								 * start */
	int64_t		written;		/* bytes in the partial file now */
	digest		d;
	int			started;		/* the first body byte of the final response
								 * came */
	int			error_body;		/* the final response is an error: body to
								 * err_buf */
	char		err_buf[ERROR_BODY_MAX + 1];
	size_t		err_len;
	int			write_errno;	/* a failed write(2) */
	char		fail[256];		/* why the write callback stopped the transfer */
	/* headers of the current response */
	int64_t		range_start;	/* Content-Range start, -1 if none */
	char		error_code[64];
	char		error_message[256];
	/* progress */
	int			tty;
	double		t0,
				t_shown;
} xfer;

static void
copy_header_value(char *dst, size_t cap, const char *v, size_t n)
{
	while (n && isspace((unsigned char) *v))
		v++, n--;
	while (n && isspace((unsigned char) v[n - 1]))
		n--;
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static size_t
on_header(char *p, size_t size, size_t nmemb, void *ud)
{
	xfer	   *x = ud;
	size_t		n = size * nmemb;

	if (n >= 5 && strncmp(p, "HTTP/", 5) == 0)
	{
		/* a new response (after a redirect): forget the last one's headers */
		x->range_start = -1;
		x->error_code[0] = x->error_message[0] = '\0';
	}
	else if (n > 14 && strncasecmp(p, "Content-Range:", 14) == 0)
	{
		const char *v = p + 14;

		while (*v == ' ')
			v++;
		if (strncmp(v, "bytes ", 6) == 0)
			x->range_start = strtoll(v + 6, NULL, 10);
	}
	else if (n > 13 && strncasecmp(p, "X-Error-Code:", 13) == 0)
		copy_header_value(x->error_code, sizeof(x->error_code), p + 13, n - 13);
	else if (n > 16 && strncasecmp(p, "X-Error-Message:", 16) == 0)
		copy_header_value(x->error_message, sizeof(x->error_message), p + 16, n - 16);
	return n;
}

static size_t
on_body_mem(char *p, size_t size, size_t nmemb, void *ud)
{
	xfer	   *x = ud;
	size_t		n = size * nmemb;

	if (x->mem_len + n > x->mem_max)
	{
		snprintf(x->fail, sizeof(x->fail), "the response is larger than %zu bytes", x->mem_max);
		return 0;
	}
	if (x->mem_len + n + 1 > x->mem_cap)
	{
		size_t		cap = (x->mem_len + n + 1) * 2;
		char	   *m = realloc(x->mem, cap);

		if (!m)
		{
			snprintf(x->fail, sizeof(x->fail), "out of memory");
			return 0;
		}
		x->mem = m;
		x->mem_cap = cap;
	}
	memcpy(x->mem + x->mem_len, p, n);
	x->mem_len += n;
	x->mem[x->mem_len] = '\0';
	return n;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n)
	{
		ssize_t		w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t) w;
	}
	return 0;
}

static size_t
on_body_file(char *p, size_t size, size_t nmemb, void *ud)
{
	xfer	   *x = ud;
	size_t		n = size * nmemb;

	if (!x->started)
	{
		long		code = 0;

		x->started = 1;
		curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
		if (code == 206)
		{
			if (x->offset == 0 || x->range_start != x->offset)
			{
				snprintf(x->fail, sizeof(x->fail),
						 "the server answered a range request from byte %" PRId64
						 " with bytes from %" PRId64, x->offset, x->range_start);
				return 0;
			}
			x->f->resumed = 1;
		}
		else if (code == 200)
		{
			if (x->offset > 0)
			{
				/* the server ignored the Range: start again from zero */
				r1_error	err;

				digest_free(&x->d);
				if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0 ||
					digest_begin(&x->d, x->f->kind, x->f->size, &err) != 0)
				{
					snprintf(x->fail, sizeof(x->fail), "cannot restart %s: %s", x->f->partial, strerror(errno));
					return 0;
				}
				x->offset = x->written = 0;
			}
		}
		else
			x->error_body = 1;
	}
	if (x->error_body)
	{
		size_t		k = n < ERROR_BODY_MAX - x->err_len ? n : ERROR_BODY_MAX - x->err_len;

		memcpy(x->err_buf + x->err_len, p, k);
		x->err_len += k;
		x->err_buf[x->err_len] = '\0';
		return n;
	}
	if (x->written + (int64_t) n > x->f->size)
	{
		snprintf(x->fail, sizeof(x->fail), "the server sent more than the expected %" PRId64 " bytes",
				 x->f->size);
		return 0;
	}
	if (write_all(x->fd, p, n) != 0)
	{
		x->write_errno = errno;
		return 0;
	}
	digest_update(&x->d, p, n);
	x->written += n;
	return n;
}

static void
show_progress(xfer *x, int final)
{
	char		a[16],
				b[16],
				r[16],
				eta[32] = "";
	double		now = r1_now_ms();
	double		secs = (now - x->t0) / 1e3;
	double		rate = secs > 0 ? (x->written - x->offset) / secs : 0;
	int64_t		left = x->f->size - x->written;

	if (!final && now - x->t_shown < 200)
		return;
	x->t_shown = now;
	if (final)
		snprintf(eta, sizeof(eta), "done in %.0fs", secs);
	else if (rate > 0)
	{
		long		s = (long) (left / rate);

		snprintf(eta, sizeof(eta), "ETA %ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
	}
	fprintf(stderr, "\r\033[K%-32.32s %9s / %-9s %3.0f%%  %9s/s  %s%s",
			x->f->label, r1_human_bytes((double) x->written, a), r1_human_bytes((double) x->f->size, b),
			x->f->size ? 100.0 * x->written / x->f->size : 100.0,
			r1_human_bytes(rate, r), eta, final ? "\n" : "");
	fflush(stderr);
}

static int
on_xferinfo(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
	xfer	   *x = ud;

	if (x->tty && x->started && !x->error_body)
		show_progress(x, 0);
	return 0;
}

static long
stall_seconds(void)
{
	const char *s = getenv("R1_PULL_STALL_S");
	long		v = s ? strtol(s, NULL, 10) : 0;

	return v > 0 ? v : 60;
}

/* a curl handle with the settings every transfer shares */
static CURL *
new_handle(const char *url, const char *bearer, const char *accept, struct curl_slist **hdrs,
		   xfer *x, r1_error *err)
{
	CURL	   *c = curl_easy_init();
	char		line[8192];

	if (!c)
	{
		r1_fail(err, "cannot start libcurl");
		return NULL;
	}
	x->curl = c;
	x->range_start = -1;
	*hdrs = NULL;
	if (bearer && *bearer)
	{
		snprintf(line, sizeof(line), "Authorization: Bearer %s", bearer);
		*hdrs = curl_slist_append(*hdrs, line);
	}
	if (accept)
	{
		snprintf(line, sizeof(line), "Accept: %s", accept);
		*hdrs = curl_slist_append(*hdrs, line);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_USERAGENT, USER_AGENT);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long) R1_FETCH_MAX_REDIRECTS);

	/*
	 * CURLOPT_UNRESTRICTED_AUTH stays 0: the token never follows a redirect
	 * to another host
	 */
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall_seconds());
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	return c;
}

/* host of a URL, for messages */
static void
url_host(const char *url, char *host, size_t cap)
{
	const char *p = strstr(url, "://");
	size_t		n;

	p = p ? p + 3 : url;
	n = strcspn(p, "/?#");
	copy_header_value(host, cap, p, n);
}

/* reply from a finished (or failed) transfer; the error body's "error" string if JSON */
static void
fill_reply(xfer *x, CURLcode rc, const char *body, r1_http_reply *reply)
{
	memset(reply, 0, sizeof(*reply));
	curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &reply->status);
	reply->unreachable = rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_CONNECT ||
		rc == CURLE_COULDNT_RESOLVE_PROXY || (rc == CURLE_OPERATION_TIMEDOUT && reply->status == 0);
	snprintf(reply->error_code, sizeof(reply->error_code), "%s", x->error_code);
	snprintf(reply->error_message, sizeof(reply->error_message), "%s", x->error_message);
	if (!reply->error_message[0] && body && *body)
	{
		json_t	   *j = json_loads(body, 0, NULL);
		json_t	   *e = j ? json_object_get(j, "error") : NULL;

		/*
		 * the hub: {"error": "..."}; a registry: {"errors": [{"code",
		 * "message"}]}
		 */
		if (!json_is_string(e) && j)
		{
			json_t	   *es = json_object_get(j, "errors");

			e = json_is_array(es) ? json_object_get(json_array_get(es, 0), "message") : NULL;
		}
		if (json_is_string(e))
			snprintf(reply->error_message, sizeof(reply->error_message), "%s", json_string_value(e));
		json_decref(j);
	}
}

/* a transfer that failed below HTTP, in words */
static int
transport_error(const char *what, const char *url, CURLcode rc, const char *curl_msg, r1_error *err)
{
	char		host[256];

	url_host(url, host, sizeof(host));
	if (rc == CURLE_TOO_MANY_REDIRECTS)
		return r1_fail(err, "%s: more than %d redirects from %s", what, R1_FETCH_MAX_REDIRECTS, host);
	if (rc == CURLE_OPERATION_TIMEDOUT)
		return r1_fail(err, "%s: %s stalled (%s); run the pull again to resume", what, host,
					   curl_msg[0] ? curl_msg : curl_easy_strerror(rc));
	if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_CONNECT)
		return r1_fail(err, "%s: cannot reach %s (%s); check the network or the endpoint setting",
					   what, host, curl_msg[0] ? curl_msg : curl_easy_strerror(rc));
	return r1_fail(err, "%s: transfer from %s failed: %s", what, host,
				   curl_msg[0] ? curl_msg : curl_easy_strerror(rc));
}

int
r1_http_init(r1_error *err)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return r1_fail(err, "cannot initialise libcurl");
	return 0;
}

void
r1_http_cleanup(void)
{
	curl_global_cleanup();
}

int
r1_http_get(const char *url, const char *bearer, const char *accept,
			char **body, size_t *len, r1_http_reply *reply, r1_error *err)
{
	xfer		x;
	struct curl_slist *hdrs;
	char		curl_msg[CURL_ERROR_SIZE] = "";
	CURL	   *c;
	CURLcode	rc;

	memset(&x, 0, sizeof(x));
	*body = NULL;
	*len = 0;
	memset(reply, 0, sizeof(*reply));
	x.mem_max = 64 << 20;
	c = new_handle(url, bearer, accept, &hdrs, &x, err);
	if (!c)
		return -1;
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_msg);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body_mem);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
	rc = curl_easy_perform(c);
	fill_reply(&x, rc, x.mem, reply);
	curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	if (rc != CURLE_OK)
	{
		free(x.mem);
		if (x.fail[0])
			return r1_fail(err, "%s: %s", url, x.fail);
		return transport_error(url, url, rc, curl_msg, err);
	}
	if (reply->status < 200 || reply->status > 299)
	{
		free(x.mem);
		return r1_fail(err, "%s: HTTP %ld%s%s", url, reply->status,
					   reply->error_message[0] ? ": " : "", reply->error_message);
	}
	if (!x.mem)
		x.mem = calloc(1, 1);
	if (!x.mem)
		return r1_fail(err, "out of memory");
	*body = x.mem;
	*len = x.mem_len;
	return 0;
}

/* verify the complete partial file's digest, then fsync, close and rename it */
static int
finish_file(xfer *x, r1_error *err)
{
	r1_fetch_file *f = x->f;
	char		hex[65];

	digest_end(&x->d, hex, f->sha256);
	if (strcmp(hex, f->digest) != 0)
	{
		/* a corrupt file cannot be resumed: drop it */
		close(x->fd);
		x->fd = -1;
		unlink(f->partial);
		return r1_fail(err, "%s: checksum mismatch (%s %s expected, %s received); the download was "
					   "discarded, run the pull again", f->label,
					   f->kind == R1_DIGEST_SHA256 ? "sha256" : "git blob sha1", f->digest, hex);
	}
	if (fsync(x->fd) != 0)
		return r1_fail(err, "%s: cannot write: %s", f->partial, strerror(errno));
	if (close(x->fd) != 0)
	{
		x->fd = -1;
		return r1_fail(err, "%s: cannot write: %s", f->partial, strerror(errno));
	}
	x->fd = -1;
	if (rename(f->partial, f->dest) != 0)
		return r1_fail(err, "cannot rename %s to %s: %s", f->partial, f->dest, strerror(errno));
	return 0;
}

int
r1_fetch(r1_fetch_file *f, r1_http_reply *reply, r1_error *err)
{
	xfer		x;
	struct curl_slist *hdrs = NULL;
	char		curl_msg[CURL_ERROR_SIZE] = "";
	char		range[64];
	struct stat sb;
	CURL	   *c = NULL;
	CURLcode	rc;
	int			ret = -1;

	memset(&x, 0, sizeof(x));
	memset(reply, 0, sizeof(*reply));
	x.f = f;
	f->resumed = 0;
	f->sha256[0] = '\0';
	x.fd = open(f->partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (x.fd < 0)
		return r1_fail(err, "%s: cannot create: %s", f->partial, strerror(errno));
	if (flock(x.fd, LOCK_EX | LOCK_NB) != 0)
	{
		close(x.fd);
		return r1_fail(err, "%s: another r1 pull is downloading this file; wait for it", f->partial);
	}
	if (fstat(x.fd, &sb) != 0)
	{
		r1_fail(err, "%s: cannot stat: %s", f->partial, strerror(errno));
		goto out;
	}
	x.offset = S_ISREG(sb.st_mode) ? sb.st_size : 0;
	if (x.offset > f->size)
	{
		/* longer than the file can be: not ours to continue */
		if (ftruncate(x.fd, 0) != 0)
		{
			r1_fail(err, "%s: cannot truncate: %s", f->partial, strerror(errno));
			goto out;
		}
		x.offset = 0;
	}
	if (digest_begin(&x.d, f->kind, f->size, err) != 0 ||
		digest_fd(&x.d, x.fd, x.offset, f->partial, err) != 0)
		goto out;
	if (lseek(x.fd, x.offset, SEEK_SET) < 0)
	{
		r1_fail(err, "%s: cannot seek: %s", f->partial, strerror(errno));
		goto out;
	}
	x.written = x.offset;
	if (x.offset == f->size)
	{
		/* complete already (interrupted between the last byte and the rename) */
		f->resumed = x.offset > 0;
		ret = finish_file(&x, err);
		goto out;
	}
	c = new_handle(f->url, f->bearer, NULL, &hdrs, &x, err);
	if (!c)
		goto out;
	if (x.offset > 0)
	{
		snprintf(range, sizeof(range), "%" PRId64 "-", x.offset);
		curl_easy_setopt(c, CURLOPT_RANGE, range);
	}
	x.tty = r1_fetch_tty();
	x.t0 = r1_now_ms();
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_msg);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body_file);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
	rc = curl_easy_perform(c);
	fill_reply(&x, rc, x.err_buf, reply);
	if (x.tty && x.started && !x.error_body)
		show_progress(&x, rc == CURLE_OK && x.written == f->size);
	if (x.tty && x.started && !x.error_body && !(rc == CURLE_OK && x.written == f->size))
		fputc('\n', stderr);
	if (x.write_errno == ENOSPC || x.write_errno == EDQUOT)
		r1_fail(err, "%s: disk full writing %s after %" PRId64 " bytes (%s); free space (or pull into "
				"another --dir) and run the pull again to resume", f->label, f->partial, x.written,
				strerror(x.write_errno));
	else if (x.write_errno)
		r1_fail(err, "%s: cannot write %s: %s", f->label, f->partial, strerror(x.write_errno));
	else if (x.fail[0])
		r1_fail(err, "%s: %s", f->label, x.fail);
	else if (x.error_body || (rc == CURLE_OK && !x.started && reply->status >= 300))
		r1_fail(err, "%s: HTTP %ld from %s%s%s", f->label, reply->status, f->url,
				reply->error_message[0] ? ": " : "", reply->error_message);
	else if (rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_GOT_NOTHING ||
			 (rc == CURLE_OPERATION_TIMEDOUT && x.started))
		r1_fail(err, "%s: download interrupted after %" PRId64 " of %" PRId64 " bytes (%s); run the "
				"pull again to resume", f->label, x.written, f->size,
				curl_msg[0] ? curl_msg : curl_easy_strerror(rc));
	else if (rc != CURLE_OK)
		transport_error(f->label, f->url, rc, curl_msg, err);
	else if (x.written < f->size)
		r1_fail(err, "%s: truncated response: %" PRId64 " of %" PRId64 " bytes; run the pull again to "
				"resume", f->label, x.written, f->size);
	else
		ret = finish_file(&x, err);

	/*
	 * a 416 means the partial file does not fit the server's: start again
	 * next time
	 */
	if (ret != 0 && reply->status == 416)
		unlink(f->partial);
out:
	/* leave no empty partial file behind a refused request */
	if (ret != 0 && x.fd >= 0 && fstat(x.fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 0)
		unlink(f->partial);
	if (c)
		curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	digest_free(&x.d);
	if (x.fd >= 0)
		close(x.fd);
	return ret;
}
