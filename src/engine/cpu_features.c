/*
 * cpu_features.c - cpuid once, then the kernel path (cpu_features.h).
 *
 * GCC's __builtin_cpu_supports reads cpuid and, for the AVX-512 features,
 * checks that the OS saves the zmm state (xgetbv), which a hand-written
 * cpuid would have to repeat.
 */
#include "cpu_features.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Linux: ask for the AMX tile data state (arch_prctl(2), asm/prctl.h) */
#define R1_ARCH_REQ_XCOMP_PERM 0x1023
#define R1_XFEATURE_XTILEDATA 18

static r1_cpu_info info;
static char features[160];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void
add_feature(const char *name)
{
	if (features[0])
		strncat(features, ",", sizeof(features) - strlen(features) - 1);
	strncat(features, name, sizeof(features) - strlen(features) - 1);
}

static void
detect(void)
{
	const char *force = getenv("R1_CPU_PATH");

	__builtin_cpu_init();
	info.avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	info.avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
		__builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
	info.avx512_vnni = info.avx512 && __builtin_cpu_supports("avx512vnni");
	info.avx512_bf16 = info.avx512 && __builtin_cpu_supports("avx512bf16");
	info.best = info.avx512_vnni ? R1_CPU_AVX512_VNNI : info.avx2 ? R1_CPU_AVX2 : R1_CPU_GENERIC;
	info.path = info.best;
	if (force)
	{
		for (int p = 0; p < R1_CPU_N_PATHS; p++)
			if (strcmp(force, r1_cpu_path_name((r1_cpu_path) p)) == 0 && p < (int) info.best)
				info.path = (r1_cpu_path) p;
	}
	{
		const char *amx = getenv("R1_CPU_AMX");

		/*
		 * a process must ask Linux for the tiles' 8 kB of state before its
		 * first tile instruction; where it says no (an older kernel, a VM
		 * that hides it, valgrind) the tiles stay unused
		 */
		int			tiles = info.path == R1_CPU_AVX512_VNNI && !(amx && strcmp(amx, "0") == 0) &&
		__builtin_cpu_supports("amx-tile") &&
		syscall(SYS_arch_prctl, R1_ARCH_REQ_XCOMP_PERM, R1_XFEATURE_XTILEDATA) == 0;

		info.amx_int8 = tiles && __builtin_cpu_supports("amx-int8");
		info.amx_bf16 = tiles && info.avx512_bf16 && __builtin_cpu_supports("amx-bf16");
	}
	if (info.avx2)
		add_feature("avx2,fma,f16c");
	if (info.avx512)
		add_feature("avx512f,avx512bw,avx512dq,avx512vl");
	if (info.avx512_vnni)
		add_feature("avx512vnni");
	if (info.avx512_bf16)
		add_feature("avx512bf16");
	if (info.amx_int8)
		add_feature("amx_int8");
	if (info.amx_bf16)
		add_feature("amx_bf16");
}

const r1_cpu_info *
r1_cpu(void)
{
	pthread_once(&once, detect);
	return &info;
}

const char *
r1_cpu_path_name(r1_cpu_path p)
{
	switch (p)
	{
		case R1_CPU_AVX2:
			return "avx2";
		case R1_CPU_AVX512_VNNI:
			return "avx512_vnni";
		default:
			return "generic";
	}
}

const char *
r1_cpu_features_string(void)
{
	r1_cpu();
	return features;
}
