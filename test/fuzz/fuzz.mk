# test/fuzz/fuzz.mk - fuzzing (libFuzzer) and sanitizer builds of the engine.
#
# Included by the top Makefile (`-include test/fuzz/fuzz.mk`); also usable on
# its own from the repository root: `make -f test/fuzz/fuzz.mk fuzz`.
#
#   make fuzz              build the libFuzzer targets (clang) and run each for
#                          $(FUZZ_SECONDS) s on a copy of its seed corpus, after
#                          replaying test/fuzz/regressions/<target>/
#   make fuzz-build        only build them (build/fuzz/fuzz_<target>)
#   make fuzz-regressions  only replay the committed crash inputs and seeds
#   make asan-unit         test/unit/test_*.c + engine under ASan+UBSan, via prove
#   make asan-cli          build/asan/r1 under ASan+UBSan, test/cli/test_cli.py on it
#   make valgrind-generate memcheck on one `r1 generate` on test/fixtures/qwen2-tiny
#   make fuzz-clean        remove build/fuzz and build/asan
#
# Everything is built under build/fuzz/ and build/asan/; the committed corpus
# is never written to (new inputs go to build/fuzz/corpus/<target>/).

# This file may be included before the top Makefile's first rule: keep its
# default goal.
FUZZ_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 20
FUZZ_TIMEOUT ?= 10
FUZZ_RSS_MB ?= 2560
FUZZ_TARGETS := safetensors config tokenizer_json tokenize chat gguf answer_equal
FUZZ_DIR := test/fuzz
FUZZ_OUT := build/fuzz
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter \
	-Wno-sign-compare -Isrc/engine -Isrc/serve -Ikernels \
	-fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIBS := -ljansson -lpcre2-8 -lutf8proc -lm -lpthread
# the engine modules the targets exercise (no forward pass, no OpenMP, no BLAS)
FUZZ_ENGINE := util safetensors config tokenizer chat quant gguf model model_fp8 model_gguf tokenizer_gguf tokenizer_load tensor \
	answer_equal
FUZZ_ENGINE_OBJS := $(patsubst %,$(FUZZ_OUT)/engine/%.o,$(FUZZ_ENGINE))
FUZZ_BINS := $(patsubst %,$(FUZZ_OUT)/fuzz_%,$(FUZZ_TARGETS))
# libFuzzer flags for a bounded run; -dict adds JSON tokens for the JSON targets
FUZZ_RUN_FLAGS := -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) \
	-rss_limit_mb=$(FUZZ_RSS_MB) -print_final_stats=1
FUZZ_DICT_safetensors := -dict=$(FUZZ_DIR)/json.dict
FUZZ_DICT_config := -dict=$(FUZZ_DIR)/json.dict
FUZZ_DICT_tokenizer_json := -dict=$(FUZZ_DIR)/json.dict
# leaks are errors in every sanitizer run
FUZZ_ASAN_OPTIONS := detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1
FUZZ_UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1
# the targets' temporary files (a crashing run leaves its directory behind)
FUZZ_ENV := TMPDIR=$(abspath $(FUZZ_OUT))/tmp ASAN_OPTIONS=$(FUZZ_ASAN_OPTIONS) UBSAN_OPTIONS=$(FUZZ_UBSAN_OPTIONS)

.PHONY: fuzz fuzz-build fuzz-regressions asan-unit asan-cli asan valgrind-generate fuzz-clean

fuzz-build: $(FUZZ_BINS)

# keep the objects make sees as intermediate
.SECONDARY: $(FUZZ_ENGINE_OBJS)

$(FUZZ_OUT)/engine/%.o: src/engine/%.c $(wildcard src/engine/*.h) src/serve/protocol.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_OUT)/fuzz_%: $(FUZZ_DIR)/fuzz_%.c $(FUZZ_DIR)/fuzz_common.h $(FUZZ_ENGINE_OBJS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_ENGINE_OBJS) $(FUZZ_LIBS)

# Replay every committed regression input and every seed once (a crash,
# sanitizer report, leak or failed check exits non-zero).
fuzz-regressions: $(FUZZ_BINS)
	@mkdir -p $(FUZZ_OUT)/tmp; bad=0; for t in $(FUZZ_TARGETS); do \
		for f in $$(find $(FUZZ_DIR)/regressions/$$t -type f 2>/dev/null | sort); do \
			$(FUZZ_ENV) \
				$(FUZZ_OUT)/fuzz_$$t -runs=1 -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=$(FUZZ_RSS_MB) $$f \
				> $(FUZZ_OUT)/replay.log 2>&1 \
				&& echo "fuzz: regression $$f: ok" \
				|| { grep -E 'runtime error|ERROR: |fuzz check failed|SUMMARY' $(FUZZ_OUT)/replay.log | head -n 3; \
					 echo "fuzz: regression $$f: FAILS"; bad=1; }; \
		done; \
		seeds=$$(find $(FUZZ_DIR)/corpus/$$t -type f 2>/dev/null | sort); \
		[ -n "$$seeds" ] || continue; \
		$(FUZZ_ENV) \
			$(FUZZ_OUT)/fuzz_$$t -runs=1 -timeout=$(FUZZ_TIMEOUT) -rss_limit_mb=$(FUZZ_RSS_MB) $$seeds \
			> $(FUZZ_OUT)/replay.log 2>&1 \
			&& echo "fuzz: $$(echo "$$seeds" | wc -l) seeds of $$t: ok" \
			|| { tail -n 40 $(FUZZ_OUT)/replay.log; echo "fuzz: a seed of $$t FAILS"; bad=1; }; \
	done; exit $$bad

# Bounded fuzzing of each target on a copy of its seed corpus.  Crash inputs
# land in build/fuzz/artifacts/<target>/; see test/fuzz/README.md.
fuzz: fuzz-regressions
	@set -e; for t in $(FUZZ_TARGETS); do \
		rm -rf $(FUZZ_OUT)/corpus/$$t; mkdir -p $(FUZZ_OUT)/corpus/$$t $(FUZZ_OUT)/artifacts/$$t; \
		if [ -d $(FUZZ_DIR)/corpus/$$t ]; then cp -R $(FUZZ_DIR)/corpus/$$t/. $(FUZZ_OUT)/corpus/$$t/; fi; \
		case $$t in \
			safetensors) dict="$(FUZZ_DICT_safetensors)";; \
			config) dict="$(FUZZ_DICT_config)";; \
			tokenizer_json) dict="$(FUZZ_DICT_tokenizer_json)";; \
			*) dict="";; \
		esac; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		if $(FUZZ_ENV) \
			$(FUZZ_OUT)/fuzz_$$t $(FUZZ_RUN_FLAGS) $$dict \
			-artifact_prefix=$(FUZZ_OUT)/artifacts/$$t/ $(FUZZ_OUT)/corpus/$$t \
			> $(FUZZ_OUT)/fuzz_$$t.log 2>&1; then \
			grep -E '^stat::number_of_executed_units|^Done' $(FUZZ_OUT)/fuzz_$$t.log | tr '\n' ' '; echo; \
		else \
			tail -n 80 $(FUZZ_OUT)/fuzz_$$t.log; \
			echo "fuzz: $$t FAILED; crash input in $(FUZZ_OUT)/artifacts/$$t/ (log: $(FUZZ_OUT)/fuzz_$$t.log)"; \
			exit 1; \
		fi; \
	done

# ---- ASan + UBSan builds of the engine, its unit tests and the r1 tool ----
#
# gcc by default: its -fopenmp (libgomp) works under ASan.
FUZZ_ASAN_CC ?= gcc
FUZZ_ASAN_DIR := build/asan
FUZZ_ASAN_CFLAGS := -std=gnu11 -O1 -g -march=x86-64-v3 -fopenmp -Wall -Wextra \
	-Wno-unused-parameter -Wno-sign-compare -Isrc/engine -Isrc/serve -Ikernels \
	-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# the r1 tool's sources (the engine host's too) and libraries (the top
# Makefile's, when included from it)
TOOL_SRCS ?= $(sort $(wildcard src/tool/*.c)) $(sort $(wildcard src/serve/*.c))
TOOL_LIBS ?= -lcurl -lcrypto
FUZZ_ASAN_LIBS := -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm -lpthread -fopenmp
FUZZ_ASAN_ENGINE_OBJS := $(patsubst src/engine/%.c,$(FUZZ_ASAN_DIR)/engine/%.o,$(sort $(wildcard src/engine/*.c))) \
	$(patsubst kernels/%.c,$(FUZZ_ASAN_DIR)/kernels/%.o,$(sort $(wildcard kernels/*.c)))
FUZZ_ASAN_UNIT_BINS := $(patsubst test/unit/%.c,$(FUZZ_ASAN_DIR)/%,$(sort $(wildcard test/unit/test_*.c)))
FUZZ_ASAN_ENV := ASAN_OPTIONS=$(FUZZ_ASAN_OPTIONS) UBSAN_OPTIONS=$(FUZZ_UBSAN_OPTIONS) OMP_NUM_THREADS=2

$(FUZZ_ASAN_DIR)/engine/%.o: src/engine/%.c $(wildcard src/engine/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_ASAN_CC) $(FUZZ_ASAN_CFLAGS) -c -o $@ $<

$(FUZZ_ASAN_DIR)/kernels/%.o: kernels/%.c $(wildcard src/engine/*.h) $(wildcard kernels/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_ASAN_CC) $(FUZZ_ASAN_CFLAGS) -c -o $@ $<

$(FUZZ_ASAN_DIR)/libr1engine.a: $(FUZZ_ASAN_ENGINE_OBJS)
	rm -f $@
	ar rcs $@ $^

$(FUZZ_ASAN_DIR)/test_%: test/unit/test_%.c test/unit/tap.h $(FUZZ_ASAN_DIR)/libr1engine.a
	$(FUZZ_ASAN_CC) $(FUZZ_ASAN_CFLAGS) -Itest/unit -o $@ $< $(FUZZ_ASAN_DIR)/libr1engine.a $(FUZZ_ASAN_LIBS)

$(FUZZ_ASAN_DIR)/r1: $(TOOL_SRCS) $(wildcard src/tool/*.h) $(wildcard src/serve/*.h) $(wildcard src/engine/*.h) $(FUZZ_ASAN_DIR)/libr1engine.a
	$(FUZZ_ASAN_CC) $(FUZZ_ASAN_CFLAGS) -o $@ $(TOOL_SRCS) $(FUZZ_ASAN_DIR)/libr1engine.a $(TOOL_LIBS) $(FUZZ_ASAN_LIBS)

asan-unit: $(FUZZ_ASAN_UNIT_BINS)
	$(FUZZ_ASAN_ENV) prove --exec '' $(FUZZ_ASAN_UNIT_BINS)

asan-cli: $(FUZZ_ASAN_DIR)/r1
	$(FUZZ_ASAN_ENV) R1=$(FUZZ_ASAN_DIR)/r1 prove --exec python3 test/cli/test_cli.py

asan: asan-unit asan-cli

# ---- valgrind memcheck on one generation ----
FUZZ_VALGRIND ?= valgrind
FUZZ_VG_DIR := build/valgrind
FUZZ_VG_CFLAGS := -std=gnu11 -O1 -g -march=x86-64-v3 -fopenmp -Isrc/engine -Isrc/serve -Ikernels -Wno-unused-result
# the engine's sources: src/engine and the CUDA backend's C side (kernels/*.c)
FUZZ_VG_ENGINE_SRCS := $(sort $(wildcard src/engine/*.c)) $(sort $(wildcard kernels/*.c))
FUZZ_VG_LIBS := -ljansson -lpcre2-8 -lutf8proc -lopenblas -lm -lpthread -fopenmp
FUZZ_VG_FLAGS := --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect,possible \
	--errors-for-leak-kinds=definite,indirect,possible --track-origins=yes \
	--suppressions=$(FUZZ_DIR)/valgrind.supp

# a plain -O1 -g build (no sanitizers: valgrind does the checking)
$(FUZZ_VG_DIR)/r1: $(TOOL_SRCS) $(FUZZ_VG_ENGINE_SRCS) $(wildcard src/engine/*.h) $(wildcard src/serve/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_VG_CFLAGS) -o $@ $(TOOL_SRCS) $(FUZZ_VG_ENGINE_SRCS) $(TOOL_LIBS) $(FUZZ_VG_LIBS)

valgrind-generate: $(FUZZ_VG_DIR)/r1
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(FUZZ_VALGRIND) $(FUZZ_VG_FLAGS) \
		$(FUZZ_VG_DIR)/r1 generate --model test/fixtures/qwen2-tiny --ids 1,2,3 --max-tokens 8 \
		--device cpu > $(FUZZ_VG_DIR)/generate.json
	@echo "valgrind-generate: no errors, no leaks"

fuzz-clean:
	rm -rf $(FUZZ_OUT) $(FUZZ_ASAN_DIR) $(FUZZ_VG_DIR)

.DEFAULT_GOAL := $(FUZZ_SAVED_DEFAULT_GOAL)
