/* test_checksum.c - XXH64 against the reference vectors and the weights checksum. */
#include <stdlib.h>
#include <string.h>

#include "checksum.h"
#include "model.h"
#include "tap.h"

#define FIX "test/fixtures/qwen2-tiny"

static void
is_hex(uint64_t got, uint64_t want, const char *name)
{
	if (!ok(got == want, "%s", name))
		diag("  got %016llx, want %016llx", (unsigned long long) got, (unsigned long long) want);
}

int
main(void)
{
	r1_error	err;
	r1_model   *m;
	uint64_t	h,
				h2;
	char		hex[17];
	unsigned char buf[100];

	/* reference values of xxHash's XXH64 (xxhsum, python-xxhash) */
	is_hex(r1_xxh64("", 0, 0), 0xEF46DB3751D8E999ULL, "XXH64 of the empty string");
	is_hex(r1_xxh64("a", 1, 0), 0xD24EC4F1A98C6E5BULL, "XXH64 of \"a\"");
	is_hex(r1_xxh64("abc", 3, 0), 0x44BC2CF5AD770999ULL, "XXH64 of \"abc\"");
	is_hex(r1_xxh64("Nobody inspects the spammish repetition", 39, 0), 0xFBCEA83C8A378BF1ULL,
		   "XXH64 of a 39-byte string (stripe loop and tail)");
	is_hex(r1_xxh64("xxhash", 6, 20141025), 0xB559B98D844E0635ULL, "XXH64 with a seed");

	/* unaligned input gives the same hash as aligned input */
	for (int i = 0; i < 100; i++)
		buf[i] = (unsigned char) (i * 37 + 11);
	{
		unsigned char *copy = malloc(101);

		memcpy(copy + 1, buf, 100);
		is_hex(r1_xxh64(copy + 1, 100, 7), r1_xxh64(buf, 100, 7), "unaligned input");
		free(copy);
	}
	/* every length from 0 to 100 hashes differently from its neighbour */
	{
		int			same = 0;

		for (int n = 1; n <= 100; n++)
			same += r1_xxh64(buf, n, 0) == r1_xxh64(buf, n - 1, 0);
		is_int(same, 0, "prefixes of every length hash differently");
	}

	r1_checksum_hex(0x00ab000000000001ULL, hex);
	is_str(hex, "00ab000000000001", "hex has 16 digits with leading zeros");

	/* the weights checksum of the tiny fixture: stable, and every byte counts */
	if (r1_model_load(&m, FIX, &err) != 0)
	{
		ok(0, "load %s: %s", FIX, err.msg);
		printf("1..%d\n", tap_n);
		return 1;
	}
	h = r1_weights_checksum(m);
	ok(h != 0, "weights checksum is computed");
	is_hex(r1_weights_checksum(m), h, "weights checksum is deterministic");
	{
		/* flip one byte in the middle of a layer's down projection (a private copy) */
		r1_tensor	saved = m->layers[1].w_down;
		unsigned char *copy = malloc(saved.nbytes);

		memcpy(copy, saved.data, saved.nbytes);
		copy[saved.nbytes / 2] ^= 0x01;
		m->layers[1].w_down.data = copy;
		h2 = r1_weights_checksum(m);
		ok(h2 != h, "changing one bit of one weight changes the checksum");
		copy[saved.nbytes / 2] ^= 0x01;
		is_hex(r1_weights_checksum(m), h, "restoring the byte restores the checksum");
		m->layers[1].w_down = saved;
		free(copy);
	}
	{
		/* the same bytes in another tensor order are a different model */
		r1_tensor	a = m->layers[0].wq,
					b = m->layers[0].wk;

		m->layers[0].wq = b;
		m->layers[0].wk = a;
		ok(r1_weights_checksum(m) != h, "swapping two tensors changes the checksum");
		m->layers[0].wq = a;
		m->layers[0].wk = b;
	}
	r1_model_free(m);

	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}
