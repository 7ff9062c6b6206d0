/*
 * util.h - errors, checked allocation, file mapping, clocks and number formats
 * shared by every engine module.
 *
 * Engine code never calls exit() or abort(): it may be linked into a
 * PostgreSQL process.  Fallible functions return 0 on success and -1 on
 * failure, filling an r1_error with a one-line message.
 */
#ifndef R1_UTIL_H
#define R1_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define R1_ERROR_LEN 512

typedef struct r1_error
{
	char		msg[R1_ERROR_LEN];	/* one line, no trailing newline */
} r1_error;

/* Format msg into err (may be NULL) and return -1, so "return r1_fail(...)" reads well. */
int			r1_fail(r1_error *err, const char *fmt,...) __attribute__((format(printf, 2, 3)));

/* Allocation that reports failure through err instead of aborting. */
void	   *r1_malloc(size_t n, r1_error *err);
void	   *r1_calloc(size_t count, size_t size, r1_error *err);
char	   *r1_strdup(const char *s, r1_error *err);

/* Read-only memory map of a whole file (size 0 files are mapped as NULL, size 0). */
typedef struct r1_mapping
{
	void	   *data;
	size_t		size;
} r1_mapping;
int			r1_map_file(const char *path, r1_mapping *map, r1_error *err);
void		r1_unmap_file(r1_mapping *map);

/* Read a whole (small) file into a NUL-terminated heap buffer. */
int			r1_read_file(const char *path, char **out, size_t *len, r1_error *err);

/* Join dir and name into buf; fails if it does not fit. */
int			r1_path_join(char *buf, size_t bufsize, const char *dir, const char *name, r1_error *err);

/* Monotonic clock in milliseconds. */
double		r1_now_ms(void);

/* Number formats. */
static inline float
r1_bf16_to_f32(uint16_t h)
{
	union
	{
		uint32_t	u;
		float		f;
	}			v;

	v.u = (uint32_t) h << 16;
	return v.f;
}

static inline uint16_t
r1_f32_to_bf16(float f)			/* round to nearest even, NaN stays NaN */
{
	union
	{
		uint32_t	u;
		float		f;
	}			v;

	v.f = f;
	if ((v.u & 0x7fffffff) > 0x7f800000)
		return (uint16_t) ((v.u >> 16) | 0x40);
	return (uint16_t) ((v.u + 0x7fff + ((v.u >> 16) & 1)) >> 16);
}

float		r1_f16_to_f32(uint16_t h);

/*
 * FP8 E4M3 (OCP "e4m3fn", safetensors F8_E4M3): 1 sign, 4 exponent bits
 * (bias 7), 3 mantissa bits, no infinities, S.1111.111 is NaN; largest 448.
 */
float		r1_f8e4m3_to_f32(uint8_t b);
uint16_t	r1_f32_to_f16(float f);

/* Checked multiplication of sizes: returns 0 on overflow. */
static inline int
r1_mul_size(size_t a, size_t b, size_t *out)
{
	return !__builtin_mul_overflow(a, b, out);
}

#endif							/* R1_UTIL_H */
