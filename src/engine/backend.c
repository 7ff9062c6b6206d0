/*
 * backend.c - choosing a backend by device name.
 */
#include "backend.h"

#include <stdio.h>
#include <string.h>

#ifndef R1_WITH_CUDA
int
r1_backend_cuda_create(r1_backend **out, const r1_model *m, int max_slots, int max_ctx,
					   double gpu_memory_fraction, r1_error *err)
{
	*out = NULL;
	return r1_fail(err, "this build of r1 has no CUDA backend (nvcc was not found at build time)");
}
#endif

int
r1_backend_create(r1_backend **out, const char *device, const r1_model *m, int max_slots,
				  int max_ctx, int threads, double gpu_memory_fraction,
				  char *note, size_t note_len, r1_error *err)
{
	if (note && note_len)
		note[0] = '\0';
	if (!device || strcmp(device, "auto") == 0)
	{
		r1_error	cuda_err;

		if (r1_backend_cuda_create(out, m, max_slots, max_ctx, gpu_memory_fraction, &cuda_err) == 0)
			return 0;
		if (note && note_len)
			snprintf(note, note_len, "no usable GPU, running on the CPU: %s", cuda_err.msg);
		return r1_backend_cpu_create(out, m, max_slots, max_ctx, threads, err);
	}
	if (strcmp(device, "cpu") == 0)
		return r1_backend_cpu_create(out, m, max_slots, max_ctx, threads, err);
	if (strcmp(device, "cuda") == 0)
		return r1_backend_cuda_create(out, m, max_slots, max_ctx, gpu_memory_fraction, err);
	return r1_fail(err, "unknown device \"%s\": use cpu, cuda or auto", device);
}
