/*
 * test_repack.c - the x8 layouts of repack.h (Q8_0, Q4_K, Q6_K): every row comes back bit for
 * bit from its group (on any processor), and where the processor has the
 * x8 kernels, each row's result for one to four tokens is bitwise the
 * reference's (qdot.h) on the row as stored in the file.
 */
#include <stdlib.h>
#include <string.h>

#include "cpu_features.h"
#include "qdot.h"
#include "quant.h"
#include "repack.h"
#include "tap.h"
#include "util.h"

static uint32_t
next(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s >> 8;
}

static float
frand(uint32_t *s)
{
	return (float) (next(s) / 16777216.0 * 2.0 - 1.0);
}

static const r1_dtype types[] = {R1_Q8_0, R1_Q4_K, R1_Q6_K};

/*
 * rows x n weights of dt: quantised from floats (raw = 0), or raw bytes with
 * every scale bit pattern and only the f16 block scales kept finite (raw = 1)
 */
static uint8_t *
make_rows(r1_dtype dt, int rows, int n, int raw, uint32_t *s, size_t *rb)
{
	uint8_t    *w;
	float	   *f = malloc(sizeof(float) * n);
	size_t		bb = dt == R1_Q8_0 ? 34 : dt == R1_Q4_K ? 144 : 210;
	int			block = r1_qdot_block(dt);

	r1_dtype_row_bytes(dt, n, rb);
	w = malloc(*rb * rows);
	for (int r = 0; r < rows; r++)
	{
		uint8_t    *row = w + *rb * r;

		for (int i = 0; i < n; i++)
			f[i] = frand(s) * 0.05f * (i % 89 == 0 ? 6.0f : 1.0f) * (float) (r + 1);
		r1_quantize_row(dt, f, row, n);
		if (!raw)
			continue;
		for (size_t k = 0; k < *rb; k++)
			row[k] = (uint8_t) next(s);
		for (int i = 0; i < n / block; i++)
		{
			uint8_t    *b = row + (size_t) i * bb;
			uint16_t	h1 = r1_f32_to_f16(0.001f * (1 + (int) (next(s) % 50))),
						h2 = r1_f32_to_f16(0.0005f * (1 + (int) (next(s) % 50)));

			if (dt == R1_Q8_0)
				memcpy(b, &h1, 2);
			else if (dt == R1_Q4_K)
			{
				memcpy(b, &h1, 2);
				memcpy(b + 2, &h2, 2);
			}
			else
				memcpy(b + 208, &h1, 2);
		}
	}
	free(f);
	return w;
}

static void
test_layout(r1_dtype dt, int n, int raw)
{
	uint32_t	s = 3 + (uint32_t) n + 17 * (uint32_t) raw + 5 * (uint32_t) dt;
	size_t		rb;
	uint8_t    *w = make_rows(dt, 16, n, raw, &s, &rb),
			   *x8 = malloc(rb * 16),
			   *back = malloc(rb);
	int			good = 1;

	for (int g = 0; g < 2; g++)
		r1_repack_group(dt, w + rb * 8 * g, rb, n, x8 + rb * 8 * g);
	for (int r = 0; r < 16; r++)
	{
		memset(back, 0xA5, rb);
		r1_repack_row_back(dt, x8 + rb * 8 * (r / 8), n, r % 8, back);
		good &= memcmp(back, w + rb * r, rb) == 0;
	}
	ok(good, "%s n=%d%s: each of 16 rows comes back bit for bit from its x8 group", r1_dtype_name(dt), n,
	   raw ? " (raw bytes)" : "");
	if (dt == R1_Q4_K)
	{
		/* the documented places: row 3's d, sub-block 5's scale (u = 16*2 + 2*3 + 1) */
		int			sc = (w[rb * 3 + 12 + 1] & 0xF) | ((w[rb * 3 + 4 + 1] >> 6) << 4);

		ok(memcmp(x8 + 6, w + rb * 3, 2) == 0 && (x8[32 + 39] & 63) == sc &&
		   memcmp(x8 + 128 + (size_t) (6 * 8 + 3) * 8, w + rb * 3 + 16 + 48, 8) == 0,
		   "%s n=%d%s: d, scales and codes lie where repack.h says", r1_dtype_name(dt), n, raw ? " (raw)" : "");
	}
	free(w);
	free(x8);
	free(back);
}

static void
test_kernel(r1_dtype dt, int n, int raw)
{
	r1_qdot8_fn f = r1_qdot8_kernel(R1_CPU_AVX512_VNNI, dt);
	r1_qdot_fn	ref = r1_qdot_ref[r1_qdot_slot(dt)];
	uint32_t	s = 9 + (uint32_t) n * 7 + (uint32_t) raw + 11 * (uint32_t) dt;
	size_t		rb;
	uint8_t    *w = make_rows(dt, 8, n, raw, &s, &rb),
			   *x8 = malloc(rb * 8);
	float	   *xf = malloc(sizeof(float) * n * 4);
	int8_t	   *q = malloc((size_t) n * 4);
	int			block = r1_qdot_block(dt);
	float	   *d = malloc(sizeof(float) * (n / block) * 4);
	int16_t    *bs = malloc(sizeof(int16_t) * (n / 16) * 4);
	r1_qx		x = {q, d, bs, n};
	int			same = 1;

	for (int i = 0; i < n * 4; i++)
		xf[i] = frand(&s) * (i % 53 == 0 ? 10.0f : 1.0f);
	for (int t = 0; t < 4; t++)
		r1_qdot_quantize(xf + (size_t) t * n, n, block, q + (size_t) t * n, d + (size_t) t * (n / block),
						 bs + (size_t) t * (n / 16));
	r1_repack_group(dt, w, rb, n, x8);
	for (int nt = 1; nt <= 4; nt++)
	{
		float		got[4 * 9];

		for (int k = 0; k < 4 * 9; k++)
			got[k] = -7.0f;
		f(x8, &x, nt, got, 9);
		for (int t = 0; t < 4; t++)
			for (int r = 0; r < 9; r++)
			{
				float		want = -7.0f;

				if (t < nt && r < 8)
				{
					r1_qx		one = {q + (size_t) t * n, d + (size_t) t * (n / block), bs + (size_t) t * (n / 16), n};

					ref(w + rb * r, &one, 1, &want, 1);
				}
				if (memcmp(&want, &got[t * 9 + r], sizeof(float)) != 0)
				{
					if (same)
						diag("%s n=%d nt=%d: row %d token %d got %.9g, reference %.9g", r1_dtype_name(dt), n,
							 nt, r, t, got[t * 9 + r], want);
					same = 0;
				}
			}
	}
	ok(same, "%s n=%d%s: the x8 kernel gives each row the reference's bits, 1 to 4 tokens, and writes nothing else",
	   r1_dtype_name(dt), n, raw ? " (raw bytes)" : "");
	free(w);
	free(x8);
	free(xf);
	free(q);
	free(d);
	free(bs);
}

int
main(void)
{
	int			ns[] = {256, 1536, 8960},
				ns32[] = {32, 224, 1536};

	for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++)
	{
		if (!r1_repack_takes(R1_CPU_AVX512_VNNI, types[k], 8, 256))
			continue;
		for (int i = 0; i < 3; i++)
			for (int raw = 0; raw < 2; raw++)
				test_layout(types[k], types[k] == R1_Q8_0 ? ns32[i] : ns[i], raw);
		if (r1_cpu()->best >= R1_CPU_AVX512_VNNI)
			for (int i = 0; i < 3; i++)
				for (int raw = 0; raw < 2; raw++)
					test_kernel(types[k], types[k] == R1_Q8_0 ? ns32[i] : ns[i], raw);
		else
			diag("skipped: the x8 kernels need AVX-512 VNNI, which this processor lacks");
	}
	ok(r1_repack_takes(R1_CPU_AVX512_VNNI, R1_Q4_K, 1536, 1536) &&
	   !r1_repack_takes(R1_CPU_AVX2, R1_Q4_K, 1536, 1536) &&
	   !r1_repack_takes(R1_CPU_AVX512_VNNI, R1_Q4_K, 1532, 1536) &&
	   !r1_repack_takes(R1_CPU_AVX512_VNNI, R1_Q4_K, 1536, 1000) &&
	   r1_repack_takes(R1_CPU_AVX512_VNNI, R1_Q8_0, 1536, 224) &&
	   !r1_repack_takes(R1_CPU_AVX512_VNNI, R1_Q8_0, 1536, 240) &&
	   !r1_repack_takes(R1_CPU_AVX512_VNNI, R1_Q4_0, 1536, 1536) &&
	   !r1_repack_takes(R1_CPU_AVX512_VNNI, R1_BF16, 1536, 1536),
	   "x8 repacking: only the AVX-512 VNNI path, rows in eights, whole blocks, Q8_0 and the K-quants it has kernels for");
	return done_testing();
}
