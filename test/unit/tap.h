/*
 * tap.h - a minimal Test Anything Protocol emitter for the engine's C unit
 * tests; `prove` runs the binaries and reads their output.
 */
#ifndef R1_TAP_H
#define R1_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int	tap_n = 0;
static int	tap_failed = 0;

static void
tap_okv(int cond, const char *fmt, va_list ap)
{
	tap_n++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
}

static int __attribute__((format(printf, 2, 3), unused))
ok(int cond, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	tap_okv(cond, fmt, ap);
	va_end(ap);
	return cond;
}

static void __attribute__((format(printf, 1, 2), unused))
diag(const char *fmt,...)
{
	va_list		ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

#define is_int(got, want, ...) \
	do { long long g_ = (long long) (got), w_ = (long long) (want); \
		if (!ok(g_ == w_, __VA_ARGS__)) diag("  got %lld, want %lld", g_, w_); } while (0)

#define is_str(got, want, ...) \
	do { const char *g_ = (got), *w_ = (want); \
		if (!ok(g_ && w_ && strcmp(g_, w_) == 0, __VA_ARGS__)) \
			diag("  got \"%s\", want \"%s\"", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); } while (0)

/* ok() that the message of a failed call contains a fragment */
#define fails_with(rc, err, frag, ...) \
	do { int r_ = (rc); \
		if (!ok(r_ != 0 && strstr((err).msg, (frag)) != NULL, __VA_ARGS__)) \
			diag("  rc %d, message \"%s\", want fragment \"%s\"", r_, (err).msg, (frag)); } while (0)

static int __attribute__((unused))
done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif							/* R1_TAP_H */
