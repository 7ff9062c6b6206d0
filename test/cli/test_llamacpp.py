#!/usr/bin/env python3
"""GGUF files r1 writes, read by llama.cpp (issue 15, item 6): the peer of
../shared/tools/llamacpp-peer (node-llama-cpp's prebuilt llama.cpp and the
llpeer C driver) loads an r1-converted F32 file; its logits must agree with
r1's reference arithmetic (float32 activations and KV cache; llama.cpp's flash
attention off), and it must read BOS/EOS and add_bos_token as written.

The peer is taken from $R1_PEER (default /tmp/peer), installed there with npm
and built when missing; where npm, the network or the build fails the test
prints a TAP skip.  TAP on stdout: prove --exec python3 test/cli/test_llamacpp.py
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

R1 = os.environ.get("R1", "bin/r1")
FIX = os.environ.get("R1_FIXTURES", "test/fixtures")
PEER = os.environ.get("R1_PEER", "/tmp/peer")
TOOLS = os.environ.get("R1_PEER_TOOLS", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                      "../../../shared/tools/llamacpp-peer"))
LLPEER = os.path.join(PEER, "llpeer")
n = 0


def ok(cond, name, detail=None):
    global n
    n += 1
    print(f"{'' if cond else 'not '}ok {n} - {name}")
    if not cond and detail is not None:
        print(f"# {str(detail)[:800]}")
    sys.stdout.flush()
    return cond


def skip_all(why):
    print(f"1..0 # SKIP {why}")
    sys.exit(0)


def get_peer():
    """llpeer, built if need be; None and the reason when it cannot be had"""
    if os.access(LLPEER, os.X_OK):
        return None
    if not shutil.which("npm"):
        return "npm not found"
    if not os.path.exists(os.path.join(TOOLS, "build.sh")):
        return f"no peer tools at {TOOLS}"
    os.makedirs(PEER, exist_ok=True)
    env = dict(os.environ, NODE_LLAMA_CPP_SKIP_DOWNLOAD="true")
    try:
        if not os.path.exists(os.path.join(PEER, "package.json")):
            subprocess.run(["npm", "init", "-y"], cwd=PEER, env=env, check=True, capture_output=True, timeout=120)
        subprocess.run(["npm", "i", "-E", "node-llama-cpp@3.21.1"], cwd=PEER, env=env, check=True,
                       capture_output=True, timeout=600)
        subprocess.run(["sh", os.path.join(TOOLS, "build.sh")], env=dict(env, PEER=PEER), check=True,
                       capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as e:
        return f"could not install or build the llama.cpp peer: {e}"
    return None if os.access(LLPEER, os.X_OK) else "the peer build left no llpeer"


why = get_peer()
if why:
    skip_all(why)

tmp = tempfile.mkdtemp(prefix="r1-llamacpp-")
# qwen2-tiny's shape with the real tokenizer's vocabulary (llama.cpp needs a tokenizer in the file)
cfg = json.load(open(f"{FIX}/qwen2-tiny/config.json"))
cfg["vocab_size"] = 151936
cfg["bos_token_id"] = 151646
cfg["eos_token_id"] = 151643
open(os.path.join(tmp, "config.json"), "w").write(json.dumps(cfg))
f32 = os.path.join(tmp, "tiny-f32.gguf")
r = subprocess.run([R1, "convert", "--random-weights", os.path.join(tmp, "config.json"), "--seed", "5",
                    "--tokenizer-from", f"{FIX}/tokenizer", "--type", "f32", "--out", f32],
                   capture_output=True, text=True)
if not ok(r.returncode == 0, "r1 convert writes an F32 GGUF with the real tokenizer", r.stderr):
    print(f"1..{n}")
    sys.exit(0)

env = dict(os.environ, LLPEER_FA="0", LLPEER_KV="f32")
info = subprocess.run([LLPEER, "info", f32], capture_output=True, text=True, env=env)
try:
    info = json.loads(info.stdout.strip().splitlines()[-1])
except (ValueError, IndexError):
    info = None
tc = json.load(open(f"{FIX}/tokenizer/tokenizer_config.json"))
ok(info is not None and info["eos"] == 151643 and info["bos"] == 151646
   and info["add_bos"] == bool(tc.get("add_bos_token", True)),
   "llama.cpp loads the file and reads BOS, EOS and add_bos_token as written", info)

ids = [151646, 3, 17, 2, 99, 5, 1000, 42]
out = os.path.join(tmp, "peer.f32")
p = subprocess.run([LLPEER, "logits", f32, ",".join(map(str, ids)), out, "2"], capture_output=True, text=True, env=env)
r = subprocess.run([R1, "logits", "--model", f32, "--ids", ",".join(map(str, ids)), "--device", "cpu",
                    "--cpu-precision", "exact", "--kv-cache-dtype", "f32"], capture_output=True, text=True)
if ok(p.returncode == 0 and r.returncode == 0, "both engines give logits", (p.stderr[-400:], r.stderr[-400:])):
    raw = open(out, "rb").read()
    V = len(raw) // 4 // len(ids)
    peer = struct.unpack(f"<{len(raw) // 4}f", raw)
    rows = json.loads(r.stdout)
    nv = min(V, len(rows[0]))
    diff = max(abs(rows[t][v] - peer[t * V + v]) for t in range(len(ids)) for v in range(nv))
    ref = max(abs(peer[t * V + v]) for t in range(len(ids)) for v in range(nv))
    rel = diff / ref
    ok(rel < 1e-4, f"logits at every position agree with llama.cpp's: rel err {rel:.2e} (< 1e-4)")
    print(f"# {len(ids)} positions x {nv} logits, max |diff| {diff:.3e}, max |ref| {ref:.3e}")

# a Q8_0 file: both engines multiply 8-bit weights with 8-bit activations (r1's fast default, KV f16
# in both), each with its own activation scales, so they agree to the 8-bit tolerance, not bitwise
q8 = os.path.join(tmp, "tiny-q8_0.gguf")
subprocess.run([R1, "convert", "--random-weights", os.path.join(tmp, "config.json"), "--seed", "5",
                "--tokenizer-from", f"{FIX}/tokenizer", "--type", "q8_0", "--out", q8], capture_output=True)
penv = dict(env)
penv.pop("LLPEER_KV")
p = subprocess.run([LLPEER, "logits", q8, ",".join(map(str, ids)), out, "2"], capture_output=True, text=True, env=penv)
r = subprocess.run([R1, "logits", "--model", q8, "--ids", ",".join(map(str, ids)), "--device", "cpu"],
                   capture_output=True, text=True)
if ok(p.returncode == 0 and r.returncode == 0, "Q8_0: both engines give logits", (p.stderr[-400:], r.stderr[-400:])):
    raw = open(out, "rb").read()
    V = len(raw) // 4 // len(ids)
    peer = struct.unpack(f"<{len(raw) // 4}f", raw)
    rows = json.loads(r.stdout)
    nv = min(V, len(rows[0]))
    diff = max(abs(rows[t][v] - peer[t * V + v]) for t in range(len(ids)) for v in range(nv))
    ref = max(abs(peer[t * V + v]) for t in range(len(ids)) for v in range(nv))
    ok(diff / ref < 3e-2, f"Q8_0: logits agree with llama.cpp's to the 8-bit tolerance: rel err {diff / ref:.2e} (< 3e-2)")
shutil.rmtree(tmp)
print(f"1..{n}")
