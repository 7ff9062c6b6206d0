/* test_util.c - number formats, file helpers and error formatting. */
#include <math.h>
#include <stdlib.h>
#include <unistd.h>

#include "tap.h"
#include "util.h"

int
main(void)
{
	r1_error	err;
	int			bad = 0;
	r1_mapping	map;
	char	   *buf;
	size_t		len;

	/* every finite half survives f16 -> f32 -> f16 exactly */
	for (uint32_t h = 0; h < 65536; h++)
	{
		float		f = r1_f16_to_f32((uint16_t) h);

		if (isnan(f))
			continue;
		if (r1_f32_to_f16(f) != h)
			bad++;
	}
	is_int(bad, 0, "f16 round trip is exact for every non-NaN half");
	ok(r1_f16_to_f32(0x3c00) == 1.0f && r1_f16_to_f32(0xc000) == -2.0f, "f16 1.0 and -2.0");
	ok(r1_f16_to_f32(0x0001) == ldexpf(1.0f, -24), "smallest f16 subnormal");
	is_int(r1_f32_to_f16(65520.0f), 0x7c00, "f16 overflow rounds to infinity");
	is_int(r1_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00, "f16 tie rounds to even (down)");
	is_int(r1_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02, "f16 tie rounds to even (up)");

	/* bf16 */
	bad = 0;
	for (uint32_t h = 0; h < 65536; h++)
	{
		float		f = r1_bf16_to_f32((uint16_t) h);

		if (!isnan(f) && r1_f32_to_bf16(f) != h)
			bad++;
	}
	is_int(bad, 0, "bf16 round trip is exact for every non-NaN value");
	is_int(r1_f32_to_bf16(1.0f + ldexpf(1.0f, -8)), 0x3f80, "bf16 tie rounds to even (down)");
	is_int(r1_f32_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)), 0x3f82, "bf16 tie rounds to even (up)");
	ok(isnan(r1_bf16_to_f32(r1_f32_to_bf16(NAN))), "bf16 NaN stays NaN");

	/* files */
	fails_with(r1_map_file("/nonexistent/x.safetensors", &map, &err), err, "/nonexistent/x.safetensors: cannot open",
			   "mapping a missing file names it");
	fails_with(r1_map_file("/tmp", &map, &err), err, "not a regular file", "mapping a directory fails");
	fails_with(r1_read_file("/nonexistent/config.json", &buf, &len, &err), err, "config.json: cannot open",
			   "reading a missing file names it");
	{
		char		path[] = "/tmp/r1-util-XXXXXX";
		int			fd = mkstemp(path);

		if (fd >= 0)
		{
			write(fd, "hello", 5);
			close(fd);
			ok(r1_read_file(path, &buf, &len, &err) == 0 && len == 5 && strcmp(buf, "hello") == 0,
			   "read a small file, NUL-terminated");
			free(buf);
			ok(r1_map_file(path, &map, &err) == 0 && map.size == 5 && memcmp(map.data, "hello", 5) == 0,
			   "map a small file");
			r1_unmap_file(&map);
			unlink(path);
		}
	}
	{
		char		small[8];

		fails_with(r1_path_join(small, sizeof(small), "/a/long/dir", "config.json", &err), err, "path too long",
				   "path_join refuses to truncate");
	}
	r1_fail(&err, "line one\nline two");
	ok(strchr(err.msg, '\n') == NULL, "errors are one line");
	{
		size_t		out;

		ok(!r1_mul_size((size_t) 1 << 40, (size_t) 1 << 40, &out), "size overflow detected");
	}
	return done_testing();
}
