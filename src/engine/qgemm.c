/*
 * qgemm.c - which weights the prompt GEMM serves, and the packing of a
 * prompt's activations into its tiles (qgemm.h has the layout).  Plain C:
 * the index logic is the part a unit test checks on every machine; the
 * kernels are in qgemm_avx512.c.
 */
#include "qgemm.h"

#include "bf16dot.h"

#include <string.h>

static size_t
align64(size_t v)
{
	return (v + 63) & ~(size_t) 63;
}

size_t
r1_qgemm_pack_bytes(int T, int n)
{
	size_t		tiles = (size_t) (T + R1_QGEMM_TILE - 1) / R1_QGEMM_TILE;

	/*
	 * q 8n, dxv at most 4 pairs * n/32 * 64 = 8n, bs n, dx8 n/8 a tile; a
	 * multiple of 64 for aligned_alloc
	 */
	size_t		groups = (size_t) (T + 15) / 16,
				vnni = align64(tiles * (18 * (size_t) n) + 4 * 64),

	/*
	 * AMX: q 16n, dxv at most n/32 * 64 = 2n, bsv at most n/16 * 64 = 4n a
	 * group of 16
	 */
				amx = align64(groups * (22 * (size_t) n) + 4 * 64);

	size_t		bf = r1_bf16_amx_pack_bytes(T, n);

	return vnni > amx ? (vnni > bf ? vnni : bf) : (amx > bf ? amx : bf);
}

int
r1_qgemm_takes(r1_cpu_path path, r1_dtype dt, int n)
{
	int			block = r1_qdot_block(dt);

	return path == R1_CPU_AVX512_VNNI && block && n % block == 0 && n > 0;
}

void
r1_qgemm_layout(r1_dtype dt, int n, int T, void *buf, r1_qxp *out)
{
	const int	block = r1_qdot_block(dt),
				k = block == 256;
	uint8_t    *p = buf;

	out->n = n;
	out->block = block;
	out->T = T;
	out->tiles = (T + R1_QGEMM_TILE - 1) / R1_QGEMM_TILE;
	out->q = p;
	p += align64((size_t) out->tiles * R1_QGEMM_TILE * n);
	out->dxv = (float *) p;
	p += align64((size_t) out->tiles * 4 * (n / block) * 16 * sizeof(float));
	out->bs = k ? (int16_t *) p : NULL;
	p += k ? align64((size_t) out->tiles * (n / 256) * 128 * sizeof(int16_t)) : 0;
	out->dx8 = k ? (float *) p : NULL;
}

void
r1_qgemm_pack(const r1_qx *x, const r1_qxp *out, int tile0, int tile1)
{
	const int	n = out->n,
				T = out->T,
				nb = n / out->block,
				ng = n / 32;
	const int	k = out->block == 256;
	const uint8_t flip = k ? 0 : 0x80;	/* 32-weight blocks: codes + 128 */

	for (int tile = tile0; tile < tile1; tile++)
	{
		for (int pr = 4 * tile; pr < 4 * tile + 4; pr++)
		{
			uint8_t    *q = out->q + (size_t) pr * ng * 64;
			float	   *dv = out->dxv + (size_t) pr * nb * 16;

			for (int h = 0; h < 2; h++)
			{
				int			t = 2 * pr + h;
				const int8_t *src = x->q + (size_t) t * n;

				for (int g = 0; g < ng; g++)
				{
					uint8_t    *dst = q + (size_t) g * 64 + 32 * h;

					if (t < T)
						for (int i = 0; i < 32; i++)
							dst[i] = (uint8_t) src[32 * g + i] ^ flip;
					else
						memset(dst, flip, 32);
				}
				for (int b = 0; b < nb; b++)
					for (int i = 0; i < 8; i++)
						dv[(size_t) b * 16 + 8 * h + i] = t < T ? x->d[(size_t) t * nb + b] : 0.0f;
			}
		}
		if (!k)
			continue;
		for (int sb = 0; sb < n / 256; sb++)
		{
			int16_t    *bs = out->bs + ((size_t) tile * (n / 256) + sb) * 128;
			float	   *d8 = out->dx8 + ((size_t) tile * (n / 256) + sb) * 8;

			for (int tt = 0; tt < R1_QGEMM_TILE; tt++)
			{
				int			t = tile * R1_QGEMM_TILE + tt;
				const int16_t *s = x->bsum + (size_t) t * (n / 16) + 16 * sb;

				d8[tt] = t < T ? x->d[(size_t) t * nb + sb] : 0.0f;
				for (int j = 0; j < 8; j++)
				{
					bs[16 * j + 2 * tt] = t < T ? s[2 * j] : 0;
					bs[16 * j + 2 * tt + 1] = t < T ? s[2 * j + 1] : 0;
				}
			}
		}
	}
}

int
r1_qgemm_amx_takes(r1_dtype dt, int n)
{
	return r1_cpu()->amx_int8 && r1_qgemm_takes(R1_CPU_AVX512_VNNI, dt, n);
}

void
r1_qgemm_amx_layout(r1_dtype dt, int n, int T, void *buf, r1_qxa *out)
{
	uint8_t    *p = buf;

	out->n = n;
	out->block = r1_qdot_block(dt);
	out->sub = dt == R1_Q6_K ? 16 : 32;
	out->T = T;
	out->groups = (T + 15) / 16;
	out->q = p;
	p += align64((size_t) out->groups * 16 * n);
	out->dxv = (float *) p;
	p += align64((size_t) out->groups * (n / out->block) * 16 * sizeof(float));
	out->bsv = out->block == 256 ? (float *) p : NULL;
}

void
r1_qgemm_amx_pack(const r1_qx *x, const r1_qxa *p, int g0, int g1)
{
	const int	n = p->n,
				nb = n / p->block,
				ns = n / p->sub;

	for (int g = g0; g < g1; g++)
		for (int tok = 0; tok < 16; tok++)
		{
			int			t = 16 * g + tok,
						in = t < p->T;
			uint8_t    *q = p->q + (size_t) g * 16 * n + 4 * tok;
			const int8_t *src = x->q + (size_t) t * n;

			for (int k = 0; k < n / 4; k++)
			{
				if (in)
					memcpy(q + 64 * (size_t) k, src + 4 * k, 4);
				else
					memset(q + 64 * (size_t) k, 0, 4);
			}
			for (int b = 0; b < nb; b++)
				p->dxv[((size_t) g * nb + b) * 16 + tok] = in ? x->d[(size_t) t * nb + b] : 0.0f;
			if (!p->bsv)
				continue;
			for (int s = 0; s < ns; s++)
			{
				const int16_t *bs = x->bsum + (size_t) t * (n / 16);
				int			v = !in ? 0 : p->sub == 16 ? bs[s] : bs[2 * s] + bs[2 * s + 1];

				p->bsv[((size_t) g * ns + s) * 16 + tok] = (float) v;
			}
		}
}
