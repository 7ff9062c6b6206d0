/*
 * bf16_amx.c - the prompt GEMM of bf16 weights on AMX-BF16 tiles
 * (bf16dot.h's r1_bf16_amx_*), for batches that need not be batch-invariant.
 *
 * Sixteen weight rows are the tile multiply's A operand as the file stores
 * them (32 weights of each row a load, rows 2n bytes apart); the tokens'
 * activations, rounded to bf16 as for vdpbf16ps, are packed once per layer
 * into its B layout: tile rows are pairs of inputs, each row the pairs of
 * 16 tokens.  TDPBF16PS accumulates the whole row in float32 in the C tile,
 * so a tile is stored once per 16 rows x 16 tokens; two token groups share
 * each A load.  The float sums run in the tile unit's order, not
 * r1_bf16dot_avx512's, so results agree to rounding, not bit for bit.
 */
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,amx-tile,amx-bf16")
#include "bf16dot.h"

#include <immintrin.h>
#include <string.h>

#include "amx.h"
#include "cpu_features.h"

int
r1_bf16_amx_takes(int n)
{
	return r1_cpu()->amx_bf16 && n % 32 == 0 && n > 0;
}

size_t
r1_bf16_amx_pack_bytes(int T, int n)
{
	return (size_t) (T + 15) / 16 * 16 * (size_t) n * sizeof(uint16_t) + 64;
}

void
r1_bf16_amx_pack(const uint16_t *x, int T, int n, uint16_t *xp, int g0, int g1)
{
	for (int g = g0; g < g1; g++)
	{
		uint32_t   *dst = (uint32_t *) (xp + (size_t) g * 16 * n);

		for (int tok = 0; tok < 16; tok++)
		{
			int			t = 16 * g + tok;
			const uint32_t *src = (const uint32_t *) (x + (size_t) t * n);

			/* pair p of token tok at row p, column tok */
			for (int p = 0; p < n / 2; p++)
				dst[(size_t) p * 16 + tok] = t < T ? src[p] : 0;
		}
	}
}

/* tiles 0, 1: C (nr rows x 16 tokens) of two token groups; 2: A (nr rows x 32 weights); 3, 4: B */
static void
tiles_for(int nr)
{
	r1_tilecfg	c __attribute__((aligned(64)));

	r1_tilecfg_init(&c);
	for (int t = 0; t < 5; t++)
	{
		c.rows[t] = (uint8_t) (t < 3 ? nr : 16);
		c.colsb[t] = 64;
	}
	_tile_loadconfig(&c);
}

void
r1_bf16_amx_rows(const uint16_t *w, int nr, const uint16_t *xp, int T, int n, float *out, size_t ldo)
{
	const int	groups = (T + 15) / 16;
	const size_t wstride = (size_t) n * sizeof(uint16_t);
	float		res[2][16][16] __attribute__((aligned(64)));

	tiles_for(nr);
	for (int g = 0; g < groups; g += 2)
	{
		const uint16_t *b0 = xp + (size_t) g * 16 * n,
				   *b1 = b0 + (size_t) 16 * n;
		int			two = g + 1 < groups;

		_tile_zero(0);
		_tile_zero(1);
		for (int k = 0; k < n; k += 32)
		{
			/* inputs k .. k + 31: 16 pairs, each a B row of 16 tokens */
			_tile_loadd(2, w + k, wstride);
			_tile_loadd(3, b0 + (size_t) k * 16, 64);
			_tile_dpbf16ps(0, 2, 3);
			if (two)
			{
				_tile_loadd(4, b1 + (size_t) k * 16, 64);
				_tile_dpbf16ps(1, 2, 4);
			}
		}
		_tile_stored(0, res[0], 64);
		if (two)
			_tile_stored(1, res[1], 64);
		for (int h = 0; h <= two; h++)
			for (int tok = 0; tok < 16 && 16 * (g + h) + tok < T; tok++)
				for (int r = 0; r < nr; r++)
					out[(size_t) (16 * (g + h) + tok) * ldo + r] = res[h][r][tok];
	}
	_tile_release();
}
