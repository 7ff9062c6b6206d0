/*
 * fuzz_safetensors.c - arbitrary bytes as a .safetensors file.
 *
 * r1_st_open must either fail with a one-line error or expose only tensors
 * whose bytes lie inside the data section of the mapping and agree with
 * their dtype and shape.  Every exposed tensor is read end to end (a mapping
 * is not watched by ASan, so the bounds are checked explicitly as well).
 */
#include "safetensors.h"
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	r1_safetensors st;
	r1_error	err;
	const char *path = fuzz_write_file("model.safetensors", data, size);
	const uint8_t *base;
	uint64_t	hlen = 0;
	volatile float sink = 0;

	err.msg[0] = '\0';
	if (r1_st_open(&st, path, &err) != 0)
	{
		FUZZ_CHECK(err.msg[0] != '\0', "failure without a message");
		FUZZ_CHECK(strchr(err.msg, '\n') == NULL, "error is not one line: %s", err.msg);
		FUZZ_CHECK(st.tensors == NULL && st.names == NULL && st.path == NULL &&
				   st.map.data == NULL, "failed open left state behind");
		return 0;
	}
	FUZZ_CHECK(size >= 8 && st.map.size == size, "opened a %zu-byte file", size);
	base = st.map.data;
	for (int i = 7; i >= 0; i--)
		hlen = (hlen << 8) | data[i];
	FUZZ_CHECK(hlen <= size - 8, "header length %llu past the end", (unsigned long long) hlen);
	for (int i = 0; i < st.n_tensors; i++)
	{
		const r1_tensor *t = &st.tensors[i];
		const uint8_t *p = t->data;
		size_t		es = r1_dtype_size(t->dtype);
		int64_t		numel = 1;

		FUZZ_CHECK(t->name && t->name[0], "tensor %d has no name", i);
		FUZZ_CHECK(r1_st_find(&st, t->name) != NULL, "tensor \"%s\" not found by name", t->name);
		FUZZ_CHECK(t->ndim >= 0 && t->ndim <= R1_MAX_DIMS, "ndim %d", t->ndim);
		for (int d = 0; d < t->ndim; d++)
		{
			FUZZ_CHECK(t->shape[d] >= 0, "negative dimension");
			numel *= t->shape[d];
		}
		FUZZ_CHECK(t->nbytes == 0 || (p >= base + 8 + hlen && p <= base + size &&
									  t->nbytes <= (size_t) (base + size - p)),
				   "tensor \"%s\": %zu bytes at offset %td outside the data section",
				   t->name, t->nbytes, p - base);
		if (es)
		{
			FUZZ_CHECK(t->nbytes == 0 || (uintptr_t) p % es == 0,
					   "tensor \"%s\" (%s) at file offset %td is not aligned to %zu bytes",
					   t->name, r1_dtype_name(t->dtype), p - base, es);
			FUZZ_CHECK(r1_tensor_numel(t) == numel, "numel");
			FUZZ_CHECK((size_t) numel * es == t->nbytes, "tensor \"%s\": %lld elements of %zu bytes in %zu bytes",
					   t->name, (long long) numel, es, t->nbytes);
		}
		/* touch every byte, and read the elements as the engine would */
		for (size_t k = 0; k < t->nbytes; k++)
			sink += p[k];
		if (t->dtype == R1_F32 || t->dtype == R1_F16 || t->dtype == R1_BF16)
		{
			/* tensors may sit at any offset: read through a copy, as a loader must */
			for (size_t k = 0; k < (size_t) numel && k < 64; k++)
			{
				r1_tensor	copy = *t;
				uint8_t		elem[4];

				memcpy(elem, p + k * es, es);
				copy.data = elem;
				sink += r1_tensor_get_f32(&copy, 0);
			}
		}
	}
	(void) sink;
	r1_st_close(&st);
	return 0;
}
