#!/bin/bash
# gpu-check.sh - build, check and benchmark the CUDA backend on a GPU host, in
# one run from the repository root (CUDA at /usr/local/cuda; no PostgreSQL
# needed; python3 for the comparison, torch+transformers only for S5).
#
#   tools/gpu/gpu-check.sh [STAGE...]      stages: build unit compare bench15 bench7 s5 benchq all,
#                                      and bench70 (only when named: a 42 GB Llama-70B Q4_K_M)
#                                      (default: all; each stage fits in a 10-minute slot)
#   QUICK=1 tools/gpu/gpu-check.sh ...     shorter comparison and benchmarks
#   R1_PREBUILT=1 tools/gpu/gpu-check.sh   use bin/r1 and build/test/* as built here
#                                      by tools/gpu/gpu-pack.sh (no make, no -dev
#                                      packages on the GPU host; libs in .gpu/lib)
#
# Logs go to $OUT (default build/gpu-check): summary.txt (one line a step),
# build.log, unit.log, compare.log, bench-*.json, nvidia-smi.txt.
# Exit status: non-zero if the build, a unit test or a comparison failed
# (benchmarks only print figures).
#
# Scenarios (issue 4; random weights at the real shapes, bf16):
#   S1  1 sequence, 128-token prompt, 1024 decoded            decode_tok_s
#   S2  1 sequence at 16k context (16384 prompt, 256 decoded)  decode_tok_s vs S1
#   S3  256 sequences x (128 in + 4096 out)  (QUICK: 512 out)  decode_tok_s
#   S4  first token of a 1024-token prompt                     prefill_ms
#   S5  load to first token from a checkpoint on disk, warm    load_s + prefill_ms
# benchq (issue 7): Q4_K_M GGUF of random 1.5B and 7B weights (r1 convert),
# 1 sequence (128 in, 512 out) and 16 sequences: decode_tok_s (targets 1,000 and 400)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-build/gpu-check}
mkdir -p "$OUT"
QUICK=${QUICK:-0}
PREBUILT=${R1_PREBUILT:-0}
if [ -d .gpu/lib ]; then	# the libraries tools/gpu/gpu-pack.sh packed, those the host lacks
	mkdir -p /tmp/r1-gpu-lib
	for f in .gpu/lib/*; do
		l=$(basename "$f" .gz)
		ldconfig -p | grep -q "^\s*$l " && continue
		case $f in
		*.gz) gunzip -c "$f" > "/tmp/r1-gpu-lib/$l" ;;
		*) cp "$f" "/tmp/r1-gpu-lib/$l" ;;
		esac
	done
	export LD_LIBRARY_PATH=/tmp/r1-gpu-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
R1=bin/r1
status=0
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(all)

log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
want() { local s; for s in "${stages[@]}"; do [ "$s" = "$1" ] || [ "$s" = all ] && return 0; done; return 1; }

log "gpu-check $(date -u +%FT%TZ) stages: ${stages[*]} quick=$QUICK commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/   gpu: /' | tee -a "$OUT/summary.txt"

# ---- build (also when another stage runs and bin/r1 is missing) ----
if [ "$PREBUILT" = 1 ]; then
	log "build: prebuilt bin/r1 ($(ldd "$R1" 2>&1 | grep -c 'not found') libraries not found)"
	ldd "$R1" | grep 'not found' | tee -a "$OUT/summary.txt"
elif want build || [ ! -x "$R1" ]; then
	t0=$(date +%s)
	if make -j"$(nproc)" engine > "$OUT/build.log" 2>&1; then
		log "build: ok in $(( $(date +%s) - t0 )) s ($(grep -c 'nvcc' "$OUT/build.log") nvcc runs)"
	else
		log "build: FAILED (tail of build.log follows)"
		tail -20 "$OUT/build.log" | tee -a "$OUT/summary.txt"
		status=1
	fi
	if [ -x "$R1" ] && ! ldd "$R1" | grep -q libcudart; then
		log "build: bin/r1 has no CUDA (nvcc not found, or R1_CUDA=0): the checks below will fail"
		status=1
	fi
fi
if [ ! -x "$R1" ]; then
	log "no bin/r1: stopping"
	exit 1
fi

# ---- unit tests (the CPU ones too: they share the build) ----
if want unit && [ "$PREBUILT" = 1 ]; then
	: > "$OUT/unit.log"
	failed=0
	for t in build/test/test_*; do
		if timeout "${UNIT_TIMEOUT:-300}" "$t" >> "$OUT/unit.log" 2>&1; then
			log "unit $(basename "$t"): ok ($(grep -c '^ok' "$OUT/unit.log") ok lines so far)"
		else
			log "unit $(basename "$t"): FAILED"
			failed=1
		fi
	done
	grep -E '^not ok' "$OUT/unit.log" | head -30 | tee -a "$OUT/summary.txt"
	[ $failed = 0 ] || status=1
elif want unit; then
	if make -j"$(nproc)" unit > "$OUT/unit.log" 2>&1; then
		log "unit: ok ($(grep -E '^Files=' "$OUT/unit.log"))"
	else
		log "unit: FAILED (see unit.log)"
		grep -E 'not ok|Failed|Result' "$OUT/unit.log" | head -20 | tee -a "$OUT/summary.txt"
		status=1
	fi
fi

# ---- numerics against the CPU backend and the golden fixture ----
if want compare; then
	q=""
	[ "$QUICK" = 1 ] && q="--quick"
	if timeout "${COMPARE_TIMEOUT:-570}" python3 tools/gpu/gpu_compare.py $q > "$OUT/compare.log" 2>&1; then
		log "compare: ok"
	else
		log "compare: FAILED"
		status=1
	fi
	grep -E '^(ok|FAIL)' "$OUT/compare.log" | sed 's/^/   /' >> "$OUT/summary.txt"
	grep -E '^FAIL|stopped' "$OUT/compare.log" | head -20
	tail -1 "$OUT/compare.log"
fi

# ---- benchmarks ----
bench_line() {	# FILE: one line of an r1 bench JSON's figures (the file as it is if it is not one)
	python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
print("load %.2f s, first prefill %.1f ms, prefill %.1f ms, decode %.1f tok/s, %.2f ms/step, %.0f GB/s, GPU memory %.1f GiB" % (j["load_s"], j["first_prefill_ms"], j["prefill_ms"], j["decode_tok_s"], j["ms_per_step"], j["decode_gb_s"], j["backend_memory_bytes"] / 2**30))' "$1" 2>/dev/null || cat "$1"
}

bench() {	# name shape args...
	local name=$1 shape=$2
	shift 2
	local t0=$(date +%s)
	if timeout "${BENCH_TIMEOUT:-280}" "$R1" bench --random-weights "$shape" --device cuda "$@" \
		> "$OUT/bench-$name.json" 2> "$OUT/bench-$name.err"; then
		log "bench $name ($shape $*): $(bench_line "$OUT/bench-$name.json")"
	else
		log "bench $name ($shape $*): failed or timed out after $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/bench-$name.err")"
	fi
}

bench_shape() {	# shape
	local s=$1 s3len=4096
	[ "$QUICK" = 1 ] && s3len=512
	bench "S1-$s" "$s" --batch 1 --prompt-len 128 --gen-len 1024
	bench "S4-$s" "$s" --batch 1 --prompt-len 1024 --gen-len 1
	bench "S2-$s" "$s" --batch 1 --prompt-len 16384 --gen-len 256
	bench "S3-$s" "$s" --batch 256 --prompt-len 128 --gen-len "$s3len"
}

if want bench15; then bench_shape 1.5b; fi
if want bench7; then
	log "note: S3 7B asks for an FP8 KV cache; this backend's KV cache is bf16"
	bench_shape 7b
fi

# ---- S5: load to first token from a checkpoint on disk (warm page cache) ----
if want s5; then
	for s in 1.5b 7b; do
		dir=build/gpu-check-ckpt-$s
		if [ ! -f "$dir/model.safetensors.index.json" ] && [ ! -f "$dir/model.safetensors" ]; then
			python3 - "$s" "$dir" > "$OUT/s5-make-$s.log" 2>&1 <<'EOF' || { log "S5 $s: could not write a checkpoint (see s5-make-$s.log)"; continue; }
import sys, torch
from transformers import Qwen2Config, Qwen2ForCausalLM
shape, out = sys.argv[1], sys.argv[2]
dims = {"1.5b": (1536, 28, 12, 2, 8960, 151936), "7b": (3584, 28, 28, 4, 18944, 152064)}[shape]
h, l, nh, nkv, inter, vocab = dims
cfg = Qwen2Config(hidden_size=h, num_hidden_layers=l, num_attention_heads=nh, num_key_value_heads=nkv,
                  intermediate_size=inter, vocab_size=vocab, max_position_embeddings=131072,
                  rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=False, torch_dtype="bfloat16")
torch.manual_seed(0)
with torch.device("cpu"):
    m = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
m.save_pretrained(out, safe_serialization=True)
EOF
		fi
		cat "$dir"/*.safetensors > /dev/null	# warm the page cache
		bench "S5-$s" "$s" --batch 1 --prompt-len 16 --gen-len 1 >/dev/null 2>&1 || true	# warm CUDA too
		t0=$(date +%s.%N)
		if timeout 280 "$R1" bench --model "$dir" --device cuda --batch 1 --prompt-len 16 --gen-len 1 \
			> "$OUT/bench-S5-$s.json" 2> "$OUT/bench-S5-$s.err"; then
			log "S5 $s: whole command $(python3 -c "import time; print('%.2f' % (time.time() - $t0))") s; $(python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
print("load %.2f s + first token %.1f ms" % (j["load_s"], j["first_prefill_ms"]))' "$OUT/bench-S5-$s.json")"
		else
			log "S5 $s: failed: $(tail -1 "$OUT/bench-S5-$s.err")"
		fi
	done
fi

# ---- quantised GGUF (Q4_K_M) on the GPU ----
if want benchq; then
	for s in 1.5b 7b; do
		f=build/gpu-check-q4_k_m-$s.gguf
		if [ ! -f "$f" ] && ! "$R1" convert --random-weights "$s" --type q4_k_m --out "$f" > "$OUT/benchq-convert-$s.log" 2>&1; then
			log "benchq $s: convert failed: $(tail -1 "$OUT/benchq-convert-$s.log")"
			continue
		fi
		for b in 1 16; do
			name="Q4_K_M-$s-b$b"
			if timeout 280 "$R1" bench --model "$f" --device cuda --batch "$b" --prompt-len 128 --gen-len 512 \
				> "$OUT/bench-$name.json" 2> "$OUT/bench-$name.err"; then
				log "bench $name: $(bench_line "$OUT/bench-$name.json")"
			else
				log "bench $name: failed: $(tail -1 "$OUT/bench-$name.err")"
			fi
		done
	done
fi

# ---- DeepSeek-R1-Distill-Llama-70B in 4 bits on one GPU (issue 7; only when named) ----
# r1 convert makes the random weights row by row as it writes (~42 GB on disk,
# well under 1 GB of RAM); the file is removed afterwards.
if printf '%s\n' "${stages[@]}" | grep -qx bench70; then
	f=build/gpu-check-q4_k_m-llama-70b.gguf
	t0=$(date +%s)
	if timeout "${CONVERT70_TIMEOUT:-420}" "$R1" convert --random-weights llama-70b --type q4_k_m --out "$f" \
		> "$OUT/bench70-convert.log" 2>&1; then
		log "bench70: Q4_K_M file of $(( $(stat -c %s "$f") >> 20 )) MiB in $(( $(date +%s) - t0 )) s"
		if timeout "${BENCH70_TIMEOUT:-300}" "$R1" bench --model "$f" --device cuda --batch 1 --prompt-len 128 \
			--gen-len 64 > "$OUT/bench-Q4_K_M-llama-70b.json" 2> "$OUT/bench-Q4_K_M-llama-70b.err"; then
			log "bench Q4_K_M-llama-70b-b1: $(bench_line "$OUT/bench-Q4_K_M-llama-70b.json")"
		else
			log "bench Q4_K_M-llama-70b-b1: failed: $(tail -1 "$OUT/bench-Q4_K_M-llama-70b.err")"
			status=1
		fi
	else
		log "bench70: convert failed or timed out after $(( $(date +%s) - t0 )) s: $(tail -1 "$OUT/bench70-convert.log")"
		status=1
	fi
	rm -f "$f"
fi

log "gpu-check: $([ $status -eq 0 ] && echo done || echo 'FAILED (see above)')"
exit $status
