/*
 * fuzz_common.h - helpers shared by the libFuzzer targets in test/fuzz/:
 * a private temporary directory per process (for the loaders that take a
 * path), a strict UTF-8 check independent of the engine's, and a check that
 * aborts with a message (libFuzzer then saves the input as a crash).
 */
#ifndef R1_FUZZ_COMMON_H
#define R1_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_CHECK(cond, ...) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
			abort(); \
		} \
	} while (0)

static char fuzz_tmpdir[256];
static char fuzz_written[8][64];	/* names written into it, removed at exit */
static int	fuzz_n_written;

static __attribute__((unused)) void
fuzz_tmpdir_cleanup(void)
{
	char		path[512];

	if (!fuzz_tmpdir[0])
		return;
	for (int i = 0; i < fuzz_n_written; i++)
	{
		snprintf(path, sizeof(path), "%s/%s", fuzz_tmpdir, fuzz_written[i]);
		unlink(path);
	}
	rmdir(fuzz_tmpdir);
	fuzz_tmpdir[0] = '\0';
}

/* Create (once) a private directory: $TMPDIR, else /dev/shm, else /tmp. */
static __attribute__((unused)) const char *
fuzz_tmpdir_get(void)
{
	if (!fuzz_tmpdir[0])
	{
		const char *base = getenv("TMPDIR");

		if (!base || !*base)
			base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
		snprintf(fuzz_tmpdir, sizeof(fuzz_tmpdir), "%s/r1-fuzz-XXXXXX", base);
		if (!mkdtemp(fuzz_tmpdir))
		{
			perror("mkdtemp");
			abort();
		}
		atexit(fuzz_tmpdir_cleanup);
	}
	return fuzz_tmpdir;
}

/* Write data to DIR/name; returns the path (static buffer). */
static __attribute__((unused)) const char *
fuzz_write_file(const char *name, const uint8_t *data, size_t size)
{
	static char path[512];
	FILE	   *f;
	int			known = 0;

	for (int i = 0; i < fuzz_n_written; i++)
		known |= strcmp(fuzz_written[i], name) == 0;
	if (!known && fuzz_n_written < 8)
		snprintf(fuzz_written[fuzz_n_written++], sizeof(fuzz_written[0]), "%s", name);
	snprintf(path, sizeof(path), "%s/%s", fuzz_tmpdir_get(), name);
	f = fopen(path, "wb");
	if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
	{
		perror(path);
		abort();
	}
	return path;
}

/* Remove DIR/name if it is there. */
static __attribute__((unused)) void
fuzz_remove_file(const char *name)
{
	char		path[512];

	snprintf(path, sizeof(path), "%s/%s", fuzz_tmpdir_get(), name);
	unlink(path);
}

/* Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF). */
static __attribute__((unused)) bool
fuzz_utf8_valid(const uint8_t *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		uint8_t		c = s[i];
		uint32_t	cp;
		size_t		n;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 2, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 3, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 4, cp = c & 0x07;
		else
			return false;
		if (len - i < n)
			return false;
		for (size_t k = 1; k < n; k++)
		{
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
			(cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

#endif							/* R1_FUZZ_COMMON_H */
