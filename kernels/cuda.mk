# kernels/cuda.mk - the CUDA backend, included by the top Makefile.
#
# Used when nvcc is found (/usr/local/cuda/bin/nvcc, else on PATH) and R1_CUDA
# is not 0: kernels/*.cu become build/kernels/*.o in build/libr1engine.a,
# src/engine/backend.c and kernels/backend_cuda.c are compiled with -DR1_WITH_CUDA, and the
# engine's links (bin/r1, the unit tests) get cudart, cuBLAS and cuBLASLt with
# an rpath.  The PostgreSQL extension (r1_pg.so) links none of it: its objects
# and SHLIB_LINK are separate.  Otherwise nothing changes and backend.c's stub
# reports "built without CUDA".
#
# Targets: sm_90 machine code for Hopper (H100/H200) and compute_80 PTX, which
# the driver JIT-compiles on any other GPU with bf16 (Ampere and newer).  No
# sm_90a pass: no kernel here uses wgmma/setmaxnreg yet (cuBLAS brings its own
# Hopper GEMMs).  Override with R1_CUDA_ARCH.
#
# After switching R1_CUDA on or off, `make clean-engine` first: backend.o and
# backend_cuda.o do not know the flag changed.

R1_CUDA ?= 1
NVCC ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))

ifneq ($(R1_CUDA),0)
ifneq ($(strip $(NVCC)),)

CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
R1_CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
NVCC_FLAGS := -O3 -std=c++17 $(R1_CUDA_ARCH) -Xcompiler -fPIC,-Wall,-Wextra,-Wno-unused-parameter \
	-Werror all-warnings -Isrc/engine -Isrc/serve -Ikernels

CUDA_SRCS := $(sort $(wildcard kernels/*.cu))
CUDA_OBJS := $(patsubst kernels/%.cu,build/kernels/%.o,$(CUDA_SRCS))

build/kernels/%.o: kernels/%.cu $(wildcard kernels/*.cuh) kernels/cuda_plan.h src/engine/quant_blocks.h src/engine/philox.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c -o $@ $<

# the archive rule takes every prerequisite ($^)
build/libr1engine.a: $(CUDA_OBJS)

build/engine/backend.o build/kernels/backend_cuda.o: ENGINE_CFLAGS += -DR1_WITH_CUDA -I$(CUDA_HOME)/include -Ikernels
build/kernels/backend_cuda.o: $(wildcard kernels/*.cuh)

ENGINE_LIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcudart -lstdc++

endif
endif
