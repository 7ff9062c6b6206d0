/*
 * test_quant.c - ggml's block formats: hand-built blocks (bytes laid out from
 * the format's description) decode to the floats the description gives;
 * encode/decode round trips stay within each format's error; the dot
 * products over quantised rows equal the dot of the dequantised row.
 */
#include <math.h>
#include <string.h>
#include <stdlib.h>

#include "quant.h"
#include "quant_blocks.h"
#include "tap.h"

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
}

static int
all_close(const float *got, const double *want, int n, double tol, const char *what)
{
	for (int i = 0; i < n; i++)
		if (fabs(got[i] - want[i]) > tol)
		{
			diag("%s: element %d: got %.9g, want %.9g", what, i, got[i], want[i]);
			return 0;
		}
	return 1;
}

static void
test_geometry(void)
{
	size_t		b;

	is_int(r1_dtype_block_elems(R1_Q8_0), 32, "Q8_0 blocks hold 32 weights");
	is_int(r1_dtype_block_bytes(R1_Q8_0), 34, "Q8_0 block is 34 bytes");
	is_int(r1_dtype_block_bytes(R1_Q4_K), 144, "Q4_K block is 144 bytes");
	is_int(r1_dtype_block_bytes(R1_Q5_K), 176, "Q5_K block is 176 bytes");
	is_int(r1_dtype_block_bytes(R1_Q6_K), 210, "Q6_K block is 210 bytes");
	is_int(r1_dtype_block_bytes(R1_Q4_0), 18, "Q4_0 block is 18 bytes");
	is_int(r1_dtype_block_bytes(R1_Q5_0), 22, "Q5_0 block is 22 bytes");
	ok(r1_dtype_row_bytes(R1_Q4_K, 512, &b) == 0 && b == 288, "a Q4_K row of 512 is 288 bytes");
	ok(r1_dtype_row_bytes(R1_Q4_K, 320, &b) != 0, "a Q4_K row of 320 is not whole blocks");
	ok(r1_dtype_row_bytes(R1_F32, INT64_MAX, &b) != 0, "a row size that overflows is refused");
	ok(r1_dtype_row_bytes(R1_BF16, 3, &b) == 0 && b == 6, "BF16 rows are 2 bytes a weight");
}

static void
test_q8_0_block(void)
{
	uint8_t		blk[34];
	float		y[32];
	double		want[32];

	put16(blk, 0x3800);			/* fp16 0.5 */
	for (int i = 0; i < 32; i++)
	{
		blk[2 + i] = (uint8_t) (int8_t) (i - 16);
		want[i] = 0.5 * (i - 16);
	}
	r1_dequantize_row(R1_Q8_0, blk, y, 32);
	ok(all_close(y, want, 32, 0, "q8_0"), "Q8_0: d = 0.5, q = i - 16 decodes to 0.5 (i - 16)");
}

/* Q4_0 / Q5_0 from hand-set codes: weight i (0..31) has code (i * 7 + 3) % 16 (or % 32) */
static void
test_q4_0_q5_0_block(int five_bits)
{
	uint8_t		blk[22];
	float		y[32];
	double		want[32];
	int			mod = five_bits ? 32 : 16,
				bias = five_bits ? 16 : 8;
	uint32_t	qh = 0;
	uint8_t    *qs = blk + (five_bits ? 6 : 2);

	memset(blk, 0, sizeof(blk));
	put16(blk, 0x3400);			/* fp16 0.25 */
	for (int i = 0; i < 32; i++)
	{
		int			c = (i * 7 + 3) % mod;

		want[i] = 0.25 * (c - bias);
		/* weight i < 16: low nibble of byte i; weight i >= 16: high nibble of byte i - 16 */
		qs[i % 16] |= (uint8_t) ((c & 0xF) << (i < 16 ? 0 : 4));
		qh |= (uint32_t) (c >> 4) << i;
	}
	if (five_bits)
	{
		blk[2] = (uint8_t) qh;
		blk[3] = (uint8_t) (qh >> 8);
		blk[4] = (uint8_t) (qh >> 16);
		blk[5] = (uint8_t) (qh >> 24);
	}
	r1_dequantize_row(five_bits ? R1_Q5_0 : R1_Q4_0, blk, y, 32);
	ok(all_close(y, want, 32, 0, five_bits ? "q5_0" : "q4_0"), "%s: hand-set codes decode to d (q - %d)",
	   five_bits ? "Q5_0" : "Q4_0", bias);
}

static void
test_q4_k_block(int five_bits)
{
	/* sub-block scales and mins, some >= 16 to use the packed high bits */
	static const int ls[8] = {1, 2, 3, 4, 5, 6, 7, 40};
	static const int lm[8] = {0, 2, 4, 6, 8, 10, 50, 14};
	uint8_t		blk[176];
	uint8_t    *sc = blk + 4;
	uint8_t    *qh = blk + 16;
	uint8_t    *ql = five_bits ? blk + 48 : blk + 16;
	float		y[256];
	double		want[256];

	memset(blk, 0, sizeof(blk));
	put16(blk, 0x3C00);			/* d = 1 */
	put16(blk + 2, 0x3800);		/* dmin = 0.5 */
	/* bytes 0-3: scale low 6 bits of j<4, top 2 bits: bits 4-5 of scale j+4 */
	sc[0] = 1;
	sc[1] = 2;
	sc[2] = 3;
	sc[3] = 4 | ((40 >> 4) << 6);
	/* bytes 4-7: min low 6 bits of j<4, top 2 bits: bits 4-5 of min j+4 */
	sc[4] = 0;
	sc[5] = 2;
	sc[6] = 4 | ((50 >> 4) << 6);
	sc[7] = 6;
	/* bytes 8-11: low nibble: scale j+4 bits 0-3; high nibble: min j+4 bits 0-3 */
	sc[8] = 5 | (8 << 4);
	sc[9] = 6 | (10 << 4);
	sc[10] = 7 | ((50 & 0xF) << 4);
	sc[11] = (40 & 0xF) | (14 << 4);
	for (int k = 0; k < 4; k++)
		for (int l = 0; l < 32; l++)
		{
			int			lo = (l + k) % 16,
						hi = (l * 3 + 1) % 16,
						lo5 = five_bits ? ((l + k) % 2) : 0,
						hi5 = five_bits ? ((l / 2 + k) % 2) : 0;

			ql[32 * k + l] = (uint8_t) (lo | (hi << 4));
			if (lo5)
				qh[l] |= (uint8_t) (1 << (2 * k));
			if (hi5)
				qh[l] |= (uint8_t) (2 << (2 * k));
			want[64 * k + l] = 1.0 * ls[2 * k] * (lo + 16 * lo5) - 0.5 * lm[2 * k];
			want[64 * k + 32 + l] = 1.0 * ls[2 * k + 1] * (hi + 16 * hi5) - 0.5 * lm[2 * k + 1];
		}
	r1_dequantize_row(five_bits ? R1_Q5_K : R1_Q4_K, blk, y, 256);
	ok(all_close(y, want, 256, 0, five_bits ? "q5_k" : "q4_k"),
	   "%s: a hand-packed block (6-bit scales and mins, high bits used) decodes exactly",
	   five_bits ? "Q5_K" : "Q4_K");
}

static void
test_q6_k_block(void)
{
	uint8_t		blk[210];
	float		y[256];
	double		want[256];
	int			L[256];

	memset(blk, 0, sizeof(blk));
	for (int e = 0; e < 256; e++)
		L[e] = (e * 5 + 3) % 64;
	for (int j = 0; j < 16; j++)
		blk[192 + j] = (uint8_t) (int8_t) (j - 8);
	put16(blk + 208, 0x3400);	/* d = 0.25 */
	for (int h = 0; h < 2; h++)
		for (int l = 0; l < 32; l++)
		{
			int			q1 = L[128 * h + l],
						q2 = L[128 * h + l + 32],
						q3 = L[128 * h + l + 64],
						q4 = L[128 * h + l + 96];

			blk[64 * h + l] = (uint8_t) ((q1 & 15) | ((q3 & 15) << 4));
			blk[64 * h + l + 32] = (uint8_t) ((q2 & 15) | ((q4 & 15) << 4));
			blk[128 + 32 * h + l] = (uint8_t) ((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
		}
	for (int e = 0; e < 256; e++)
		want[e] = 0.25 * (e / 16 - 8) * (L[e] - 32);
	r1_dequantize_row(R1_Q6_K, blk, y, 256);
	ok(all_close(y, want, 256, 0, "q6_k"), "Q6_K: a hand-packed block decodes to d * scale * (q - 32)");
}

static float
frand(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return ((*s >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

static void
test_round_trip(r1_dtype dt, double max_rel_rms)
{
	enum { N = 1024 };
	float		x[N],
				y[N];
	uint8_t		q[N * 2];
	uint32_t	s = 12345;
	double		se = 0,
				sx = 0;

	for (int i = 0; i < N; i++)
		x[i] = frand(&s) * (1.0f + (i / 256) * 3.0f) + (i % 256 < 32 ? 0.5f : 0.0f);
	ok(r1_quantize_row(dt, x, q, N) == 0, "%s: encode 1024 weights", r1_dtype_name(dt));
	r1_dequantize_row(dt, q, y, N);
	for (int i = 0; i < N; i++)
	{
		se += (double) (x[i] - y[i]) * (x[i] - y[i]);
		sx += (double) x[i] * x[i];
	}
	ok(sqrt(se / sx) < max_rel_rms, "%s: round trip relative RMS error %.4f < %.3f",
	   r1_dtype_name(dt), sqrt(se / sx), max_rel_rms);
	/* decoding is deterministic and re-encoding decoded values is stable */
	{
		uint8_t		q2[N * 2];
		float		z[N];

		r1_quantize_row(dt, y, q2, N);
		r1_dequantize_row(dt, q2, z, N);
		se = 0;
		for (int i = 0; i < N; i++)
			se += (double) (z[i] - y[i]) * (z[i] - y[i]);
		ok(sqrt(se / sx) < max_rel_rms / 2, "%s: re-encoding decoded weights barely moves them (%.5f)",
		   r1_dtype_name(dt), sqrt(se / sx));
	}
}

static void
test_dot(r1_dtype dt)
{
	enum { N = 768 };
	float		w[N],
				wd[N],
				x[4 * N],
				out[8];
	uint8_t		q[N * 2];
	uint32_t	s = 99;
	int			good = 1;

	for (int i = 0; i < N; i++)
		w[i] = frand(&s);
	for (int i = 0; i < 4 * N; i++)
		x[i] = frand(&s);
	r1_quantize_row(dt, w, q, N);
	r1_dequantize_row(dt, q, wd, N);
	r1_quant_dot4(dt, q, x, N, out, 2);
	for (int t = 0; t < 4; t++)
	{
		double		ref = 0,
					mag = 0;
		float		d = r1_quant_dot(dt, q, x + t * N, N);

		for (int i = 0; i < N; i++)
		{
			ref += (double) wd[i] * x[t * N + i];
			mag += fabs((double) wd[i] * x[t * N + i]);
		}
		if (fabs(d - ref) > 1e-6 * mag || fabs(out[2 * t] - ref) > 1e-6 * mag)
		{
			diag("%s vector %d: dot %.9g, dot4 %.9g, float64 dot of the dequantised row %.9g",
				 r1_dtype_name(dt), t, d, out[2 * t], ref);
			good = 0;
		}
	}
	ok(good, "%s: dot and dot4 equal the float64 dot of the dequantised row (1e-6 of sum |w x|)",
	   r1_dtype_name(dt));
	{
		int			same = 1;

		/* batch invariance: a vector's dot must not depend on the other three */
		for (int t = 0; t < 4; t++)
		{
			float		d = r1_quant_dot(dt, q, x + t * N, N);

			same &= memcmp(&d, &out[2 * t], sizeof(float)) == 0;
		}
		ok(same, "%s: dot4 is bitwise four dots", r1_dtype_name(dt));
	}
}

/* quant_blocks.h (the CUDA kernels' decoder) against quant.c's, bitwise, at every position */
static void
test_weights8(r1_dtype dt)
{
	enum { N = 512 };
	float		w[N],
				ref[N],
				got[8];
	uint8_t		q[N * 4];
	uint32_t	s = 7;
	int			bad = -1;

	for (int i = 0; i < N; i++)
		w[i] = frand(&s) * (1 + i % 5);
	r1_quantize_row(dt, w, q, N);
	r1_dequantize_row(dt, q, ref, N);
	for (int k0 = 0; k0 < N && bad < 0; k0 += 8)
	{
		r1qb_weights8(dt, q, k0, got);
		if (memcmp(got, ref + k0, sizeof(got)) != 0)
			bad = k0;
	}
	if (!ok(bad < 0, "%s: r1qb_weights8 equals r1_dequantize_row bitwise at every position", r1_dtype_name(dt)))
		diag("  first difference in weights [%d, %d): %.9g vs %.9g", bad, bad + 8, got[0], ref[bad]);
}

int
main(void)
{
	test_geometry();
	test_q8_0_block();
	test_q4_k_block(0);
	test_q4_k_block(1);
	test_q6_k_block();
	test_q4_0_q5_0_block(0);
	test_q4_0_q5_0_block(1);
	test_round_trip(R1_Q8_0, 0.01);
	test_round_trip(R1_Q5_0, 0.06);
	test_round_trip(R1_Q4_0, 0.12);
	test_round_trip(R1_Q6_K, 0.03);
	test_round_trip(R1_Q5_K, 0.06);
	test_round_trip(R1_Q4_K, 0.12);
	test_round_trip(R1_F16, 0.001);
	test_round_trip(R1_BF16, 0.005);
	test_dot(R1_Q8_0);
	test_dot(R1_Q4_K);
	test_dot(R1_Q5_K);
	test_dot(R1_Q6_K);
	test_dot(R1_Q4_0);
	test_dot(R1_Q5_0);
	test_weights8(R1_Q8_0);
	test_weights8(R1_Q4_K);
	test_weights8(R1_Q5_K);
	test_weights8(R1_Q6_K);
	test_weights8(R1_Q4_0);
	test_weights8(R1_Q5_0);
	test_weights8(R1_BF16);
	ok(r1_quantize_row(R1_I64, NULL, NULL, 0) != 0, "encoding to a non-weight dtype is refused");
	return done_testing();
}
