#!/usr/bin/env python3
"""fp8_fixture.py - FP8 checkpoints of qwen2-tiny, as the published FP8 distills
are laid out, with float64 goldens.  Plain python3, no numpy.

  tools/fp8_fixture.py [OUT_DIR]      (default test/fixtures/qwen2-tiny-fp8)

Writes three checkpoint directories under OUT_DIR, each config.json +
model.safetensors + golden.json:
  channel/  compressed-tensors "float-quantized" (llm-compressor's FP8-dynamic
            layout): q/k/v/o/gate/up/down weights F8_E4M3 with a BF16
            "weight_scale" [out, 1]; embeddings, norms, biases, lm_head BF16
            (lm_head in the ignore list, as published)
  tensor/   the same with one F32 "weight_scale" [1] per matrix
  block/    quant_method "fp8", weight_block_size [32, 32] (DeepSeek-V3 style,
            128 x 128 in real files), F32 "weight_scale_inv" per block

Quantisation: scale = amax / 448 of the channel, tensor or block (rounded to
the scale's dtype), q = the nearest E4M3 value of w / scale (ties to even).
Golden: tools/gguf_golden.py's float64 forward over the weights as the engine
defines them: bf16(fp8(q) * scale) for the matrices (the engine dequantises
FP8 matrices to bf16 at load), the stored BF16 values elsewhere.
"""
import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "gpu"))
import gguf_golden  # noqa: E402
from gpu_compare import read_safetensors  # noqa: E402

SRC = os.path.join(ROOT, "test", "fixtures", "qwen2-tiny")
MATS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def e4m3(b):
    e, m = (b >> 3) & 15, b & 7
    if e == 15 and m == 7:
        return float('nan')
    v = math.ldexp(m, -9) if e == 0 else math.ldexp(8 + m, e - 10)
    return -v if b & 0x80 else v


# the 127 non-negative finite E4M3 values, ascending, with their codes
POS = sorted((e4m3(b), b) for b in range(0x7F))


def to_e4m3(x):
    """nearest E4M3 code of x, ties to the even code, saturating at 448"""
    a = min(abs(x), 448.0)
    lo, hi = 0, len(POS) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if POS[mid][0] <= a:
            lo = mid
        else:
            hi = mid
    (vl, cl), (vh, ch) = POS[lo], POS[hi]
    if a - vl < vh - a or (a - vl == vh - a and cl % 2 == 0):
        c = cl
    else:
        c = ch
    if a <= vl:
        c = cl
    return c | (0x80 if x < 0 and c else 0)


def bf16_bits(x):
    """float to bf16 bits, round to nearest even (finite inputs)"""
    u = struct.unpack('<I', struct.pack('<f', x))[0]
    u += 0x7FFF + ((u >> 16) & 1)
    return (u >> 16) & 0xFFFF


def bf16_val(bits):
    return struct.unpack('<f', struct.pack('<I', bits << 16))[0]


def f32_val(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]


def write_safetensors(path, entries):
    """entries: name -> (dtype, shape, bytes)"""
    header, off, blobs = {}, 0, []
    for name, (dt, shape, raw) in entries.items():
        pad = (-len(raw)) % 8
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blobs.append(raw + b'\0' * pad)
        off += len(raw) + pad
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(',', ':')).encode()
    hj += b' ' * ((-len(hj)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def quantise(shape, vals, mode):
    """-> (codes bytes, scale entry (dtype, shape, bytes), dequantised rows (bf16-rounded))"""
    rows, cols = shape
    blk = 32
    if mode == 'channel':
        scales = []
        for r in range(rows):
            amax = max(abs(v) for v in vals[r * cols:(r + 1) * cols])
            scales.append(bf16_val(bf16_bits(amax / 448.0)) if amax else 1.0)

        def s_of(r, c):
            return scales[r]
        sc_entry = ('BF16', [rows, 1], struct.pack('<%dH' % rows, *[bf16_bits(s) for s in scales]))
    elif mode == 'tensor':
        amax = max(abs(v) for v in vals)
        s = f32_val(amax / 448.0)

        def s_of(r, c):
            return s
        sc_entry = ('F32', [1], struct.pack('<f', s))
    else:
        br, bc = (rows + blk - 1) // blk, (cols + blk - 1) // blk
        sc = []
        for i in range(br):
            for j in range(bc):
                amax = max(abs(vals[r * cols + c]) for r in range(i * blk, min(rows, (i + 1) * blk))
                           for c in range(j * blk, min(cols, (j + 1) * blk)))
                sc.append(f32_val(amax / 448.0) if amax else 1.0)

        def s_of(r, c):
            return sc[(r // blk) * bc + c // blk]
        sc_entry = ('F32', [br, bc], struct.pack('<%df' % len(sc), *sc))
    codes = bytearray(rows * cols)
    deq = []
    for r in range(rows):
        row = []
        for c in range(cols):
            s = s_of(r, c)
            q = to_e4m3(vals[r * cols + c] / s)
            codes[r * cols + c] = q
            row.append(bf16_val(bf16_bits(e4m3(q) * s)))
        deq.append(row)
    return bytes(codes), sc_entry, deq


def quant_config(mode):
    if mode == 'block':
        return {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                "weight_block_size": [32, 32]}
    w = {"actorder": None, "block_structure": None, "dynamic": False, "group_size": None, "num_bits": 8,
         "observer": "minmax", "observer_kwargs": {}, "strategy": mode, "symmetric": True, "type": "float"}
    a = {"actorder": None, "block_structure": None, "dynamic": True, "group_size": None, "num_bits": 8,
         "observer": None, "observer_kwargs": {}, "strategy": "token", "symmetric": True, "type": "float"}
    return {"config_groups": {"group_0": {"input_activations": a, "output_activations": None,
                                          "targets": ["Linear"], "weights": w}},
            "format": "float-quantized", "ignore": ["lm_head"], "kv_cache_scheme": None,
            "quant_method": "compressed-tensors", "quantization_status": "compressed"}


def build(mode, out_dir, src, cfg):
    os.makedirs(out_dir, exist_ok=True)
    entries, golden_t = {}, {}
    gname = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    for name, (shape, vals) in src.items():
        g = gname.get(name)
        if name.startswith("model.layers."):
            parts = name.split(".")
            l, rest = parts[2], ".".join(parts[3:])
            g = "blk.%s.%s" % (l, {
                "input_layernorm.weight": "attn_norm.weight",
                "post_attention_layernorm.weight": "ffn_norm.weight",
                "self_attn.q_proj.weight": "attn_q.weight", "self_attn.q_proj.bias": "attn_q.bias",
                "self_attn.k_proj.weight": "attn_k.weight", "self_attn.k_proj.bias": "attn_k.bias",
                "self_attn.v_proj.weight": "attn_v.weight", "self_attn.v_proj.bias": "attn_v.bias",
                "self_attn.o_proj.weight": "attn_output.weight",
                "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                "mlp.down_proj.weight": "ffn_down.weight"}[rest])
        if name.endswith(".weight") and any(name.endswith(mm + ".weight") for mm in MATS):
            codes, sc, deq = quantise(shape, vals, mode)
            entries[name] = ("F8_E4M3", shape, codes)
            entries[name + ("_scale_inv" if mode == 'block' else "_scale")] = sc
            golden_t[g] = deq
        else:
            bits = [bf16_bits(v) for v in vals]
            entries[name] = ("BF16", shape, struct.pack('<%dH' % len(bits), *bits))
            bv = [bf16_val(b) for b in bits]
            golden_t[g] = bv if len(shape) == 1 else [bv[i * shape[1]:(i + 1) * shape[1]] for i in range(shape[0])]
    write_safetensors(os.path.join(out_dir, "model.safetensors"), entries)
    c = dict(cfg)
    c["quantization_config"] = quant_config(mode)
    c["torch_dtype"] = "bfloat16"
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
        f.write("\n")
    meta = {"general.architecture": "qwen2", "qwen2.block_count": cfg["num_hidden_layers"],
            "qwen2.embedding_length": cfg["hidden_size"],
            "qwen2.attention.head_count": cfg["num_attention_heads"],
            "qwen2.attention.head_count_kv": cfg["num_key_value_heads"],
            "qwen2.rope.freq_base": cfg["rope_theta"],
            "qwen2.attention.layer_norm_rms_epsilon": cfg["rms_norm_eps"]}
    m = gguf_golden.Model(meta, golden_t)
    res = gguf_golden.golden_cases(m, [], 8)
    out = {"file": "%s/model.safetensors" % mode,
           "computed_by": "tools/fp8_fixture.py (float64 forward of tools/gguf_golden.py over bf16(fp8 * scale))",
           "cases": res}
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(out, f, separators=(',', ':'))
        f.write("\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "test", "fixtures", "qwen2-tiny-fp8")
    src = read_safetensors(os.path.join(SRC, "model.safetensors"))
    with open(os.path.join(SRC, "config.json")) as f:
        cfg = json.load(f)
    for mode in ("channel", "tensor", "block"):
        build(mode, os.path.join(out, mode), src, cfg)
        print("wrote", os.path.join(out, mode))


if __name__ == "__main__":
    main()
