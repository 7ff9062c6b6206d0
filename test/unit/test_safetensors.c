/*
 * test_safetensors.c - the safetensors reader and writer: the fixture's
 * float32, bfloat16 and int64 files (values checked against numbers read
 * with Python), every dtype, a writer round trip, one test per malformed
 * header or truncation, and a byte-flipping fuzz loop that must never read
 * out of bounds.
 */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "tap.h"

static char fixture[4096];		/* test/fixtures/qwen2-tiny */
static char tmp[64];

static void
write_bytes(const char *path, const void *data, size_t len)
{
	FILE	   *f = fopen(path, "wb");

	if (f)
	{
		if (len)
			fwrite(data, 1, len, f);
		fclose(f);
	}
}

/*
 * DIR/model.safetensors holding a given header, space-padded to 8 bytes as
 * the safetensors library writes it, and data_len zero bytes
 */
static const char *
make_st(const char *header, size_t data_len)
{
	static char path[128];
	size_t		hl = strlen(header);
	size_t		padded = (hl + 7) / 8 * 8;
	uint64_t	hl64 = padded;
	char	   *buf = calloc(1, 8 + padded + data_len);

	snprintf(path, sizeof(path), "%s/model.safetensors", tmp);
	memcpy(buf, &hl64, 8);
	memcpy(buf + 8, header, hl);
	memset(buf + 8 + hl, ' ', padded - hl);
	hl = padded;
	write_bytes(path, buf, 8 + hl + data_len);
	free(buf);
	return path;
}

/* opening path fails with a one-line message holding both fragments */
static void
expect_open_fail(const char *path, const char *frag, const char *frag2, const char *name)
{
	r1_safetensors st;
	r1_error	err = {""};
	int			rc = r1_st_open(&st, path, &err);

	fails_with(rc, err, frag, "%s", name);
	if (frag2)
		ok(strstr(err.msg, frag2) != NULL, "%s: message has \"%s\"", name, frag2);
	ok(strchr(err.msg, '\n') == NULL && st.tensors == NULL && st.map.data == NULL,
	   "%s: one line, nothing left open", name);
	if (rc == 0)
		r1_st_close(&st);
}

static int
near(float got, float want)
{
	return got == want;
}

static void
test_fixture(void)
{
	r1_safetensors st;
	r1_error	err;
	const r1_tensor *t;
	char		path[4200];

	/* float32 weights */
	snprintf(path, sizeof(path), "%s/model.safetensors", fixture);
	if (!ok(r1_st_open(&st, path, &err) == 0, "fixture model.safetensors opens"))
	{
		diag("%s", err.msg);
		return;
	}
	is_int(st.n_tensors, 27, "27 tensors (__metadata__ skipped)");
	ok(r1_st_find(&st, "__metadata__") == NULL, "__metadata__ is not a tensor");
	ok(r1_st_find(&st, "model.layers.2.mlp.up_proj.weight") == NULL, "absent tensor not found");
	t = r1_st_find(&st, "model.embed_tokens.weight");
	if (ok(t != NULL, "embed_tokens found"))
	{
		is_int(t->dtype, R1_F32, "embed F32");
		ok(t->ndim == 2 && t->shape[0] == 512 && t->shape[1] == 64, "embed shape [512, 64]");
		is_int(t->nbytes, 512 * 64 * 4, "embed bytes");
		is_int(r1_tensor_numel(t), 512 * 64, "embed numel");
		is_str(t->file, path, "tensor knows its file");
		ok((const uint8_t *) t->data == (const uint8_t *) st.map.data + 8 + 2736 + 131072,
		   "embed data at header end + begin offset");
		ok(near(r1_tensor_get_f32(t, 0), 2.509744167327881f) &&
		   near(r1_tensor_get_f32(t, 1), 0.6945070624351501f) &&
		   near(r1_tensor_get_f32(t, 31), -0.0870930477976799f), "embed values");
	}
	t = r1_st_find(&st, "model.layers.1.self_attn.k_proj.bias");
	ok(t && t->ndim == 1 && t->shape[0] == 32 &&
	   near(r1_tensor_get_f32(t, 0), -0.17996469140052795f) &&
	   near(r1_tensor_get_f32(t, 31), 0.039030950516462326f), "k_proj bias shape and values");
	t = r1_st_find(&st, "model.layers.0.mlp.down_proj.weight");
	ok(t && t->shape[0] == 64 && t->shape[1] == 160 &&
	   near(r1_tensor_get_f32(t, 7), 0.07700114697217941f), "down_proj shape and value");
	t = r1_st_find(&st, "lm_head.weight");
	ok(t && near(r1_tensor_get_f32(t, 1), -0.20153209567070007f), "lm_head value");
	r1_st_close(&st);
	ok(st.tensors == NULL && st.path == NULL, "close clears");

	/* bfloat16 weights */
	snprintf(path, sizeof(path), "%s/model-bf16.safetensors", fixture);
	if (ok(r1_st_open(&st, path, &err) == 0, "fixture model-bf16.safetensors opens"))
	{
		is_int(st.n_tensors, 27, "27 bf16 tensors");
		t = r1_st_find(&st, "model.embed_tokens.weight");
		ok(t && t->dtype == R1_BF16 && t->nbytes == 512 * 64 * 2, "embed BF16");
		ok(t && near(r1_tensor_get_f32(t, 0), 2.515625f) && near(r1_tensor_get_f32(t, 31), -0.0869140625f),
		   "bf16 embed values");
		t = r1_st_find(&st, "model.norm.weight");
		ok(t && near(r1_tensor_get_f32(t, 0), 0.9296875f) && near(r1_tensor_get_f32(t, 7), 1.0703125f),
		   "bf16 norm values");
		r1_st_close(&st);
	}
	else
		diag("%s", err.msg);

	/* int64 ids and float32 logits */
	snprintf(path, sizeof(path), "%s/golden.safetensors", fixture);
	if (ok(r1_st_open(&st, path, &err) == 0, "golden.safetensors opens"))
	{
		is_int(st.n_tensors, 16, "16 golden tensors");
		t = r1_st_find(&st, "case2.input_ids");
		if (ok(t && t->dtype == R1_I64 && t->ndim == 1 && t->shape[0] == 17, "case2.input_ids I64 [17]"))
		{
			int64_t		v[8];

			memcpy(v, t->data, sizeof(v));
			ok(v[0] == 163 && v[1] == 54 && v[7] == 322, "input ids [0], [1], [7]: 163 54 322");
		}
		t = r1_st_find(&st, "case3.logits");
		ok(t && t->dtype == R1_F32 && t->ndim == 2 && t->shape[0] == 64 && t->shape[1] == 512,
		   "case3.logits F32 [64, 512]");
		t = r1_st_find(&st, "case0.logits");
		ok(t && near(r1_tensor_get_f32(t, 1), 0.6625291109085083f), "logit value");
		r1_st_close(&st);
	}
	else
		diag("%s", err.msg);
}

static void
test_dtypes(void)
{
	r1_safetensors st;
	r1_error	err;
	const char *path;

	is_str(r1_dtype_name(R1_BF16), "BF16", "dtype name");
	is_int(r1_dtype_size(R1_I64), 8, "I64 size");
	is_int(r1_dtype_size(R1_DTYPE_OTHER), 0, "other dtypes have no compute size");
	path = make_st("{\"__metadata__\":{\"format\":\"pt\"},"
				   "\"a\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[0,16]},"
				   "\"b\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[16,19]},"
				   "\"c\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[19,20]},"
				   "\"d\":{\"dtype\":\"BOOL\",\"shape\":[0,5],\"data_offsets\":[20,20]},"
				   "\"e\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[20,24]},"
				   "\"f\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[24,28]},"
				   "\"g\":{\"dtype\":\"I32\",\"shape\":[1,1,1,1,1,1,1,1],\"data_offsets\":[28,32]}}", 32);
	if (ok(r1_st_open(&st, path, &err) == 0, "F64, I8, U8, BOOL, F8_E4M3, F16, I32 parse"))
	{
		const r1_tensor *a = r1_st_find(&st, "a"),
				   *c = r1_st_find(&st, "c"),
				   *d = r1_st_find(&st, "d"),
				   *g = r1_st_find(&st, "g");

		is_int(st.n_tensors, 7, "7 tensors");
		ok(a && a->dtype == R1_DTYPE_OTHER && a->nbytes == 16, "F64 is other, 16 bytes");
		ok(c && c->ndim == 0 && r1_tensor_numel(c) == 1 && c->nbytes == 1, "a scalar");
		ok(d && d->ndim == 2 && r1_tensor_numel(d) == 0 && d->nbytes == 0, "an empty tensor");
		ok(g && g->ndim == 8 && g->dtype == R1_I32, "8 dimensions allowed");
		r1_st_close(&st);
	}
	else
		diag("%s", err.msg);
}

static void
test_writer(void)
{
	float		f32[6] = {1.5f, -2.0f, 0.25f, 3.0f, -0.5f, 100.0f};
	uint16_t	bf16[4],
				f16[3] = {0x3C00, 0xC000, 0x3800};	/* 1, -2, 0.5 */
	int64_t		i64[3] = {-1, 151643, 1LL << 40};
	int32_t		i32[1] = {7};
	r1_tensor	t[6];
	r1_safetensors st;
	r1_error	err;
	char		path[128];

	for (int i = 0; i < 4; i++)
		bf16[i] = r1_f32_to_bf16(f32[i]);
	memset(t, 0, sizeof(t));
	t[0] = (r1_tensor) {.name = "w.f32", .dtype = R1_F32, .ndim = 2, .shape = {2, 3}, .data = f32, .nbytes = 24};
	t[1] = (r1_tensor) {.name = "w.bf16", .dtype = R1_BF16, .ndim = 1, .shape = {4}, .data = bf16, .nbytes = 8};
	t[2] = (r1_tensor) {.name = "w.f16", .dtype = R1_F16, .ndim = 1, .shape = {3}, .data = f16, .nbytes = 6};
	t[3] = (r1_tensor) {.name = "ids", .dtype = R1_I64, .ndim = 1, .shape = {3}, .data = i64, .nbytes = 24};
	t[4] = (r1_tensor) {.name = "scalar", .dtype = R1_I32, .ndim = 0, .data = i32, .nbytes = 4};
	t[5] = (r1_tensor) {.name = "empty", .dtype = R1_F32, .ndim = 2, .shape = {0, 7}, .data = NULL, .nbytes = 0};
	snprintf(path, sizeof(path), "%s/written.safetensors", tmp);
	if (!ok(r1_st_write(path, t, 6, &err) == 0, "writer writes 6 tensors"))
	{
		diag("%s", err.msg);
		return;
	}
	if (ok(r1_st_open(&st, path, &err) == 0, "written file opens"))
	{
		uint64_t	hl;
		int			same = 1;

		memcpy(&hl, st.map.data, 8);
		is_int(hl % 8, 0, "data starts 8-byte aligned");
		is_int(st.map.size, 8 + hl + 24 + 8 + 6 + 24 + 4, "no holes in the data");
		for (int i = 0; i < 6; i++)
		{
			const r1_tensor *r = r1_st_find(&st, t[i].name);

			if (!r || r->dtype != t[i].dtype || r->ndim != t[i].ndim || r->nbytes != t[i].nbytes ||
				memcmp(r->shape, t[i].shape, sizeof(int64_t) * t[i].ndim) != 0 ||
				(t[i].nbytes && memcmp(r->data, t[i].data, t[i].nbytes) != 0))
				same = 0;
		}
		ok(same, "every tensor reads back identical");
		ok(near(r1_tensor_get_f32(r1_st_find(&st, "w.f16"), 1), -2.0f) &&
		   near(r1_tensor_get_f32(r1_st_find(&st, "w.f16"), 2), 0.5f), "F16 converts");
		ok(near(r1_tensor_get_f32(r1_st_find(&st, "w.bf16"), 2), 0.25f), "BF16 converts");
		ok(near(r1_tensor_get_f32(r1_st_find(&st, "w.f32"), 5), 100.0f), "F32 reads");
		r1_st_close(&st);
	}
	else
		diag("%s", err.msg);

	/* the writer refuses what the reader would reject */
	{
		r1_tensor	bad = t[0];
		char		longname[300];

		bad.nbytes = 20;
		fails_with(r1_st_write(path, &bad, 1, &err), err, "w.f32", "writer: bytes not matching the shape");
		bad = t[0];
		bad.dtype = R1_DTYPE_OTHER;
		fails_with(r1_st_write(path, &bad, 1, &err), err, "cannot write", "writer: a dtype it cannot name");
		fails_with(r1_st_write(path, (r1_tensor[]) {t[1], t[1]}, 2, &err), err, "w.bf16", "writer: a repeated name");
		memset(longname, 'n', 256);
		longname[256] = '\0';
		bad = t[1];
		bad.name = longname;
		fails_with(r1_st_write(path, &bad, 1, &err), err, "cannot write", "writer: a 256-byte name");
		snprintf(path, sizeof(path), "%s/no/such/dir/x.safetensors", tmp);
		fails_with(r1_st_write(path, t, 1, &err), err, "cannot create", "writer: unwritable path");
	}
}

static void
test_malformed(void)
{
	const char *path;
	char		name[256],
				hdr[1024];

	path = make_st("", 0);
	write_bytes(path, "", 0);
	expect_open_fail(path, "model.safetensors: 0 bytes is too short", NULL, "empty file");
	write_bytes(path, "\x10\0\0\0", 4);
	expect_open_fail(path, "too short", NULL, "4-byte file");
	{
		char		b[8 + 16] = {(char) 0xff, (char) 0xff, 0, 0, 0, 0, 0, 0};

		memset(b + 8, ' ', 16);
		write_bytes(path, b, sizeof(b));
		expect_open_fail(path, "model.safetensors: header length 65535 does not fit the file's 24 bytes", NULL,
						 "header length larger than the file");
	}
	/* a header length over the 100 MB bound in a (sparse) file that is big enough */
	{
		FILE	   *f = fopen(path, "wb");
		uint64_t	hl = (100u << 20) + 1;

		if (f)
		{
			fwrite(&hl, 8, 1, f);
			if (ftruncate(fileno(f), 8 + hl + 64) != 0)
				diag("ftruncate failed");
			fclose(f);
		}
		expect_open_fail(path, "header length 104857601", NULL, "header length over 100 MB");
	}
	path = make_st("#not json at all", 16);
	expect_open_fail(path, "model.safetensors: header is not a JSON object", NULL, "header not JSON");
	path = make_st("[1, 2, 3]", 0);
	expect_open_fail(path, "header is not a JSON object", NULL, "header a JSON array");
	path = make_st("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]", 4);
	expect_open_fail(path, "header is not a JSON object", NULL, "header cut short");
	path = make_st("{\"x\": 5}", 0);
	expect_open_fail(path, "tensor \"x\": entry needs dtype, shape and data_offsets", NULL, "entry not an object");
	path = make_st("{\"x\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4);
	expect_open_fail(path, "tensor \"x\": entry needs", NULL, "entry without data_offsets");
	path = make_st("{\"x\": {\"dtype\": 3, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
	expect_open_fail(path, "tensor \"x\": entry needs", NULL, "dtype not a string");
	path = make_st("{\"x\": {\"dtype\": \"Q9\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
	expect_open_fail(path, "model.safetensors: tensor \"x\": unknown dtype \"Q9\"", NULL, "unknown dtype");
	path = make_st("{\"x\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 4);
	expect_open_fail(path, "tensor \"x\": shape entries must be non-negative", NULL, "negative dimension");
	path = make_st("{\"x\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4);
	expect_open_fail(path, "tensor \"x\": shape entries must be non-negative integers", NULL, "fractional dimension");
	path = make_st("{\"x\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}", 4);
	expect_open_fail(path, "tensor \"x\": 9 dimensions (at most 8)", NULL, "nine dimensions");
	path = make_st("{\"x\": {\"dtype\": \"F32\", \"shape\": [1099511627776, 1099511627776], \"data_offsets\": [0, 4]}}", 4);
	expect_open_fail(path, "tensor \"x\": shape overflows", NULL, "shape overflowing size_t");
	path = make_st("{\"x\": {\"dtype\": \"F64\", \"shape\": [1, 4611686018427387904], \"data_offsets\": [0, 0]}}", 4);
	expect_open_fail(path, "tensor \"x\"", NULL, "numel x dtype size overflowing");
	path = make_st("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 8);
	expect_open_fail(path, "tensor \"x\": data_offsets must be [begin, end]", NULL, "three offsets");
	path = make_st("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]}}", 8);
	expect_open_fail(path, "tensor \"x\": bad data_offsets [8, 4]", NULL, "begin after end");
	path = make_st("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 8);
	expect_open_fail(path, "tensor \"x\": bad data_offsets [-4, 0]", NULL, "negative begin");
	path = make_st("{\"lm_head.weight\": {\"dtype\": \"F32\", \"shape\": [25], \"data_offsets\": [0, 100]}}", 64);
	{
		r1_safetensors st;
		r1_error	err;

		r1_st_open(&st, path, &err);
		is_str(err.msg,
			   "model.safetensors: tensor \"lm_head.weight\": data_offsets [0, 100] exceed the file's 64 data bytes (file truncated?)",
			   "data_offsets out of range: the exact message");
	}
	path = make_st("{\"x\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [0, 6]}}", 8);
	expect_open_fail(path, "tensor \"x\": data_offsets [0, 6] hold 6 bytes, shape and dtype need 8", NULL,
					 "offsets not matching shape x dtype");
	path = make_st("{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
				   " \"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8);
	expect_open_fail(path, "names a tensor twice", "\"x\"", "duplicate tensor name");
	path = make_st("{\"\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
	expect_open_fail(path, "tensor name of 0 bytes", NULL, "empty tensor name");
	{
		size_t		n = 0;

		n += snprintf(hdr + n, sizeof(hdr) - n, "{\"");
		memset(hdr + n, 'a', 256);
		n += 256;
		snprintf(hdr + n, sizeof(hdr) - n, "\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}");
		path = make_st(hdr, 4);
		expect_open_fail(path, "tensor name of 256 bytes", NULL, "256-byte tensor name");
		hdr[2 + 255] = '"';		/* 255 bytes is fine */
		snprintf(hdr + 2 + 256, sizeof(hdr) - 258, ": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}");
		path = make_st(hdr, 4);
		{
			r1_safetensors st;
			r1_error	err;

			if (ok(r1_st_open(&st, path, &err) == 0, "255-byte tensor name accepted"))
				r1_st_close(&st);
			else
				diag("%s", err.msg);
		}
	}
	snprintf(name, sizeof(name), "%s/nothere.safetensors", tmp);
	expect_open_fail(name, "nothere.safetensors: cannot open", NULL, "missing file");
	expect_open_fail(tmp, "not a regular file", NULL, "a directory");

	/* the fixture cut inside the length, inside the header, inside the data */
	{
		char		src[4200];
		char	   *data;
		size_t		len;
		r1_error	err;

		snprintf(src, sizeof(src), "%s/model.safetensors", fixture);
		if (r1_read_file(src, &data, &len, &err) == 0)
		{
			uint64_t	hl;
			size_t		cuts[] = {0, 3, 7, 8, 9, 100, 0, 0, 0, 0, 0};
			const char *want[] = {"too short", "too short", "too short", "header length", "header length",
				"header length", "header length", "exceed the file's", "exceed the file's",
			"exceed the file's", "exceed the file's"};

			memcpy(&hl, data, 8);
			cuts[6] = 8 + hl - 1;
			cuts[7] = 8 + hl + 10;
			cuts[8] = len / 2;
			cuts[9] = len - 4;
			cuts[10] = len - 1;
			snprintf(name, sizeof(name), "%s/model.safetensors", tmp);
			for (int i = 0; i < 11; i++)
			{
				char		what[128];

				write_bytes(name, data, cuts[i]);
				snprintf(what, sizeof(what), "fixture cut at %zu of %zu bytes", cuts[i], len);
				expect_open_fail(name, "model.safetensors: ", want[i], what);
				if (i >= 7)
				{
					r1_safetensors st;

					r1_st_open(&st, name, &err);
					ok(strstr(err.msg, ": tensor \"") && strstr(err.msg, "(file truncated?)"),
					   "%s: names the tensor, suggests truncation", what);
				}
			}
			free(data);
		}
		else
			diag("%s", err.msg);
	}
	/* the backends read elements in place: a tensor off its element alignment is refused */
	path = make_st("{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]},"
				   "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 6);
	expect_open_fail(path, "tensor \"b\": data at offset 2 is not aligned to its 4-byte elements", NULL,
					 "misaligned F32 tensor");
}

/* flip bytes of a small valid file at random: opening never crashes, and
 * whatever opens stays inside the mapping */
static void
test_fuzz(void)
{
	float		w[24];
	r1_tensor	t[3];
	char		path[128];
	char	   *orig,
			   *buf;
	size_t		len;
	r1_error	err;
	int			opened = 0,
				failed = 0,
				inside = 1,
				oneline = 1;
	uint64_t	rng = 12345;

	for (int i = 0; i < 24; i++)
		w[i] = (float) i;
	memset(t, 0, sizeof(t));
	t[0] = (r1_tensor) {.name = "a", .dtype = R1_F32, .ndim = 2, .shape = {2, 4}, .data = w, .nbytes = 32};
	t[1] = (r1_tensor) {.name = "bb", .dtype = R1_BF16, .ndim = 1, .shape = {8}, .data = w, .nbytes = 16};
	t[2] = (r1_tensor) {.name = "ccc", .dtype = R1_I64, .ndim = 1, .shape = {6}, .data = w, .nbytes = 48};
	snprintf(path, sizeof(path), "%s/fuzz.safetensors", tmp);
	if (r1_st_write(path, t, 3, &err) != 0 || r1_read_file(path, &orig, &len, &err) != 0)
	{
		ok(0, "fuzz setup: %s", err.msg);
		return;
	}
	buf = malloc(len);
	for (int iter = 0; iter < 3000; iter++)
	{
		size_t		n = len;
		r1_safetensors st;

		memcpy(buf, orig, len);
		for (int k = 0; k < 1 + iter % 4; k++)
		{
			size_t		pos;

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			pos = (rng >> 33) % len;
			/* mostly digits and JSON punctuation in the header, any byte elsewhere */
			buf[pos] = (rng >> 20) & 1 ? "0123456789[],:\"-e{} "[(rng >> 40) % 20] : (char) (rng >> 48);
		}
		if (iter % 7 == 0)
			n = (rng >> 24) % len;
		write_bytes(path, buf, n);
		if (r1_st_open(&st, path, &err) == 0)
		{
			opened++;
			for (int i = 0; i < st.n_tensors; i++)
			{
				const uint8_t *d = st.tensors[i].data;
				const uint8_t *m = st.map.data;

				if (st.tensors[i].nbytes && (d < m || d + st.tensors[i].nbytes > m + st.map.size))
					inside = 0;
				for (size_t e = 0; st.tensors[i].dtype <= R1_BF16 && e < (size_t) r1_tensor_numel(&st.tensors[i]); e++)
					(void) r1_tensor_get_f32(&st.tensors[i], e);
			}
			r1_st_close(&st);
		}
		else
		{
			failed++;
			if (strchr(err.msg, '\n') || strstr(err.msg, "fuzz.safetensors: ") == NULL)
			{
				if (oneline)
					diag("odd message: %s", err.msg);
				oneline = 0;
			}
		}
	}
	ok(inside, "fuzz: %d files opened, every tensor inside its mapping", opened);
	ok(oneline && failed > 0, "fuzz: %d rejections, each one line naming the file", failed);
	free(buf);
	free(orig);
}

int
main(void)
{
	const char *fx = getenv("R1_FIXTURES") ? getenv("R1_FIXTURES") : "test/fixtures";

	snprintf(fixture, sizeof(fixture), "%.4000s/qwen2-tiny", fx);
	snprintf(tmp, sizeof(tmp), "/tmp/r1-st-XXXXXX");
	if (!mkdtemp(tmp))
		return 1;
	test_fixture();
	test_dtypes();
	test_writer();
	test_malformed();
	test_fuzz();
	{
		char		cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
		if (system(cmd) != 0)
			diag("could not remove %s", tmp);
	}
	return done_testing();
}
