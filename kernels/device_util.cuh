/*
 * device_util.cuh - small device helpers shared by the kernel files: warp
 * reductions and the 16-byte bf16 load.
 */
#ifndef R1_DEVICE_UTIL_CUH
#define R1_DEVICE_UTIL_CUH

#include <cuda_bf16.h>

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float
warp_sum(float v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ float
warp_max(float v)
{
#pragma unroll
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* 8 bf16 (one 16-byte load) to float */
__device__ __forceinline__ void
load8(const bf16 *p, float f[8])
{
	uint4		raw = *reinterpret_cast<const uint4 *>(p);
	const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&raw);

#pragma unroll
	for (int i = 0; i < 4; i++)
	{
		float2		v = __bfloat1622float2(h[i]);

		f[2 * i] = v.x;
		f[2 * i + 1] = v.y;
	}
}

#endif
