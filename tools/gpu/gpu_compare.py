#!/usr/bin/env python3
"""gpu_compare.py - check `r1 --device cuda` against the CPU backend and the
golden fixture.  Standard library only (no numpy), so it runs wherever
python3 does; tools/gpu/gpu-check.sh calls it on a GPU host.

  gpu_compare.py [--r1 bin/r1] [--device cuda] [--ref-device cpu] [--quick]

Checks, each printed as "ok"/"FAIL" with the measured figures:
  1. fixture logits (f32 and bf16 weight files, 4 golden cases): device vs
     CPU and device vs golden, relative error max|d| / max|ref| <= 2e-2 (bf16
     arithmetic, per test/fixtures/qwen2-tiny/README.md), and the argmax at
     every position where the golden top-1 margin exceeds 4x the error;
  2. fixture greedy paths (24 tokens): the device reproduces the golden ids up
     to the first step whose golden margin is within 4x the logits error;
  3. random weights at real layer shapes (1.5B: 12 heads / 2 KV heads, 7B:
     28 / 4; few layers, small vocab so the JSON stays small): device vs CPU
     logits over 64 positions, and the full 1.5B preset over 8 positions;
  4. a long sequence (8k-token prompt, 1.5B layer shape): greedy ids device
     vs CPU (reported; a divergence after the first token is logged with the
     CPU margin, not failed, since random weights give tiny margins).
Exit status 1 if any check failed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(ROOT, "test", "fixtures", "qwen2-tiny")
sys.path.insert(0, os.path.join(ROOT, "test", "fixtures", "gen"))
from fixturelib import read_safetensors  # noqa: E402
failures = 0


def report(ok, msg):
    global failures
    if not ok:
        failures += 1
    print(("ok   " if ok else "FAIL ") + msg, flush=True)


def rows_of(shape, arr):
    t, v = shape
    return [list(arr[i * v:(i + 1) * v]) for i in range(t)]


def r1(args, *cmd, timeout=600, env=None):
    p = subprocess.run([args.r1] + list(cmd), capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    if p.returncode != 0:
        raise RuntimeError("r1 %s failed (%d): %s" % (" ".join(cmd[:3]), p.returncode, p.stderr.strip()))
    return json.loads(p.stdout)


def logits(args, model, ids, device):
    flag = ["--random-weights", model] if model.endswith(".json") or "/" not in model else ["--model", model]
    return r1(args, "logits", *flag, "--ids", ",".join(map(str, ids)), "--device", device)


def greedy(args, model, ids, n, device):
    flag = ["--random-weights", model] if model.endswith(".json") or "/" not in model else ["--model", model]
    out = r1(args, "generate", *flag, "--ids", ",".join(map(str, ids)), "--raw", "--max-tokens", str(n),
             "--temperature", "0", "--ignore-eos", "--device", device)
    return out["ids"]


def rel_err(got, ref):
    d = max(abs(a - b) for ga, ra in zip(got, ref) for a, b in zip(ga, ra))
    m = max(abs(b) for ra in ref for b in ra)
    return d, d / m if m else d


def margin(row):
    s = sorted(row, reverse=True)
    return s[0] - s[1]


def argmax(row):
    return max(range(len(row)), key=row.__getitem__)


def fixture_checks(args, tmp):
    for label, weights, golden in (("f32", "model.safetensors", "golden.safetensors"),
                                   ("bf16", "model-bf16.safetensors", "golden-bf16.safetensors")):
        mdir = os.path.join(tmp, "tiny-" + label)
        os.makedirs(mdir, exist_ok=True)
        for name, src in (("config.json", "config.json"), ("model.safetensors", weights)):
            dst = os.path.join(mdir, name)
            if not os.path.exists(dst):
                os.symlink(os.path.join(FIX, src), dst)
        g = read_safetensors(os.path.join(FIX, golden))
        for k in range(4):
            ids = list(g["case%d.input_ids" % k][1])
            ref = rows_of(*g["case%d.logits" % k])
            dev = logits(args, mdir, ids, args.device)
            cpu = logits(args, mdir, ids, args.ref_device)
            d_abs, d_rel = rel_err(dev, cpu)
            g_abs, g_rel = rel_err(dev, ref)
            c_abs, c_rel = rel_err(cpu, ref)
            report(d_rel <= 2e-2 and g_rel <= 2e-2,
                   "fixture %s case %d (T=%d): %s vs %s rel %.2e, vs golden rel %.2e (cpu vs golden %.2e)"
                   % (label, k, len(ids), args.device, args.ref_device, d_rel, g_rel, c_rel))
            bad = [t for t in range(len(ids)) if margin(ref[t]) > 4 * g_abs and argmax(dev[t]) != argmax(ref[t])]
            report(not bad, "fixture %s case %d: argmax agrees wherever the golden margin > 4 x %.2e%s"
                   % (label, k, g_abs, "" if not bad else " (differs at %s)" % bad))
            # greedy path
            gids = list(g["case%d.greedy_ids" % k][1])
            glog = rows_of(*g["case%d.greedy_logits" % k])
            got = greedy(args, mdir, ids, len(gids), args.device)
            safe = len(gids)
            for i, row in enumerate(glog):
                if margin(row) <= 4 * g_abs:
                    safe = i
                    break
            same = 0
            while same < len(gids) and same < len(got) and got[same] == gids[same]:
                same += 1
            report(same >= safe, "fixture %s case %d greedy: %d of %d ids match the golden path "
                   "(required: the first %d, where the golden margin > 4 x logits error)"
                   % (label, k, same, len(gids), safe))


def llama_checks(args, tmp):
    """DeepSeek-R1-Distill-Llama: llama-tiny (no biases, llama3 rope scaling) against its
    float64 golden on both devices, and a random Llama-8B layer shape, device vs reference."""
    lt = os.path.join(ROOT, "test", "fixtures", "llama-tiny")
    with open(os.path.join(lt, "golden.json")) as f:
        g = json.load(f)
    for k, case in enumerate(g["cases"]):
        ids = case["input_ids"]
        ref = case["logits"]
        dev = logits(args, lt, ids, args.device)
        cpu = logits(args, lt, ids, args.ref_device)
        d_abs, d_rel = rel_err(dev, cpu)
        g_abs, g_rel = rel_err(dev, ref)
        report(d_rel <= 2e-2 and g_rel <= 2e-2, "llama-tiny case %d (T=%d): %s vs %s rel %.2e, vs golden rel %.2e"
               % (k, len(ids), args.device, args.ref_device, d_rel, g_rel))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
           "num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 8,
           "intermediate_size": 14336, "vocab_size": 8192, "max_position_embeddings": 131072,
           "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False,
           "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
           "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}
    path = os.path.join(tmp, "llama8b-layers.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    ids = lcg_ids(64, 8192, 5)
    dev = logits(args, path, ids, args.device)
    cpu = logits(args, path, ids, args.ref_device)
    d_abs, d_rel = rel_err(dev, cpu)
    bad = [t for t in range(len(ids)) if margin(cpu[t]) > 4 * d_abs and argmax(dev[t]) != argmax(cpu[t])]
    report(d_rel <= 3e-2 and not bad, "random Llama-8B layers, 64 positions: %s vs %s rel %.2e%s"
           % (args.device, args.ref_device, d_rel, "" if not bad else ", argmax differs at %s" % bad))


def sampling_checks(args, tmp):
    """Tokens chosen on the GPU (r1k_sample) against the host sampler over the same GPU logits
    (R1_GPU_SAMPLING=0): the same algorithm and Philox draws, so the same ids (only an expf
    last-bit difference on a boundary could part them); and against the CPU backend (reported)."""
    tiny = os.path.join(ROOT, "test", "fixtures", "qwen2-tiny")
    for k, (temp, top_p, top_k, min_p) in enumerate(((0.8, 0.95, 0, 0.0), (1.2, 1.0, 40, 0.0),
                                                      (0.6, 0.9, 0, 0.05))):
        cmd = ["generate", "--model", tiny, "--ids", "290,2,239,451,327", "--raw", "--max-tokens", "24",
               "--ignore-eos", "--temperature", str(temp), "--top-p", str(top_p), "--top-k", str(top_k),
               "--min-p", str(min_p), "--seed", str(11 + k)]
        dev = r1(args, *cmd, "--device", args.device)["ids"]
        host = r1(args, *cmd, "--device", args.device, env={"R1_GPU_SAMPLING": "0"})["ids"]
        cpu = r1(args, *cmd, "--device", args.ref_device)["ids"]
        same_cpu = 0
        while same_cpu < min(len(dev), len(cpu)) and dev[same_cpu] == cpu[same_cpu]:
            same_cpu += 1
        report(dev == host, "sampling %d (T=%g top_p=%g top_k=%d min_p=%g): device-chosen ids equal the host "
               "sampler's over the same logits; %d of 24 equal the CPU backend's"
               % (k, temp, top_p, top_k, min_p, same_cpu))


def gguf_checks(args, tmp):
    """Quantised GGUF fixtures (r1k_qgemm decodes the blocks on the GPU) and FP8
    checkpoints (bf16 on the GPU) against their float64 goldens (test/fixtures/gen/gguf_golden.py,
    test/fixtures/gen/fp8_fixture.py) and the CPU backend."""
    fx = os.path.join(ROOT, "test", "fixtures")
    for rel in ("qwen2-tiny-gguf/qwen2-tiny-q8_0", "qwen2-tiny-gguf/qwen2-tiny-q4_0",
                "qwen2-tiny-gguf/qwen2-tiny-q5_0", "qwen2-tiny-gguf/w256-q4_k_m",
                "qwen2-tiny-gguf/w256-q5_k", "llama-tiny/llama-tiny-q8_0",
                "qwen2-tiny-fp8/channel", "qwen2-tiny-fp8/block"):
        fp8 = rel.startswith("qwen2-tiny-fp8")	# a checkpoint directory with golden.json inside
        model = os.path.join(fx, rel if fp8 else rel + ".gguf")
        with open(os.path.join(fx, rel, "golden.json") if fp8 else os.path.join(fx, rel + ".golden.json")) as f:
            g = json.load(f)
        for k, case in enumerate(g["cases"]):
            ids = case["input_ids"]
            dev = logits(args, model, ids, args.device)
            cpu = logits(args, model, ids, args.ref_device)
            d_abs, d_rel = rel_err(dev, cpu)
            g_abs, g_rel = rel_err(dev, case["logits"])
            report(d_rel <= 2e-2 and g_rel <= 2e-2, "%s case %d (T=%d): %s vs %s rel %.2e, vs golden rel %.2e"
                   % (rel.replace("/", " ") if fp8 else os.path.basename(rel), k, len(ids), args.device,
                      args.ref_device, d_rel, g_rel))


def write_config(tmp, name, hidden, layers, heads, kv_heads, inter, vocab, max_pos=32768):
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": hidden,
           "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
           "intermediate_size": inter, "vocab_size": vocab, "max_position_embeddings": max_pos,
           "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
           "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16"}
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def lcg_ids(n, vocab, seed):
    x, out = seed, []
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(int((x >> 33) % (vocab - 3)) + 3)
    return out


def random_shape_checks(args, tmp):
    shapes = [("1.5b-layers", write_config(tmp, "r15", 1536, 4, 12, 2, 8960, 8192), 64),
              ("7b-layers", write_config(tmp, "r7", 3584, 2, 28, 4, 18944, 8192), 64)]
    if not args.quick:
        shapes.append(("1.5b preset", "1.5b", 8))
    for label, model, n in shapes:
        ids = lcg_ids(n, 8192, 7)
        dev = logits(args, model, ids, args.device)
        cpu = logits(args, model, ids, args.ref_device)
        d_abs, d_rel = rel_err(dev, cpu)
        bad = [t for t in range(n) if margin(cpu[t]) > 4 * d_abs and argmax(dev[t]) != argmax(cpu[t])]
        report(d_rel <= 3e-2 and not bad, "random %s, %d positions: %s vs %s rel %.2e (abs %.2e)%s"
               % (label, n, args.device, args.ref_device, d_rel, d_abs,
                  "" if not bad else ", argmax differs at %s" % bad))


def long_checks(args, tmp):
    model = write_config(tmp, "r15long", 1536, 2, 12, 2, 8960, 8192)
    n = 1024 if args.quick else 8192
    ids = lcg_ids(n, 8192, 11)
    dev = greedy(args, model, ids, 16, args.device)
    cpu = greedy(args, model, ids, 16, args.ref_device)
    same = 0
    while same < min(len(dev), len(cpu)) and dev[same] == cpu[same]:
        same += 1
    report(same >= 1, "long prompt (%d tokens, 1.5B layer shape): greedy ids %s vs %s agree for %d of 16%s"
           % (n, args.device, args.ref_device, same, "" if same == 16 else
              " (divergence after the first token is logged, not failed: random-weight margins are tiny)"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--r1", default=os.path.join(ROOT, "bin", "r1"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--ref-device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="skip the full 1.5B preset, 1k instead of 8k prompt")
    ap.add_argument("--only", choices=["fixture", "random", "llama", "gguf", "sampling", "long"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (("fixture", fixture_checks), ("random", random_shape_checks),
                         ("llama", llama_checks), ("gguf", gguf_checks), ("sampling", sampling_checks),
                         ("long", long_checks)):
            if args.only and args.only != name:
                continue
            try:
                fn(args, tmp)
            except Exception as e:  # a crash or an r1 error is a failure, keep going
                report(False, "%s checks stopped: %s" % (name, e))
    print("gpu_compare: %s" % ("all checks passed" if failures == 0 else "%d check(s) FAILED" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
