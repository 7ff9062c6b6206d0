# r1_pg - reasoning models in PostgreSQL.
#
# `make` builds the engine library, the `r1` tool (bin/r1) and the extension;
# `make unit` runs the engine's C unit tests.

ENGINE_SRCS := $(sort $(wildcard src/engine/*.c))
ENGINE_OBJS := $(patsubst src/%.c,build/%.o,$(ENGINE_SRCS))
UNIT_SRCS := $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS := $(patsubst test/unit/%.c,build/test/%,$(UNIT_SRCS))

ENGINE_CFLAGS := -std=gnu11 -O2 -g -march=x86-64-v3 -fPIC -fopenmp -Wall -Wextra \
	-Wno-unused-parameter -Wno-sign-compare -Isrc/engine
ENGINE_LIBS := -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm -lpthread -fopenmp

.PHONY: engine unit clean-engine
engine: build/libr1engine.a bin/r1

build/%.o: src/%.c $(wildcard src/engine/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -c -o $@ $<

build/libr1engine.a: $(ENGINE_OBJS)
	rm -f $@
	ar rcs $@ $^

bin/r1: build/tool/r1.o build/libr1engine.a
	@mkdir -p bin
	$(CC) -o $@ $^ $(ENGINE_LIBS)

build/test/%: test/unit/%.c test/unit/tap.h build/libr1engine.a
	@mkdir -p build/test
	$(CC) $(ENGINE_CFLAGS) -Itest/unit -o $@ $< build/libr1engine.a $(ENGINE_LIBS)

unit: $(UNIT_BINS) bin/r1
	prove --exec '' $(UNIT_BINS)

clean-engine:
	rm -rf build bin

# CUDA backend rules (kernels/cuda.mk) are used when nvcc is found.
-include kernels/cuda.mk
