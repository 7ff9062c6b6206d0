/*
 * util.c - errors, checked allocation, file mapping, clocks and number formats.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int
r1_fail(r1_error *err, const char *fmt,...)
{
	if (err)
	{
		va_list		ap;

		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
		va_end(ap);
		/* keep it one line */
		for (char *p = err->msg; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
	}
	return -1;
}

void *
r1_malloc(size_t n, r1_error *err)
{
	void	   *p = malloc(n ? n : 1);

	if (!p)
		r1_fail(err, "out of memory allocating %zu bytes", n);
	return p;
}

void *
r1_calloc(size_t count, size_t size, r1_error *err)
{
	void	   *p = calloc(count ? count : 1, size ? size : 1);

	if (!p)
		r1_fail(err, "out of memory allocating %zu x %zu bytes", count, size);
	return p;
}

char *
r1_strdup(const char *s, r1_error *err)
{
	size_t		n = strlen(s) + 1;
	char	   *p = r1_malloc(n, err);

	if (p)
		memcpy(p, s, n);
	return p;
}

int
r1_map_file(const char *path, r1_mapping *map, r1_error *err)
{
	struct stat st;
	int			fd;

	map->data = NULL;
	map->size = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return r1_fail(err, "%s: cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		close(fd);
		return r1_fail(err, "%s: not a regular file", path);
	}
	if (st.st_size > 0)
	{
		void	   *p = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);

		if (p == MAP_FAILED)
		{
			int			e = errno;

			close(fd);
			return r1_fail(err, "%s: cannot map: %s", path, strerror(e));
		}
		map->data = p;
		map->size = (size_t) st.st_size;
	}
	close(fd);
	return 0;
}

void
r1_unmap_file(r1_mapping *map)
{
	if (map->data)
		munmap(map->data, map->size);
	map->data = NULL;
	map->size = 0;
}

int
r1_read_file(const char *path, char **out, size_t *len, r1_error *err)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf = NULL;
	size_t		cap = 0,
				n = 0;

	*out = NULL;
	if (!f)
		return r1_fail(err, "%s: cannot open: %s", path, strerror(errno));
	for (;;)
	{
		size_t		got;

		if (cap - n < 65536)
		{
			size_t		ncap = cap ? cap * 2 : 65536 * 2;
			char	   *nb = realloc(buf, ncap + 1);

			if (!nb)
			{
				free(buf);
				fclose(f);
				return r1_fail(err, "%s: out of memory reading file", path);
			}
			buf = nb;
			cap = ncap;
		}
		got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f))
	{
		free(buf);
		fclose(f);
		return r1_fail(err, "%s: read error", path);
	}
	fclose(f);
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

int
r1_path_join(char *buf, size_t bufsize, const char *dir, const char *name, r1_error *err)
{
	int			n = snprintf(buf, bufsize, "%s/%s", dir, name);

	if (n < 0 || (size_t) n >= bufsize)
		return r1_fail(err, "path too long: %s/%s", dir, name);
	return 0;
}

double
r1_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

float
r1_f8e4m3_to_f32(uint8_t b)
{
	int			e = (b >> 3) & 15,
				m = b & 7;
	float		v;

	if (e == 15 && m == 7)
		return NAN;
	v = e == 0 ? ldexpf((float) m, -9) : ldexpf((float) (8 + m), e - 10);
	return b & 0x80 ? -v : v;
}

float
r1_f16_to_f32(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000) << 16;
	uint32_t	exp = (h >> 10) & 0x1f;
	uint32_t	mant = h & 0x3ff;
	union
	{
		uint32_t	u;
		float		f;
	}			v;

	if (exp == 0)
	{
		/* zero or subnormal: mant * 2^-24 */
		v.f = (float) mant * (1.0f / 16777216.0f);
		v.u |= sign;
		return v.f;
	}
	if (exp == 31)
		v.u = sign | 0x7f800000 | (mant << 13);
	else
		v.u = sign | ((exp + 112) << 23) | (mant << 13);
	return v.f;
}

uint16_t
r1_f32_to_f16(float f)
{
	union
	{
		uint32_t	u;
		float		f;
	}			v;
	uint32_t	sign,
				exp,
				mant;

	v.f = f;
	sign = (v.u >> 16) & 0x8000;
	exp = (v.u >> 23) & 0xff;
	mant = v.u & 0x7fffff;
	if (exp == 0xff)
		return (uint16_t) (sign | 0x7c00 | (mant ? 0x200 : 0));
	{
		int			e = (int) exp - 127 + 15;

		if (e >= 31)
			return (uint16_t) (sign | 0x7c00);
		if (e <= 0)
		{
			/* subnormal half: round to nearest even */
			uint32_t	m,
						shift,
						r,
						half;

			if (e < -10)
				return (uint16_t) sign;
			m = mant | 0x800000;
			shift = (uint32_t) (14 - e);
			r = m >> shift;
			half = 1u << (shift - 1);
			if ((m & ((half << 1) - 1)) > half || ((m & ((half << 1) - 1)) == half && (r & 1)))
				r++;
			return (uint16_t) (sign | r);
		}
		{
			uint32_t	r = ((uint32_t) e << 10) | (mant >> 13);
			uint32_t	rem = mant & 0x1fff;

			if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
				r++;			/* may carry into the exponent, which is right */
			return (uint16_t) (sign | r);
		}
	}
}
