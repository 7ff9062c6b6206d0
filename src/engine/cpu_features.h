/*
 * cpu_features.h - what the processor can do, asked once (cpuid), and the
 * kernel path the CPU backend runs on it.
 *
 * The engine is compiled for x86-64-v3 (AVX2, FMA, F16C): that is the
 * baseline every build can run.  Kernels for wider instruction sets are
 * compiled per function or per file with target attributes and chosen here at
 * run time, so `make install` stays portable.
 *
 *   R1_CPU_GENERIC      plain C (the reference of the integer kernels; only
 *                       when forced, since the build itself needs AVX2)
 *   R1_CPU_AVX2         AVX2 + FMA + F16C: vpmaddubsw integer dots
 *   R1_CPU_AVX512_VNNI  AVX-512 F/BW/VL + VNNI: vpdpbusd integer dots (and
 *                       vdpbf16ps for bf16 weights where AVX512_BF16 exists)
 *
 * R1_CPU_PATH=generic|avx2|avx512_vnni in the environment lowers the choice
 * (for A/B measurements and tests); it never raises it past the hardware.
 *
 * On the AVX-512 VNNI path, AMX-INT8 tiles (Sapphire Rapids and later, where
 * Linux grants the process their state) also run the prompt GEMM of
 * quantised weights when a batch need not be batch-invariant (qgemm.h),
 * and AMX-BF16 that of bf16 weights (bf16dot.h); R1_CPU_AMX=0 in the
 * environment turns both off.
 */
#ifndef R1_CPU_FEATURES_H
#define R1_CPU_FEATURES_H

typedef enum r1_cpu_path
{
	R1_CPU_GENERIC = 0,
	R1_CPU_AVX2 = 1,
	R1_CPU_AVX512_VNNI = 2,
} r1_cpu_path;

#define R1_CPU_N_PATHS 3

typedef struct r1_cpu_info
{
	int			avx2,			/* AVX2 + FMA + F16C */
				avx512,			/* AVX-512 F, BW, DQ and VL (and the OS saves
								 * zmm) */
				avx512_vnni,
				avx512_bf16,
				amx_int8,		/* AMX tiles with int8 products, granted by
								 * the OS, on the AVX-512 VNNI path */
				amx_bf16;		/* and with bf16 products (and avx512_bf16) */
	r1_cpu_path best;			/* the widest path the hardware runs */
	r1_cpu_path path;			/* the path in use (best, or lower by
								 * R1_CPU_PATH) */
} r1_cpu_info;

/* Asked once; thread-safe after the first call. */
const r1_cpu_info *r1_cpu(void);

/* "generic", "avx2", "avx512_vnni" */
const char *r1_cpu_path_name(r1_cpu_path p);

/* Comma-separated features seen, e.g. "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16,amx_int8". */
const char *r1_cpu_features_string(void);

#endif							/* R1_CPU_FEATURES_H */
