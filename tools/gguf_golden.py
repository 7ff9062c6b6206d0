#!/usr/bin/env python3
"""gguf_golden.py - golden logits for a Qwen2 or Llama GGUF file, computed
independently of the engine: this script parses the GGUF itself, dequantises every
tensor to float64 (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K, written from ggml's block
layouts) and runs the forward pass in float64.  Plain python3, no numpy.

general.architecture "qwen2": q/k/v biases, rope on pairs (i, i+hd/2) (NEOX mode).
general.architecture "llama" (as llama.cpp's converter writes it): no biases, attn_q /
attn_k rows permuted by the converter so that rope rotates adjacent pairs (2i, 2i+1)
with frequency i (ggml NORM mode), taken from the file as it is; optional
rope_freqs.weight [hd/2] divides frequency i (llama3 rope scaling).

usage: tools/gguf_golden.py FILE.gguf OUT.json [--ids 1,2,3 ...] [--greedy N]

OUT.json: {"file", "cases": [{"input_ids", "logits" [T][vocab] at every prompt
position, "greedy_ids" (N greedy tokens after the prompt, no EOS stop),
"greedy_logits" [N-1][vocab] (row s: the logits after feeding greedy_ids[s], which
choose greedy_ids[s+1]), "min_top1_margin_along_greedy"}]}.
"""
import json
import math
import struct
import sys

GGML_F32, GGML_F16, GGML_Q8_0, GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_BF16 = 0, 1, 8, 12, 13, 14, 30
GGML_Q4_0, GGML_Q5_0 = 2, 6
BLOCK = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_BF16: (1, 2), GGML_Q8_0: (32, 34),
         GGML_Q4_0: (32, 18), GGML_Q5_0: (32, 22),
         GGML_Q4_K: (256, 144), GGML_Q5_K: (256, 176), GGML_Q6_K: (256, 210)}
SCALAR = {0: 'B', 1: 'b', 2: 'H', 3: 'h', 4: 'I', 5: 'i', 6: 'f', 7: '?', 10: 'Q', 11: 'q', 12: 'd'}


class Reader:
    def __init__(self, data):
        self.d = data
        self.p = 0

    def take(self, fmt):
        v = struct.unpack_from('<' + fmt, self.d, self.p)
        self.p += struct.calcsize('<' + fmt)
        return v[0]

    def string(self):
        n = self.take('Q')
        s = self.d[self.p:self.p + n]
        self.p += n
        return s.decode('utf-8', 'replace')

    def value(self, t):
        if t == 8:
            return self.string()
        if t == 9:
            et = self.take('I')
            n = self.take('Q')
            return [self.value(et) for _ in range(n)]
        return self.take(SCALAR[t])


def parse(path):
    data = open(path, 'rb').read()
    r = Reader(data)
    assert data[:4] == b'GGUF', 'bad magic'
    r.p = 4
    version = r.take('I')
    assert version in (2, 3), version
    n_t = r.take('Q')
    n_kv = r.take('Q')
    meta = {}
    for _ in range(n_kv):
        k = r.string()
        meta[k] = r.value(r.take('I'))
    infos = []
    for _ in range(n_t):
        name = r.string()
        nd = r.take('I')
        ne = [r.take('Q') for _ in range(nd)]
        typ = r.take('I')
        off = r.take('Q')
        infos.append((name, ne, typ, off))
    align = meta.get('general.alignment', 32)
    base = (r.p + align - 1) // align * align
    tensors = {}
    for name, ne, typ, off in infos:
        n = 1
        for d in ne:
            n *= d
        be, bb = BLOCK[typ]
        raw = data[base + off: base + off + n // be * bb]
        vals = dequant(typ, raw, n)
        if len(ne) == 1:
            tensors[name] = vals
        else:
            cols = ne[0]
            tensors[name] = [vals[i * cols:(i + 1) * cols] for i in range(n // cols)]
    return meta, tensors


def f16(b, o):
    return struct.unpack_from('<e', b, o)[0]


def scale_min_k4(j, q):
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def dequant(typ, b, n):
    out = []
    if typ == GGML_F32:
        return list(struct.unpack_from('<%df' % n, b, 0))
    if typ == GGML_F16:
        return list(struct.unpack_from('<%de' % n, b, 0))
    if typ == GGML_BF16:
        hs = struct.unpack_from('<%dH' % n, b, 0)
        return [struct.unpack('<f', struct.pack('<I', h << 16))[0] for h in hs]
    if typ == GGML_Q8_0:
        for o in range(0, n // 32 * 34, 34):
            d = f16(b, o)
            out.extend(d * q for q in struct.unpack_from('<32b', b, o + 2))
        return out
    if typ in (GGML_Q4_0, GGML_Q5_0):
        # ggml: d, [Q5_0: 32 fifth bits, bit j for weight j], 16 bytes: weight j low nibble, j + 16 high
        bb = 18 if typ == GGML_Q4_0 else 22
        for o in range(0, n // 32 * bb, bb):
            d = f16(b, o)
            qh = struct.unpack_from('<I', b, o + 2)[0] if typ == GGML_Q5_0 else 0
            qs = b[o + bb - 16:o + bb]
            for j in range(32):
                q = (qs[j] & 0xF) if j < 16 else (qs[j - 16] >> 4)
                if typ == GGML_Q5_0:
                    q = (q | (((qh >> j) & 1) << 4)) - 16
                else:
                    q -= 8
                out.append(d * q)
        return out
    if typ in (GGML_Q4_K, GGML_Q5_K):
        bb = 144 if typ == GGML_Q4_K else 176
        for o in range(0, n // 256 * bb, bb):
            d, dmin = f16(b, o), f16(b, o + 2)
            sc = b[o + 4:o + 16]
            if typ == GGML_Q4_K:
                qh, ql = None, b[o + 16:o + 144]
            else:
                qh, ql = b[o + 16:o + 48], b[o + 48:o + 176]
            y = [0.0] * 256
            for pair in range(4):          # sub-blocks 2*pair and 2*pair+1
                s1, m1 = scale_min_k4(2 * pair, sc)
                s2, m2 = scale_min_k4(2 * pair + 1, sc)
                for l in range(32):
                    byte = ql[32 * pair + l]
                    lo, hi = byte & 0xF, byte >> 4
                    if qh is not None:
                        lo += 16 if qh[l] & (1 << (2 * pair)) else 0
                        hi += 16 if qh[l] & (2 << (2 * pair)) else 0
                    y[64 * pair + l] = d * s1 * lo - dmin * m1
                    y[64 * pair + 32 + l] = d * s2 * hi - dmin * m2
            out.extend(y)
        return out
    if typ == GGML_Q6_K:
        for o in range(0, n // 256 * 210, 210):
            ql, qh = b[o:o + 128], b[o + 128:o + 192]
            sc = struct.unpack_from('<16b', b, o + 192)
            d = f16(b, o + 208)
            y = [0.0] * 256
            for e in range(256):
                half, r = divmod(e, 128)
                g, l = divmod(r, 32)       # group g of 32 within the half
                lbyte = ql[64 * half + l + (32 if g in (1, 3) else 0)]
                low = (lbyte & 0xF) if g in (0, 1) else (lbyte >> 4)
                high = (qh[32 * half + l] >> (2 * g)) & 3
                q = (low | (high << 4)) - 32
                y[e] = d * sc[8 * half + r // 16] * q
            out.extend(y)
        return out
    raise ValueError('type %d' % typ)


def matvec(w, x):
    return [math.fsum(a * b for a, b in zip(row, x)) for row in w]


def rmsnorm(x, w, eps):
    s = 1.0 / math.sqrt(math.fsum(v * v for v in x) / len(x) + eps)
    return [v * s * g for v, g in zip(x, w)]


class Model:
    def __init__(self, meta, t):
        a = meta['general.architecture']
        assert a in ('qwen2', 'llama'), a
        self.arch = a
        self.L = meta[a + '.block_count']
        self.H = meta[a + '.embedding_length']
        self.nh = meta[a + '.attention.head_count']
        self.nkv = meta.get(a + '.attention.head_count_kv', self.nh)
        self.hd = self.H // self.nh
        self.theta = meta.get(a + '.rope.freq_base', 10000.0)
        self.eps = meta[a + '.attention.layer_norm_rms_epsilon']
        self.t = t
        self.out = t.get('output.weight', t['token_embd.weight'])
        self.vocab = len(t['token_embd.weight'])
        self.freq_div = None
        if a == 'llama':
            self.hd = meta.get('llama.attention.key_length', self.hd)
            st = meta.get('llama.rope.scaling.type', 'none')
            assert st == 'none', 'rope scaling type %s not supported' % st
            nrot = meta.get('llama.rope.dimension_count', self.hd)
            assert nrot == self.hd, 'partial rope (%d of %d) not supported' % (nrot, self.hd)
            self.freq_div = t.get('rope_freqs.weight')
            if self.freq_div is not None:
                assert len(self.freq_div) == self.hd // 2, len(self.freq_div)

    def rope(self, v, pos):
        hd, half = self.hd, self.hd // 2
        if self.arch == 'llama':
            # ggml rope NORM mode: adjacent pairs (2i, 2i+1), frequency i
            for h in range(len(v) // hd):
                for i in range(half):
                    ang = pos * self.theta ** (-2.0 * i / hd)
                    if self.freq_div is not None:
                        ang /= self.freq_div[i]
                    c, s = math.cos(ang), math.sin(ang)
                    a, b = v[h * hd + 2 * i], v[h * hd + 2 * i + 1]
                    v[h * hd + 2 * i] = a * c - b * s
                    v[h * hd + 2 * i + 1] = a * s + b * c
            return
        for h in range(len(v) // hd):
            for i in range(half):
                ang = pos * self.theta ** (-2.0 * i / hd)
                c, s = math.cos(ang), math.sin(ang)
                a, b = v[h * hd + i], v[h * hd + i + half]
                v[h * hd + i] = a * c - b * s
                v[h * hd + i + half] = b * c + a * s

    def step(self, tok, pos, cache):
        t, hd = self.t, self.hd
        x = list(t['token_embd.weight'][tok])
        for l in range(self.L):
            p = 'blk.%d.' % l
            h = rmsnorm(x, t[p + 'attn_norm.weight'], self.eps)
            q = matvec(t[p + 'attn_q.weight'], h)
            k = matvec(t[p + 'attn_k.weight'], h)
            v = matvec(t[p + 'attn_v.weight'], h)
            if self.arch == 'qwen2' or p + 'attn_q.bias' in t:
                q = [a + b for a, b in zip(q, t[p + 'attn_q.bias'])]
                k = [a + b for a, b in zip(k, t[p + 'attn_k.bias'])]
                v = [a + b for a, b in zip(v, t[p + 'attn_v.bias'])]
            self.rope(q, pos)
            self.rope(k, pos)
            cache[l].append((k, v))
            att = []
            group = self.nh // self.nkv
            for hh in range(self.nh):
                kv = hh // group
                qh = q[hh * hd:(hh + 1) * hd]
                sc = [math.fsum(a * b for a, b in zip(qh, kk[kv * hd:(kv + 1) * hd])) / math.sqrt(hd)
                      for kk, _ in cache[l]]
                m = max(sc)
                e = [math.exp(s - m) for s in sc]
                z = math.fsum(e)
                for i in range(hd):
                    att.append(math.fsum(w * vv[kv * hd + i] for w, (_, vv) in zip(e, cache[l])) / z)
            o = matvec(t[p + 'attn_output.weight'], att)
            x = [a + b for a, b in zip(x, o)]
            h = rmsnorm(x, t[p + 'ffn_norm.weight'], self.eps)
            g = matvec(t[p + 'ffn_gate.weight'], h)
            u = matvec(t[p + 'ffn_up.weight'], h)
            act = [gg / (1.0 + math.exp(-gg)) * uu for gg, uu in zip(g, u)]
            x = [a + b for a, b in zip(x, matvec(t[p + 'ffn_down.weight'], act))]
        return matvec(self.out, rmsnorm(x, t['output_norm.weight'], self.eps))


def golden_cases(m, cases, n_greedy=8):
    """The golden record of each case (prompt logits, greedy path) for Model m."""
    if not cases:
        cases = [[3], [17, 2, 99, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]
    res = []
    for ids in cases:
        cache = [[] for _ in range(m.L)]
        logits = [m.step(tok, pos, cache) for pos, tok in enumerate(ids)]
        greedy, glog, margin = [], [], float('inf')
        last = logits[-1]
        for s in range(n_greedy):
            order = sorted(range(len(last)), key=lambda j: -last[j])
            margin = min(margin, last[order[0]] - last[order[1]])
            nxt = order[0]
            greedy.append(nxt)
            last = m.step(nxt, len(ids) + s, cache)
            glog.append(last)
        res.append({'input_ids': ids, 'logits': [[float('%.10g' % v) for v in r] for r in logits],
                    'greedy_ids': greedy,
                    'greedy_logits': [[float('%.10g' % v) for v in r] for r in glog[:-1]],
                    'min_top1_margin_along_greedy': margin})
    return res


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    path, outp = args[0], args[1]
    cases, n_greedy = [], 8
    i = 2
    while i < len(args):
        if args[i] == '--ids':
            cases.append([int(v) for v in args[i + 1].split(',')])
        elif args[i] == '--greedy':
            n_greedy = int(args[i + 1])
        i += 2
    meta, tensors = parse(path)
    m = Model(meta, tensors)
    res = golden_cases(m, cases, n_greedy)
    out = {'file': path.split('/')[-1], 'computed_by': 'tools/gguf_golden.py (float64, dequantised weights)',
           'cases': res}
    with open(outp, 'w') as f:
        json.dump(out, f, separators=(',', ':'))
        f.write('\n')


if __name__ == '__main__':
    main()
