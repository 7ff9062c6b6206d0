#!/usr/bin/env python3
"""llama_fixture.py - a tiny Hugging Face-style Llama-3 checkpoint (the
DeepSeek-R1-Distill-Llama architecture at toy size) and its float64 golden,
written deterministically (own PRNG, constant seed).  Plain python3, no numpy.

usage: tools/llama_fixture.py OUTDIR

Writes OUTDIR/config.json, OUTDIR/model.safetensors (float32, HF tensor names),
OUTDIR/golden.json and OUTDIR/README.md.  golden.json is computed by a float64
forward pass that follows transformers' LlamaForCausalLM (RMSNorm, rotate_half
rotary embedding with llama3 rope scaling as _compute_llama3_parameters does
it, grouped-query causal attention, SiLU-gated MLP, final norm, lm_head) over
the exact float32-rounded weights.  Format as tools/gguf_golden.py's:
{"file", "computed_by", "cases": [{"input_ids", "logits" [T][V] at every prompt
position, "greedy_ids" (8 greedy tokens after the prompt, no EOS stop),
"greedy_logits" [7][V] (row s: the logits after feeding greedy_ids[s]),
"min_top1_margin_along_greedy"}]}.
"""
import json
import math
import os
import struct
import sys
from array import array

SEED = 0xDAA66D2C7DDFA478   # picked from a few seeds for comfortable greedy margins
ORIG = 64            # rope_scaling.original_max_position_embeddings
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "attention_bias": False,
    "mlp_bias": False,
    "hidden_act": "silu",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "vocab_size": 320,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": ORIG},
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "float32",
}
N_GREEDY = 8
LONG_T = 200
# uniform(-s, s) weight scale per tensor kind (norm weights: 1 + uniform(-0.1, 0.1))
SCALE = {"embed": 1.0, "q": 0.25, "k": 0.25, "v": 0.25, "o": 0.2,
         "gate": 0.25, "up": 0.25, "down": 0.2, "lm_head": 0.35}


class Rng:
    """splitmix64"""

    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFFFFFFFFFF

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return z ^ (z >> 31)

    def uniform(self):            # [-1, 1)
        return (self.next() >> 11) * (2.0 / (1 << 53)) - 1.0


def f32(vals):
    """round to float32, return float64 list of the exact stored values"""
    return list(array('f', vals))


def make_weights(cfg, rng):
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    w = {}   # name -> (shape, flat float64 list of float32 values)

    def mat(name, rows, cols, kind):
        s = SCALE[kind]
        w[name] = ([rows, cols], f32([s * rng.uniform() for _ in range(rows * cols)]))

    def norm(name, n):
        w[name] = ([n], f32([1.0 + 0.1 * rng.uniform() for _ in range(n)]))

    mat("model.embed_tokens.weight", V, H, "embed")
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        norm(p + "input_layernorm.weight", H)
        mat(p + "self_attn.q_proj.weight", nh * hd, H, "q")
        mat(p + "self_attn.k_proj.weight", nkv * hd, H, "k")
        mat(p + "self_attn.v_proj.weight", nkv * hd, H, "v")
        mat(p + "self_attn.o_proj.weight", H, nh * hd, "o")
        norm(p + "post_attention_layernorm.weight", H)
        mat(p + "mlp.gate_proj.weight", I, H, "gate")
        mat(p + "mlp.up_proj.weight", I, H, "up")
        mat(p + "mlp.down_proj.weight", H, I, "down")
    norm("model.norm.weight", H)
    mat("lm_head.weight", V, H, "lm_head")
    return w


def write_safetensors(path, w):
    header, off, blobs = {}, 0, []
    for name, (shape, vals) in w.items():
        b = array('f', vals)
        if sys.byteorder != 'little':
            b.byteswap()
        b = b.tobytes()
        pad = (-len(b)) % 8
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b + b'\0' * pad)
        off += len(b) + pad
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(',', ':')).encode()
    hj += b' ' * ((-len(hj)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def rope_inv_freq(cfg, scaled=True):
    """inv_freq as transformers' _compute_default / _compute_llama3_parameters"""
    hd, theta = cfg["head_dim"], cfg["rope_theta"]
    inv = [1.0 / theta ** (2.0 * i / hd) for i in range(hd // 2)]
    regions = []
    if not scaled:
        return inv, regions
    rs = cfg["rope_scaling"]
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    orig = rs["original_max_position_embeddings"]
    low_freq_wavelen = orig / lo
    high_freq_wavelen = orig / hi
    out = []
    for f in inv:
        wavelen = 2 * math.pi / f
        if wavelen > low_freq_wavelen:
            out.append(f / factor)
            regions.append(("low", wavelen, 0.0))
        elif wavelen < high_freq_wavelen:
            out.append(f)
            regions.append(("high", wavelen, 1.0))
        else:
            smooth = (orig / wavelen - lo) / (hi - lo)
            out.append((1 - smooth) * f / factor + smooth * f)
            regions.append(("medium", wavelen, smooth))
    return out, regions


def matvec(m, cols, x):
    return [math.fsum(a * b for a, b in zip(m[r * cols:(r + 1) * cols], x)) for r in range(len(m) // cols)]


def rmsnorm(x, g, eps):
    s = 1.0 / math.sqrt(math.fsum(v * v for v in x) / len(x) + eps)
    return [v * s * gg for v, gg in zip(x, g)]


class Model:
    def __init__(self, cfg, w, inv_freq):
        self.c = cfg
        self.w = {k: v[1] for k, v in w.items()}
        self.inv = inv_freq
        self.H = cfg["hidden_size"]
        self.I = cfg["intermediate_size"]
        self.nh, self.nkv, self.hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        self.L = cfg["num_hidden_layers"]
        self.eps = cfg["rms_norm_eps"]

    def rope(self, v, n_heads, pos):
        # q * cos + rotate_half(q) * sin, cos/sin of cat(freqs, freqs)
        hd, half = self.hd, self.hd // 2
        for h in range(n_heads):
            b0 = h * hd
            for i in range(half):
                ang = pos * self.inv[i]
                c, s = math.cos(ang), math.sin(ang)
                x1, x2 = v[b0 + i], v[b0 + i + half]
                v[b0 + i] = x1 * c - x2 * s
                v[b0 + i + half] = x2 * c + x1 * s

    def step(self, tok, pos, cache):
        w, H, hd = self.w, self.H, self.hd
        x = w["model.embed_tokens.weight"][tok * H:(tok + 1) * H]
        group = self.nh // self.nkv
        scale = 1.0 / math.sqrt(hd)
        for l in range(self.L):
            p = "model.layers.%d." % l
            h = rmsnorm(x, w[p + "input_layernorm.weight"], self.eps)
            q = matvec(w[p + "self_attn.q_proj.weight"], H, h)
            k = matvec(w[p + "self_attn.k_proj.weight"], H, h)
            v = matvec(w[p + "self_attn.v_proj.weight"], H, h)
            self.rope(q, self.nh, pos)
            self.rope(k, self.nkv, pos)
            cache[l].append((k, v))
            att = []
            for hh in range(self.nh):
                kv = hh // group
                qh = q[hh * hd:(hh + 1) * hd]
                sc = [math.fsum(a * b for a, b in zip(qh, kk[kv * hd:(kv + 1) * hd])) * scale
                      for kk, _ in cache[l]]
                m = max(sc)
                e = [math.exp(s - m) for s in sc]
                z = math.fsum(e)
                for i in range(hd):
                    att.append(math.fsum(ee * vv[kv * hd + i] for ee, (_, vv) in zip(e, cache[l])) / z)
            o = matvec(w[p + "self_attn.o_proj.weight"], self.nh * hd, att)
            x = [a + b for a, b in zip(x, o)]
            h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], self.eps)
            g = matvec(w[p + "mlp.gate_proj.weight"], H, h)
            u = matvec(w[p + "mlp.up_proj.weight"], H, h)
            act = [gg / (1.0 + math.exp(-gg)) * uu for gg, uu in zip(g, u)]
            x = [a + b for a, b in zip(x, matvec(w[p + "mlp.down_proj.weight"], self.I, act))]
        return matvec(w["lm_head.weight"], H, rmsnorm(x, w["model.norm.weight"], self.eps))

    def prompt(self, ids):
        cache = [[] for _ in range(self.L)]
        return [self.step(t, p, cache) for p, t in enumerate(ids)], cache


def rnd(v):
    return float('%.9g' % v)


def run_case(m, ids):
    logits, cache = m.prompt(ids)
    greedy, glog, margin = [], [], float('inf')
    last = logits[-1]
    for s in range(N_GREEDY):
        order = sorted(range(len(last)), key=lambda j: -last[j])
        margin = min(margin, last[order[0]] - last[order[1]])
        greedy.append(order[0])
        last = m.step(order[0], len(ids) + s, cache)
        glog.append(last)
    return {"input_ids": ids, "logits": [[rnd(v) for v in r] for r in logits],
            "greedy_ids": greedy, "greedy_logits": [[rnd(v) for v in r] for r in glog[:-1]],
            "min_top1_margin_along_greedy": margin}, logits


README = """# llama-tiny - a tiny Llama-3 checkpoint with a float64 golden

A deterministic, randomly initialised `LlamaForCausalLM` (the DeepSeek-R1-Distill-Llama
architecture at toy size): vocab 320, hidden 64, intermediate 128, 2 layers, 4 query heads,
2 KV heads (head_dim 16), no biases, untied lm_head, rms_norm_eps 1e-5, rope_theta 500000 with
llama3 rope scaling (factor 8, low_freq_factor 1, high_freq_factor 4,
original_max_position_embeddings {orig}).

- `config.json`: in the style of the real checkpoints' config.json.
- `model.safetensors`: float32 weights, Hugging Face tensor names.
- `golden.json`: `{{"file", "computed_by", "cases": [...]}}` as the qwen2-tiny-gguf goldens
  (tools/gguf_golden.py): per case `input_ids`, `logits` [T][320] at every prompt position,
  8 `greedy_ids` after the prompt (no EOS stop), `greedy_logits` [7][320] (row s: the logits
  after feeding `greedy_ids[s]`), `min_top1_margin_along_greedy`. Cases: `[3]`,
  `[17,2,99,5]`, `[1..9]` and a {long_t}-token prompt (deterministic ids) so that positions are
  large enough for the rope scaling to matter. Logits rounded to 9 significant digits.

The golden is computed by `tools/llama_fixture.py` itself, in float64 (plain python3), over the
exact float32 weights, following transformers' `LlamaForCausalLM`: RMSNorm, rotary embedding
with `rotate_half` (pairs i, i+8), inv_freq = 1/theta^(2i/hd) rescaled as transformers'
`_compute_llama3_parameters` does, causal grouped-query attention (kv head = q head // 2,
scale 1/sqrt(16)), SiLU-gated MLP, final norm, lm_head.

Rope frequencies (wavelen = 2*pi/inv_freq; high: unchanged, low: divided by 8, medium: smoothed):

{regions}

Sensitivity: the long case's prompt logits computed with the rope scaling switched off differ
from the golden by {sens:.3g} relative (max |diff| / max |ref|), so an engine that ignores
or misapplies the scaling fails a 1e-4 comparison. Mistreating only the medium frequency
(i={med}) as a low one (divided by 8) or as a high one (unchanged) gives {sens_lo:.3g} and
{sens_hi:.3g}.

Expected agreement: a float32 engine over these weights matches the logits within 1e-4 relative
(max |diff| / max |ref|) and reproduces every greedy id (smallest golden margin: {margin:.3g}).

Regenerate (deterministic, a few seconds):

```sh
tools/llama_fixture.py test/fixtures/llama-tiny
```
"""


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cfg = CONFIG
    rng = Rng(SEED)
    w = make_weights(cfg, rng)
    V = cfg["vocab_size"]
    long_ids = [rng.next() % V for _ in range(LONG_T)]

    inv, regions = rope_inv_freq(cfg)
    inv0, _ = rope_inv_freq(cfg, scaled=False)
    lines = []
    for i, (r, wl, sm) in enumerate(regions):
        lines.append("- i=%d: wavelen %.6g, %s (inv_freq %.9g -> %.9g, smooth %.4g)"
                     % (i, wl, r, inv0[i], inv[i], sm))
    print("ORIG=%d; rope frequencies:" % ORIG)
    print("\n".join(lines))
    assert {r for r, _, _ in regions} == {"low", "medium", "high"}, "tune ORIG"

    write_safetensors(os.path.join(out, "model.safetensors"), w)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")

    m = Model(cfg, w, inv)
    cases, margin = [], float('inf')
    long_logits = None
    for ids in ([3], [17, 2, 99, 5], list(range(1, 10)), long_ids):
        c, lg = run_case(m, ids)
        cases.append(c)
        margin = min(margin, c["min_top1_margin_along_greedy"])
        print("case T=%d greedy %s margin %.4g" % (len(ids), c["greedy_ids"], c["min_top1_margin_along_greedy"]))
        if ids is long_ids:
            long_logits = lg
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump({"file": "model.safetensors",
                   "computed_by": "tools/llama_fixture.py (float64 LlamaForCausalLM forward, llama3 rope scaling)",
                   "cases": cases}, f, separators=(',', ':'))
        f.write("\n")

    ref = max(abs(v) for r in long_logits for v in r)

    def rel(inv_freq):
        other, _ = Model(cfg, w, inv_freq).prompt(long_ids)
        return max(abs(a - b) for ra, rb in zip(long_logits, other) for a, b in zip(ra, rb)) / ref

    sens = rel(inv0)
    print("rope scaling off, long case: max|diff|/max|ref| = %.4g" % sens)
    med = [i for i, r in enumerate(regions) if r[0] == "medium"][0]
    f = cfg["rope_scaling"]["factor"]
    sens_lo = rel([v / f if i == med else inv[i] for i, v in enumerate(inv0)])
    sens_hi = rel([v if i == med else inv[i] for i, v in enumerate(inv0)])
    print("medium frequency treated as low / as high: %.4g / %.4g" % (sens_lo, sens_hi))

    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(README.format(orig=ORIG, long_t=LONG_T, regions="\n".join(lines), sens=sens, margin=margin,
                            med=med, sens_lo=sens_lo, sens_hi=sens_hi))


if __name__ == '__main__':
    main()
