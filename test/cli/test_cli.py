#!/usr/bin/env python3
"""The r1 tool's interface (a stable contract): JSON on stdout, a one-line
error on stderr and a non-zero exit for bad input.  TAP output for prove."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

R1 = os.environ.get("R1", "bin/r1")
FIX = os.environ.get("R1_FIXTURES", "test/fixtures")
TINY = f"{FIX}/qwen2-tiny"
TOK = f"{FIX}/tokenizer"
n = 0
failed = 0


def ok(cond, name, info=""):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print(f"{'' if cond else 'not '}ok {n} - {name}")
    if not cond and info:
        for line in str(info).splitlines()[:20]:
            print(f"#   {line}")
    sys.stdout.flush()
    return cond


def run(*args, stdin=None):
    p = subprocess.run([R1, *args], input=stdin, capture_output=True, timeout=600)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def run_json(name, *args, stdin=None):
    rc, out, err = run(*args, stdin=stdin)
    ok(rc == 0, f"{name}: exit 0", err)
    try:
        return json.loads(out)
    except ValueError:
        ok(False, f"{name}: JSON on stdout", out[:500])
        return None


def fails(name, frag, *args, stdin=None, code=None):
    rc, out, err = run(*args, stdin=stdin)
    lines = err.strip().splitlines()
    ok(rc != 0 and (code is None or rc == code) and len(lines) == 1 and frag in err and out == "",
       f"{name}: fails with one line containing {frag!r}", f"rc={rc} stderr={err!r} stdout={out[:200]!r}")


tmp = tempfile.mkdtemp(prefix="r1-cli-")
golden = json.load(open(f"{TOK}/tokenizer_golden.json"))["cases"]
tiny_golden = json.load(open(f"{TINY}/golden.json"))["cases"]

# tokenize / detokenize
for case in golden[:4]:
    ids = run_json("tokenize", "tokenize", "--model", TOK, case["text"])
    ok(ids == case["ids"], f"tokenize {case['text'][:30]!r}", f"{ids} != {case['ids']}")
ids = run_json("tokenize from stdin", "tokenize", "--model", TOK, stdin=golden[4]["text"].encode())
ok(ids == golden[4]["ids"], "tokenize reads stdin")
text = run_json("detokenize", "detokenize", "--model", TOK, ",".join(map(str, golden[2]["ids"])))
ok(text == golden[2]["decoded"], "detokenize", text)
fails("invalid UTF-8", "UTF-8", "tokenize", "--model", TOK, stdin=b"ab\xff\xfe")
fails("detokenize id out of range", "out of range", "detokenize", "--model", TOK, "1,999999")
fails("detokenize bad list", "comma-separated", "detokenize", "--model", TOK, "1,x")
fails("tokenizer missing", "tokenizer.json", "tokenize", "--model", tmp, "hi")

# logits on the golden model
rows = run_json("logits", "logits", "--model", TINY, "--device", "cpu",
                "--ids", ",".join(map(str, tiny_golden[1]["input_ids"])))
ok(rows is not None and len(rows) == 5 and all(len(r) == 512 for r in rows), "logits: one row of 512 per position")
fails("logits id out of range", "out of range", "logits", "--model", TINY, "--ids", "1,512")
fails("logits needs ids", "--ids", "logits", "--model", TINY, code=2)

# greedy generation reproduces the golden ids
for k in (0, 2):
    g = run_json("generate --ids", "generate", "--model", TINY, "--device", "cpu", "--ids",
                 ",".join(map(str, tiny_golden[k]["input_ids"])), "--temperature", "0",
                 "--max-tokens", "24", "--ignore-eos")
    ok(g and g["ids"] == tiny_golden[k]["greedy_ids"], f"generate case {k}: golden greedy ids")
    ok(g and g["finish_reason"] == "length" and g["completion_tokens"] == 24
       and g["prompt_tokens"] == len(tiny_golden[k]["input_ids"]), f"generate case {k}: counts and finish_reason")
# a seed makes sampling reproducible
a = run_json("seeded 1", "generate", "--model", TINY, "--ids", "5,6,7", "--seed", "11", "--max-tokens", "16", "--ignore-eos", "--temperature", "1.5")
b = run_json("seeded 2", "generate", "--model", TINY, "--ids", "5,6,7", "--seed", "11", "--max-tokens", "16", "--ignore-eos", "--temperature", "1.5")
c = run_json("seeded 3", "generate", "--model", TINY, "--ids", "5,6,7", "--seed", "12", "--max-tokens", "16", "--ignore-eos", "--temperature", "1.5")
ok(a and b and a["ids"] == b["ids"], "same seed, same ids")
ok(a and c and a["ids"] != c["ids"], "another seed, other ids")
fails("negative temperature", "temperature", "generate", "--model", TINY, "--ids", "1", "--temperature", "-1")
fails("top_p above 1", "top_p", "generate", "--model", TINY, "--ids", "1", "--top-p", "1.5")
fails("max_tokens 0", "--max-tokens", "generate", "--model", TINY, "--ids", "1", "--max-tokens", "0")
fails("prompt and ids", "exactly one", "generate", "--model", TINY, "--ids", "1", "--prompt", "x", code=2)
fails("text prompt without tokenizer", "tokenizer", "generate", "--model", TINY, "--prompt", "hi")
fails("prompt longer than the context", "too long", "generate", "--model", TINY, "--ids", ",".join(["1"] * 600))
fails("unknown device", "unknown device", "generate", "--model", TINY, "--ids", "1", "--device", "tpu")
fails("cuda without a GPU or CUDA build", "CUDA", "generate", "--model", TINY, "--ids", "1", "--device", "cuda") \
    if not shutil.which("nvidia-smi") else ok(True, "cuda device present: skipped")
fails("unknown command", "unknown command", "frobnicate", code=2)
fails("unknown option", "unknown option", "generate", "--model", TINY, "--bogus")

# malformed checkpoints
bad = os.path.join(tmp, "bad")
os.mkdir(bad)
shutil.copy(f"{TINY}/config.json", bad)
data = open(f"{TINY}/model.safetensors", "rb").read()
open(os.path.join(bad, "model.safetensors"), "wb").write(data[: len(data) // 2])
fails("truncated safetensors", "model.safetensors", "generate", "--model", bad, "--ids", "1")
open(os.path.join(bad, "model.safetensors"), "wb").write(struct.pack("<Q", 10) + b"{not json}")
fails("header not JSON", "model.safetensors", "generate", "--model", bad, "--ids", "1")
open(os.path.join(bad, "config.json"), "w").write("{\"architectures\": [\"LlamaForCausalLM\"], ")
fails("config.json bad JSON", "config.json", "generate", "--model", bad, "--ids", "1")
cfg = json.load(open(f"{TINY}/config.json"))
cfg["architectures"] = ["MistralForCausalLM"]
cfg["model_type"] = "mistral"
json.dump(cfg, open(os.path.join(bad, "config.json"), "w"))
shutil.copy(f"{TINY}/model.safetensors", bad)
fails("unknown architecture", "architecture", "generate", "--model", bad, "--ids", "1")
cfg = json.load(open(f"{TINY}/config.json"))
cfg["hidden_size"] = 96
json.dump(cfg, open(os.path.join(bad, "config.json"), "w"))
fails("shape mismatch", "shape", "generate", "--model", bad, "--ids", "1")
fails("no such directory", "config.json", "generate", "--model", os.path.join(tmp, "nope"), "--ids", "1")

# the demo model spells a known think trace and boxed answer
demo = os.path.join(tmp, "demo")
d = run_json("demo-model", "demo-model", "--out", demo, "--tokenizer", TOK)
g = run_json("generate on the demo model", "generate", "--model", demo, "--prompt", "What is 6*7?")
ok(g and g["think"] == "Okay, six times seven equals forty-two.", "demo think", g)
ok(g and g["answer"] == "The answer is $\\boxed{42}$.", "demo answer", g)
ok(g and g["boxed"] == "42" and g["finish_reason"] == "stop", "demo boxed and stop", g)
g = run_json("demo cut off", "generate", "--model", demo, "--prompt", "What is 6*7?", "--max-tokens", "3")
ok(g and g["finish_reason"] == "length" and g["answer"] is None and g["think"] == "Okay, six",
   "a trace cut off by max_tokens keeps its think text and has no answer", g)

# --max-think-tokens: </think> forced after N tokens, then the model answers
g = run_json("think budget", "generate", "--model", demo, "--prompt", "What is 6*7?", "--temperature", "0",
             "--max-think-tokens", "3")
ok(g and g["think"] == "Okay, six" and g["answer"] == "The answer is $\\boxed{42}$."
   and g["boxed"] == "42", "think budget 3: cut think, full answer", g)
ok(g and g["finish_reason"] == "think_budget" and g["think_budget_hit"] is True and g["think_tokens"] == 4,
   "think budget 3: finish_reason think_budget, think_tokens 4", g)
g = run_json("think budget unused", "generate", "--model", demo, "--prompt", "What is 6*7?", "--temperature", "0",
             "--max-think-tokens", "50")
ok(g and g["finish_reason"] == "stop" and g["think_budget_hit"] is False
   and g["think"] == "Okay, six times seven equals forty-two.", "an unreached budget changes nothing", g)
g = run_json("think budget then length", "generate", "--model", demo, "--prompt", "What is 6*7?",
             "--temperature", "0", "--max-think-tokens", "2", "--max-tokens", "4")
ok(g and g["finish_reason"] == "length" and g["think_budget_hit"] is True, "budget hit, then max_tokens: length", g)
fails("max-think-tokens 0", "--max-think-tokens", "generate", "--model", demo, "--prompt", "x",
      "--max-think-tokens", "0")
fails("max-think-tokens without a tokenizer", "max_think_tokens", "generate", "--model", TINY, "--ids", "1",
      "--max-think-tokens", "2")

# loop detection: a model that repeats its text forever stops with finish_reason "repetition"
cyc = os.path.join(tmp, "cycle")
run_json("demo-model --cycle", "demo-model", "--out", cyc, "--tokenizer", TOK, "--cycle",
         "--text", " Wait, let me check that again.")
g = run_json("generate on a looping model", "generate", "--model", cyc, "--prompt", "x", "--temperature", "0",
             "--max-tokens", "2000")
ok(g and g["finish_reason"] == "repetition" and g["repetition_span"] == 8 and g["completion_tokens"] == 256,
   "a loop of 8 tokens stops after 256 tokens (the defaults)", g)
g = run_json("loop detection tuned", "generate", "--model", cyc, "--prompt", "x", "--temperature", "0",
             "--max-tokens", "2000", "--repetition-min-tokens", "1", "--repetition-min-repeats", "2")
ok(g and g["finish_reason"] == "repetition" and g["completion_tokens"] == 16, "2 repeats of 8 tokens: 16 tokens", g)
g = run_json("loop detection off", "generate", "--model", cyc, "--prompt", "x", "--temperature", "0",
             "--max-tokens", "300", "--repetition-max-span", "0")
ok(g and g["finish_reason"] == "length" and g["repetition_span"] == 0, "--repetition-max-span 0: runs to max_tokens", g)
g = run_json("demo with loop detection", "generate", "--model", demo, "--prompt", "What is 6*7?")
ok(g and g["finish_reason"] == "stop" and g["boxed"] == "42", "the demo model's greedy path is not a loop", g)
fails("repetition-min-repeats 1", "--repetition-min-repeats", "generate", "--model", cyc, "--prompt", "x",
      "--repetition-min-repeats", "1")
a = run_json("batch-invariant", "generate", "--model", TINY, "--ids", "5,6,7", "--seed", "11", "--max-tokens", "16",
             "--ignore-eos", "--temperature", "1.5", "--batch-invariant")
b = run_json("not batch-invariant", "generate", "--model", TINY, "--ids", "5,6,7", "--seed", "11",
             "--max-tokens", "16", "--ignore-eos", "--temperature", "1.5")
ok(a and b and a["ids"] == b["ids"], "--batch-invariant: a single request is unchanged", (a, b))
# checksum of the weight bytes: stable, layout-independent, and every byte counts
c1 = run_json("checksum", "checksum", "--model", TINY)
ok(c1 and len(c1["weights_checksum"]) == 16 and int(c1["weights_checksum"], 16) != 0
   and c1["weight_bytes"] > 0, "checksum prints 16 hex digits and the weight bytes", c1)
c2 = run_json("checksum again", "checksum", "--model", TINY)
ok(c1 and c2 and c1["weights_checksum"] == c2["weights_checksum"], "checksum is deterministic", (c1, c2))
flip = os.path.join(tmp, "flip")
os.mkdir(flip)
shutil.copy(f"{TINY}/config.json", flip)
raw = bytearray(open(f"{TINY}/model.safetensors", "rb").read())
hlen = struct.unpack("<Q", raw[:8])[0]
raw[8 + hlen + (len(raw) - 8 - hlen) // 2] ^= 0x01
open(os.path.join(flip, "model.safetensors"), "wb").write(raw)
c3 = run_json("checksum of a flipped bit", "checksum", "--model", flip)
ok(c1 and c3 and c3["weights_checksum"] != c1["weights_checksum"], "one flipped weight bit changes the checksum", (c1, c3))
fails("checksum without a model", "--model", "checksum", code=2)
fails("checksum of a missing directory", "config.json", "checksum", "--model", os.path.join(tmp, "nope"))

# bench at a small custom shape
cfgp = os.path.join(tmp, "small.json")
cfg = json.load(open(f"{TINY}/config.json"))
json.dump(cfg, open(cfgp, "w"))
b = run_json("bench", "bench", "--random-weights", cfgp, "--device", "cpu", "--batch", "2",
             "--prompt-len", "16", "--gen-len", "8")
ok(b and b["decode_tok_s"] > 0 and b["prefill_tok_s"] > 0 and b["decode_steps"] == 7 and b["first_prefill_ms"] > 0, "bench prints figures (the warm-up pass timed apart)", b)
b = run_json("bench --batch-invariant", "bench", "--random-weights", cfgp, "--device", "cpu", "--batch", "2",
             "--prompt-len", "16", "--gen-len", "8", "--batch-invariant")
ok(b and b["batch_invariant"] is True and b["decode_steps"] == 7, "bench --batch-invariant", b)

# GGUF: convert, then tokenize / logits / generate on the .gguf file
GG = f"{FIX}/qwen2-tiny-gguf"
q8 = json.load(open(f"{GG}/qwen2-tiny-q8_0.golden.json"))["cases"]
# golden comparisons of quantised files run the reference arithmetic (--cpu-precision exact,
# float32 activations) at the float32 tolerance; the default 8-bit activations get the
# reduced-precision tolerance (test/unit/test_gguf.c: FAST_TOL)
for prec, tol in (("exact", 1e-4), ("fast", 3e-2)):
    rows = run_json("logits on a Q8_0 GGUF", "logits", "--model", f"{GG}/qwen2-tiny-q8_0.gguf", "--device", "cpu",
                    "--ids", ",".join(map(str, q8[1]["input_ids"])), "--cpu-precision", prec,
                    "--kv-cache-dtype", "f32" if prec == "exact" else "f16")
    if rows:
        ref = q8[1]["logits"]
        err = max(abs(a - b) for r, q in zip(rows, ref) for a, b in zip(r, q)) / max(abs(v) for r in ref for v in r)
        ok(len(rows) == len(ref) and err < tol,
           f"GGUF Q8_0 logits match the float64 golden, --cpu-precision {prec} (rel err {err:.1e} < {tol})")
fails("--kv-cache-dtype checks its value", "kv-cache-dtype", "logits", "--model", f"{GG}/qwen2-tiny-q8_0.gguf",
      "--ids", "1", "--kv-cache-dtype", "q8", code=2)
b = run_json("bench --kv-cache-dtype bf16", "bench", "--model", f"{GG}/qwen2-tiny-q8_0.gguf", "--device", "cpu",
             "--prompt-len", "8", "--gen-len", "4", "--kv-cache-dtype", "bf16")
ok(b and b["kv_cache_dtype"] == "bf16" and b["cpu_precision"] == "fast" and b["cpu_path"] in ("generic", "avx2", "avx512_vnni"),
   "bench reports the KV cache type, the arithmetic and the CPU path", b)
fails("--cpu-precision checks its value", "cpu-precision", "logits", "--model", f"{GG}/qwen2-tiny-q8_0.gguf",
      "--ids", "1", "--cpu-precision", "medium", code=2)
g = run_json("generate on a Q4_K_M GGUF", "generate", "--model", f"{GG}/w256-q4_k_m.gguf", "--ids", "3",
             "--temperature", "0", "--max-tokens", "8", "--ignore-eos", "--cpu-precision", "exact")
w = json.load(open(f"{GG}/w256-q4_k_m.golden.json"))["cases"][0]
ok(g and g["ids"] == w["greedy_ids"] and g["device"] == "cpu", "GGUF Q4_K_M greedy ids match the golden, on the CPU", g)
# the x8 copies of Q8_0/Q4_K/Q6_K rows (src/engine/repack.h, AVX-512 VNNI path) give the file layout's bits:
# 3 and 9 tokens (the x8 kernels, four tokens a call) and 40 (the prompt GEMM over rows put back), and
# they take memory.  AMX's prompt GEMM (ggml's arithmetic) is off for this (R1_CPU_AMX=0): without the
# copies, 9 tokens would go to it; its own check follows.
x8_env = dict(os.environ, R1_CPU_REPACK="0", R1_CPU_AMX="0")
no_amx = dict(os.environ, R1_CPU_AMX="0")
long_ids = ",".join(str((7 * i + 3) % 200) for i in range(40))
for f in ("w256-q4_k_m", "qwen2-tiny-q8_0"):
    for ids in ("3,1,4", "3,1,4,1,5,9,2,6,5", long_ids):
        a = subprocess.run([R1, "logits", "--model", f"{GG}/{f}.gguf", "--device", "cpu", "--ids", ids],
                           capture_output=True, timeout=600, env=no_amx)
        p = subprocess.run([R1, "logits", "--model", f"{GG}/{f}.gguf", "--device", "cpu", "--ids", ids],
                           capture_output=True, timeout=600, env=x8_env)
        ok(a.returncode == 0 and p.returncode == 0 and a.stdout == p.stdout and a.stdout.startswith(b"[["),
           f"{f} logits of {len(ids.split(','))} tokens: bitwise the same with the x8 copies and without (R1_CPU_REPACK=0)")
# where the machine has AMX, prompts of 40 tokens run on the tiles by default: the same logits to rounding
feat = run_json("bench for the CPU's features", "bench", "--model", f"{GG}/qwen2-tiny-q8_0.gguf", "--device", "cpu",
                "--prompt-len", "4", "--gen-len", "1")
if feat and "amx_int8" in feat.get("cpu_features", ""):
    bf16 = os.path.join(tmp, "amx-bf16.gguf")
    run("convert", "--model", TINY, "--out", bf16, "--type", "bf16")
    for f in (f"{GG}/w256-q4_k_m.gguf", f"{GG}/qwen2-tiny-q8_0.gguf", bf16):
        rows = [json.loads(subprocess.run([R1, "logits", "--model", f, "--device", "cpu", "--ids",
                                           long_ids], capture_output=True, timeout=600, env=e).stdout or b"null")
                for e in (os.environ, no_amx)]
        err = (max(abs(a - b) for r, q in zip(*rows) for a, b in zip(r, q)) / max(abs(v) for r in rows[1] for v in r)
               if rows[0] and rows[1] and len(rows[0]) == len(rows[1]) else None)
        ok(err is not None and 0 < err < 1e-4,
           f"{os.path.basename(f)} logits of 40 tokens: AMX's prompt GEMM agrees with R1_CPU_AMX=0 to rounding (rel {err})")
else:
    ok(feat is not None, "AMX prompt GEMM: not on this machine (skipped)")
bench_x8 = [json.loads(subprocess.run([R1, "bench", "--model", f"{GG}/w256-q4_k_m.gguf", "--device", "cpu",
                                       "--prompt-len", "8", "--gen-len", "2"], capture_output=True, timeout=600,
                                      env=dict(os.environ, R1_CPU_REPACK=v)).stdout or b"null") for v in ("1", "0")]
if bench_x8[0] and bench_x8[0]["cpu_path"] == "avx512_vnni":
    ok(bench_x8[1] and bench_x8[0]["backend_memory_bytes"] > bench_x8[1]["backend_memory_bytes"],
       "on the AVX-512 VNNI path the backend holds x8 copies of the K-quant weights (its memory counts them)", bench_x8)
else:
    ok(bench_x8[0] is not None, "x8 copies: not on this processor's path (skipped)", bench_x8)
fails("quantised GGUF on cuda without a GPU", "CUDA", "generate", "--model", f"{GG}/w256-q4_k_m.gguf", "--ids", "1",
      "--device", "cuda") if not shutil.which("nvidia-smi") else ok(True, "cuda device present: skipped")
conv = run_json("convert to f32", "convert", "--model", TINY, "--out", os.path.join(tmp, "t.gguf"), "--type", "f32")
ok(conv and conv["bytes"] > 600000 and conv["tokenizer"] is None, "convert reports the file", conv)
rc, out, err = run("convert", "--model", TINY, "--out", os.path.join(tmp, "t2.gguf"), "--type", "f32")
ok(rc == 0 and "warning" in err and "has no tokenizer" in err and "--tokenizer-from" in err,
   "convert without a tokenizer warns and names --tokenizer-from", err)
g = run_json("generate on the f32 GGUF", "generate", "--model", os.path.join(tmp, "t.gguf"), "--device", "cpu",
             "--ids", ",".join(map(str, tiny_golden[2]["input_ids"])), "--temperature", "0", "--max-tokens", "24",
             "--ignore-eos")
ok(g and g["ids"] == tiny_golden[2]["greedy_ids"], "an f32 GGUF conversion reproduces the transformers greedy ids")
fails("convert: unknown type", "unknown type", "convert", "--model", TINY, "--out", os.path.join(tmp, "x.gguf"),
      "--type", "q3_k")
fails("convert: needs --out", "--out", "convert", "--model", TINY, "--type", "f16", code=2)
fails("convert: tokenizer larger than the vocabulary", "vocabulary", "convert", "--model", TINY,
      "--out", os.path.join(tmp, "x.gguf"), "--type", "f16", "--tokenizer-from", TOK)
fails("tokenize: GGUF without a tokenizer", "no tokenizer", "tokenize", "--model", os.path.join(tmp, "t.gguf"), "hi")
bad = os.path.join(tmp, "bad.gguf")
data = open(f"{GG}/qwen2-tiny-q8_0.gguf", "rb").read()
open(bad, "wb").write(data[: len(data) - 100])
fails("truncated GGUF", "bad.gguf", "generate", "--model", bad, "--ids", "1")
open(bad, "wb").write(b"GGUF" + struct.pack("<I", 7) + data[8:])
fails("GGUF version 7", "version 7", "logits", "--model", bad, "--ids", "1")
# the demo model (with its tokenizer) as Q8_0 GGUF: same tokens, same known output
conv = run_json("convert the demo model", "convert", "--model", demo, "--out", os.path.join(tmp, "demo.gguf"),
                "--type", "q8_0")
ok(conv and conv["tokenizer"] == demo, "convert takes the checkpoint's tokenizer", conv)
for case in golden[:6]:
    ids = run_json("tokenize with a GGUF tokenizer", "tokenize", "--model", os.path.join(tmp, "demo.gguf"), case["text"])
    ok(ids == case["ids"], f"GGUF tokenizer: {case['text'][:30]!r}", f"{ids} != {case['ids']}")
text = run_json("detokenize with a GGUF tokenizer", "detokenize", "--model", os.path.join(tmp, "demo.gguf"),
                ",".join(map(str, golden[2]["ids"])))
ok(text == golden[2]["decoded"], "GGUF detokenize", text)
g = run_json("generate on the demo GGUF", "generate", "--model", os.path.join(tmp, "demo.gguf"),
             "--prompt", "What is 6*7?")
ok(g and g["boxed"] == "42" and g["think"] == "Okay, six times seven equals forty-two."
   and g["finish_reason"] == "stop", "the demo model as Q8_0 GGUF: chat template, tokenizer and eos from the file", g)

# DeepSeek-R1-Distill-Llama: the Llama architecture from safetensors and from a GGUF
LT = f"{FIX}/llama-tiny"
lg = json.load(open(f"{LT}/golden.json"))["cases"]
g = run_json("generate on llama-tiny", "generate", "--model", LT, "--device", "cpu", "--raw",
             "--ids", ",".join(map(str, lg[3]["input_ids"])), "--temperature", "0", "--max-tokens", "8", "--ignore-eos")
ok(g and g["ids"] == lg[3]["greedy_ids"], "Llama (llama3 rope scaling, 200-token prompt): greedy ids match the golden", g)
ids = run_json("tokenize with the Llama 3 regex", "tokenize", "--model", LT, "12345 1234")
ok(ids == [11, 12, 13, 11, 4], "Llama 3 pre-tokenizer: digits in groups of three", ids)
conv = run_json("convert llama-tiny to q8_0", "convert", "--model", LT, "--out", os.path.join(tmp, "ll.gguf"),
                "--type", "q8_0")
ok(conv and conv["tokenizer"] == LT, "convert a Llama with its tokenizer", conv)
ids = run_json("tokenize with a Llama GGUF", "tokenize", "--model", os.path.join(tmp, "ll.gguf"), "12345 1234")
ok(ids == [11, 12, 13, 11, 4], "the Llama GGUF keeps the Llama 3 pre-tokenizer (llama-bpe)", ids)
g = run_json("generate on a Llama Q8_0 GGUF", "generate", "--model", os.path.join(tmp, "ll.gguf"), "--raw",
             "--ids", "3", "--temperature", "0", "--max-tokens", "8", "--ignore-eos", "--cpu-precision", "exact")
q = json.load(open(f"{LT}/llama-tiny-q8_0.golden.json"))["cases"][0]
ok(g and g["ids"] == q["greedy_ids"], "a Llama Q8_0 GGUF: greedy ids match test/fixtures/gen/gguf_golden.py's", g)
b = run_json("bench a llama shape", "bench", "--random-weights", f"{LT}/config.json", "--device", "cpu",
             "--prompt-len", "16", "--gen-len", "4")
ok(b and b["decode_steps"] == 3, "bench --random-weights takes a Llama config.json", b)

# FP8 checkpoints (compressed-tensors channel scales), and on to a GGUF
F8 = f"{FIX}/qwen2-tiny-fp8/channel"
g = run_json("generate on an FP8 checkpoint", "generate", "--model", F8, "--raw", "--ids", "3",
             "--temperature", "0", "--max-tokens", "8", "--ignore-eos")
q = json.load(open(f"{F8}/golden.json"))["cases"][0]
ok(g and g["ids"] == q["greedy_ids"], "an FP8 checkpoint: greedy ids match test/fixtures/gen/fp8_fixture.py's golden", g)
c = run_json("convert an FP8 checkpoint", "convert", "--model", F8, "--type", "q8_0",
             "--out", os.path.join(tmp, "f8.gguf"))
ok(c and c["type"] == "q8_0" and os.path.getsize(os.path.join(tmp, "f8.gguf")) == c["bytes"],
   "r1 convert takes an FP8 checkpoint", c)

# metadata llama.cpp / Ollama read (issue 15, item 6)
def gguf_kv(path):
    """the key/value section of a GGUF file, arrays skipped"""
    f = open(path, "rb")
    magic, ver, nt, nkv = struct.unpack("<4sIQQ", f.read(24))
    sizes = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    def rstr():
        (n,) = struct.unpack("<Q", f.read(8))
        return f.read(n).decode("utf-8", "replace")
    def rval(t):
        if t == 8:
            return rstr()
        if t == 9:
            (et, n) = struct.unpack("<IQ", f.read(12))
            for _ in range(n):
                rval(et)
            return None
        fmt = "<" + sizes[t]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
    kv = {}
    for _ in range(nkv):
        k = rstr()
        (t,) = struct.unpack("<I", f.read(4))
        kv[k] = rval(t)
    return kv

conv = run_json("convert llama-tiny to f32", "convert", "--model", LT, "--out", os.path.join(tmp, "llf.gguf"), "--type", "f32")
kv = gguf_kv(os.path.join(tmp, "llf.gguf"))
ok(kv.get("tokenizer.ggml.eos_token_id") == 2 and kv.get("tokenizer.ggml.bos_token_id") == 1,
   "convert: BOS/EOS from config.json when the tokenizer names none", {k: v for k, v in kv.items() if "token_id" in k})
ok(kv.get("tokenizer.ggml.add_bos_token") is False and kv.get("general.file_type") == 0
   and kv.get("general.quantization_version") == 2,
   "convert: add_bos_token from tokenizer_config.json, general.file_type, general.quantization_version", kv)
outs = [run_json(f"generate on llama-tiny {w}", "generate", "--model", m, "--raw", "--ids", "5", "--temperature", "0",
                 "--max-tokens", "100", "--cpu-precision", "exact", "--kv-cache-dtype", "f32", "--device", "cpu")
        for w, m in (("directory", LT), ("f32 GGUF", os.path.join(tmp, "llf.gguf")))]
ok(outs[0] and outs[1] and outs[0]["finish_reason"] == "stop" and outs[0]["ids"] == outs[1]["ids"]
   and outs[1]["finish_reason"] == "stop", "llama-tiny: the GGUF stops at EOS 2 where the directory does", outs)
conv = run_json("convert the demo model with a chat template", "convert", "--model", demo, "--out",
                os.path.join(tmp, "demo4.gguf"), "--type", "q4_k_m")
kv = gguf_kv(os.path.join(tmp, "demo4.gguf"))
tc = json.load(open(os.path.join(demo, "tokenizer_config.json")))
ok(kv.get("general.file_type") == 15 and kv.get("tokenizer.chat_template") == tc.get("chat_template")
   and ("add_bos_token" not in tc or kv.get("tokenizer.ggml.add_bos_token") == tc["add_bos_token"]),
   "convert: q4_k_m is file_type 15 (MOSTLY_Q4_K_M); the chat template is copied", {k: kv.get(k) for k in ("general.file_type", "tokenizer.ggml.add_bos_token")})

# the legacy Q4_0 / Q5_0 formats of many GGUF files
for t in ("q4_0", "q5_0"):
    f = f"{FIX}/qwen2-tiny-gguf/qwen2-tiny-{t}.gguf"
    g = run_json(f"generate on a {t} GGUF", "generate", "--model", f, "--raw", "--ids", "3",
                 "--temperature", "0", "--max-tokens", "8", "--ignore-eos", "--cpu-precision", "exact")
    q = json.load(open(f.replace(".gguf", ".golden.json")))["cases"][0]
    ok(g and g["ids"] == q["greedy_ids"], f"a {t} GGUF: greedy ids match test/fixtures/gen/gguf_golden.py's", g)

# a tokenizer with no tokens: nothing could be sampled, so the model does not open
empty = os.path.join(tmp, "empty-tokenizer")
os.makedirs(empty)
for f in ("config.json", "model.safetensors"):
    shutil.copy(os.path.join(TINY, f), empty)
json.dump({"version": "1.0", "added_tokens": [], "normalizer": None, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "vocab": {}, "merges": []}}, open(os.path.join(empty, "tokenizer.json"), "w"))
fails("generate with a tokenizer of no tokens", "has no tokens", "generate", "--model", empty, "--ids", "5,6,7",
      "--max-tokens", "2", "--temperature", "0.8")

shutil.rmtree(tmp)
print(f"1..{n}")
sys.exit(1 if failed else 0)
