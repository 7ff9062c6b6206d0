# r1_pg - reasoning models in PostgreSQL.
#
# `make` builds the engine library, the `r1` tool (bin/r1) and the extension
# (r1_pg.so); `make install` installs the extension and bin/r1 (as
# $(bindir)/r1, where the r1 engine worker finds it: r1.engine_path);
# `make unit` runs the engine's C unit tests; test/run-extension-tests.sh runs
# the extension's tests against a throwaway cluster.

# The default goal comes first; PGXS adds the extension to it below.
all: engine

ENGINE_SRCS := $(sort $(wildcard src/engine/*.c))
# the CUDA backend's C side lives with its kernels (kernels/cuda.mk): plain C,
# compiled into every build (backend_cuda.c is empty without R1_WITH_CUDA)
KERNEL_C_SRCS := $(sort $(wildcard kernels/*.c))
ENGINE_OBJS := $(patsubst src/%.c,build/%.o,$(ENGINE_SRCS)) $(patsubst kernels/%.c,build/kernels/%.o,$(KERNEL_C_SRCS))
ENGINE_HDRS := $(wildcard src/engine/*.h) $(wildcard kernels/*.h) src/serve/protocol.h
UNIT_SRCS := $(sort $(wildcard test/unit/test_*.c))
UNIT_BINS := $(patsubst test/unit/%.c,build/test/%,$(UNIT_SRCS))

ENGINE_CFLAGS := -std=gnu11 -O2 -g -march=x86-64-v3 -fPIC -fopenmp -Wall -Wextra \
	-Wno-unused-parameter -Wno-sign-compare -Isrc/engine -Isrc/serve -Ikernels
# the build's version (src/engine/version.c): the extension version and the git
# commit; version.o is rebuilt when either changes
R1_VERSION := $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" r1_pg.control)
R1_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null)
R1_VERSION_DEFS := -DR1_VERSION='"$(R1_VERSION)"' -DR1_COMMIT='"$(R1_COMMIT)"'
R1_VERSION_STAMP := build/version-$(R1_VERSION)-$(R1_COMMIT).stamp

ENGINE_LIBS := -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm -lpthread -fopenmp
# the r1 tool's own modules (r1 pull: fetch.c, pull.c) and the engine host
# (r1 serve: src/serve, protocol.h shared with the extension); only bin/r1
# links curl and libcrypto
TOOL_SRCS := $(sort $(wildcard src/tool/*.c)) $(sort $(wildcard src/serve/*.c))
TOOL_OBJS := $(patsubst src/%.c,build/%.o,$(TOOL_SRCS))
TOOL_LIBS := -lcurl -lcrypto

.PHONY: engine unit clean-engine install-r1 uninstall-r1
engine: build/libr1engine.a bin/r1

build/%.o: src/%.c $(ENGINE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -c -o $@ $<

build/kernels/%.o: kernels/%.c $(ENGINE_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -c -o $@ $<

$(R1_VERSION_STAMP):
	@mkdir -p build
	rm -f build/version-*.stamp
	touch $@

build/engine/version.o: src/engine/version.c src/engine/version.h $(R1_VERSION_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) $(R1_VERSION_DEFS) -c -o $@ $<

build/tool/%.o: src/tool/%.c $(ENGINE_HDRS) $(wildcard src/tool/*.h) $(wildcard src/serve/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -c -o $@ $<

build/serve/%.o: src/serve/%.c $(ENGINE_HDRS) $(wildcard src/serve/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ENGINE_CFLAGS) -c -o $@ $<

build/libr1engine.a: $(ENGINE_OBJS)
	rm -f $@
	ar rcs $@ $^

bin/r1: $(TOOL_OBJS) build/libr1engine.a
	@mkdir -p bin
	$(CC) -o $@ $^ $(TOOL_LIBS) $(ENGINE_LIBS)

build/test/%: test/unit/%.c test/unit/tap.h build/libr1engine.a
	@mkdir -p build/test
	$(CC) $(ENGINE_CFLAGS) -Itest/unit -o $@ $< build/libr1engine.a $(ENGINE_LIBS)

unit: $(UNIT_BINS) bin/r1
	prove --exec '' $(UNIT_BINS)

clean-engine:
	rm -rf build bin

# ---- the extension (PGXS) ----
#
# The backend links only the engine's pure-C pieces it needs (chat: the
# \boxed{} extractor; util; answer_equal: r1_answers_equal), compiled again
# without -march and without OpenMP: no forward pass, no CUDA, no BLAS in a PostgreSQL process.
EXTENSION = r1_pg
DATA = $(wildcard sql/r1_pg--*.sql)
MODULE_big = r1_pg
R1_PG_ENGINE_OBJS = build/pg/chat.o build/pg/util.o build/pg/version.o build/pg/answer_equal.o
# the extension: every C file directly under src/ (the engine's are in subfolders)
R1_PG_OBJS = $(patsubst %.c,%.o,$(wildcard src/*.c))
OBJS = $(R1_PG_OBJS) $(R1_PG_ENGINE_OBJS)
# libpq, for a standby's traces sent to the primary and job items run on
# r1.job_servers (src/remote.c), linked as postgres_fdw and dblink do
PG_CPPFLAGS = -Isrc -I$(libpq_srcdir)
SHLIB_LINK_INTERNAL = $(libpq)
SHLIB_LINK =
EXTRA_CLEAN = build/pg build/regress

# pg_regress: queries in test/sql, expected outputs in expected/ (PGXS's
# top-level layout; PostgreSQL 15's pg_regress reads both under one input
# directory, so build/regress-in links them: test/regress-inputs.sh);
# `make installcheck` needs a running server with r1_pg preloaded and a
# model (test/run-extension-tests.sh sets one up).
REGRESS = r1_basic r1_errors r1_privileges r1_batch r1_limits r1_audit r1_jobs r1_reasoning
REGRESS_OPTS = --inputdir=build/regress-in

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

build/pg/%.o: src/engine/%.c $(wildcard src/engine/*.h)
	@mkdir -p build/pg
	$(CC) -std=gnu11 -O2 -g -fPIC -Wall -Wno-unused-parameter -Wno-sign-compare \
		-Isrc/engine -Isrc/serve -c -o $@ $<

build/pg/version.o: src/engine/version.c src/engine/version.h $(R1_VERSION_STAMP)
	@mkdir -p build/pg
	$(CC) -std=gnu11 -O2 -g -fPIC -Wall $(R1_VERSION_DEFS) -Isrc/engine -Isrc/serve -c -o $@ $<

# bitcode for PostgreSQL's JIT inliner, when the server was built with LLVM
build/pg/%.bc: src/engine/%.c $(wildcard src/engine/*.h)
	@mkdir -p build/pg
	$(COMPILE.c.bc) -Isrc/engine -Isrc/serve -o $@ $<

$(R1_PG_OBJS): $(wildcard src/*.h) $(wildcard src/engine/*.h) src/serve/protocol.h

# the C sources in PostgreSQL's layout (pg_bsd_indent as pgindent runs it:
# tools/format/); tools/test.sh runs format-check
.PHONY: format format-check
format:
	tools/format/format.sh
format-check:
	tools/format/format.sh --check

installcheck: regress-inputs
.PHONY: regress-inputs
regress-inputs:
	test/regress-inputs.sh build/regress-in

install: install-r1
install-r1: bin/r1
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) bin/r1 '$(DESTDIR)$(bindir)/r1'

uninstall: uninstall-r1
uninstall-r1:
	rm -f '$(DESTDIR)$(bindir)/r1'

# CUDA backend rules (kernels/cuda.mk) are used when nvcc is found.
-include kernels/cuda.mk

# libFuzzer targets and sanitizer builds (make fuzz, asan-unit, asan-cli,
# valgrind-generate; test/fuzz/run.sh runs them all).
-include test/fuzz/fuzz.mk

# A Debian package (postgresql-15-r1-pg_*.deb, in build/deb/) built the way
# Debian builds PostgreSQL extensions (debian/rules, pg_buildext), from a copy
# of this tree; test/package.sh installs it into a fresh cluster.
.PHONY: deb
deb:
	rm -rf build/deb
	mkdir -p build/deb/r1-pg
	tar -c --exclude=./build --exclude=./bin --exclude=./.git --exclude=./test \
		--exclude='*.o' --exclude='*.so' --exclude='*.bc' . | tar -x -C build/deb/r1-pg
	cd build/deb/r1-pg && dpkg-buildpackage -us -uc -b
	ls build/deb/*.deb
