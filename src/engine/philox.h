/*
 * philox.h - the sampler's random numbers: Philox-4x32-10 (Salmon et al.,
 * "Parallel random numbers: as easy as 1, 2, 3"; the generator cuRAND uses)
 * keyed by the seed, counted by the position, so a draw depends on nothing
 * but (seed, position).  Header-only, compiled by nvcc (the GPU sampler in
 * kernels/r1_kernels.cu) and by the C compiler (sampler.c), so both backends
 * draw the same number.
 */
#ifndef R1_PHILOX_H
#define R1_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define R1PH_FN __host__ __device__ __forceinline__ static
#else
#define R1PH_FN static inline
#endif

R1PH_FN void
r1ph_philox4x32_10(uint32_t ctr[4], uint32_t key[2])
{
	for (int round = 0; round < 10; round++)
	{
		uint64_t	p0 = (uint64_t) 0xD2511F53u * ctr[0];
		uint64_t	p1 = (uint64_t) 0xCD9E8D57u * ctr[2];
		uint32_t	c0 = (uint32_t) (p1 >> 32) ^ ctr[1] ^ key[0];
		uint32_t	c2 = (uint32_t) (p0 >> 32) ^ ctr[3] ^ key[1];

		ctr[1] = (uint32_t) p1;
		ctr[3] = (uint32_t) p0;
		ctr[0] = c0;
		ctr[2] = c2;
		key[0] += 0x9E3779B9u;
		key[1] += 0xBB67AE85u;
	}
}

/* uniform double in [0, 1) with 53 random bits */
R1PH_FN double
r1ph_uniform(uint64_t seed, uint64_t counter)
{
	uint32_t	ctr[4] = {(uint32_t) counter, (uint32_t) (counter >> 32), 0, 0};
	uint32_t	key[2] = {(uint32_t) seed, (uint32_t) (seed >> 32)};
	uint64_t	bits;

	r1ph_philox4x32_10(ctr, key);
	bits = ((uint64_t) ctr[0] << 32 | ctr[1]) >> 11;
	return (double) bits * (1.0 / 9007199254740992.0);
}

#endif							/* R1_PHILOX_H */
