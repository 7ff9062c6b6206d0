#!/usr/bin/env python3
"""Draw BENCHMARKS.md's figures (SVG, gnuplot) from the recorded results in docs/bench/.

tools/bench-plots.py [docs/bench]

- cpu-*.jsonl: rows of ../shared/tools/llamacpp-peer/speed.py (file, engine "r1" or "llama",
  prefill_tok_s, decode_tok_s; several reps allowed, the median is drawn), and rows of
  `r1 bench` batch runs (engine "r1-batchN", decode_tok_s) -> cpu-*.svg: r1 vs llama.cpp per
  file, prefill and decode, with the r1/llama.cpp ratio written over each pair.
- gpu-*.json: {"device", "date", "rows": [{scenario, value, target, higher_is_better}]} ->
  gpu-*.svg: each scenario as a fraction of its target (1.0 = target met).
Needs gnuplot (Debian: apt-get install gnuplot-nox).
"""
import glob, json, os, statistics, subprocess, sys


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


def cpu_plot(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    med = {}
    for r in rows:
        if "error" in r:
            continue
        for k in ("prefill_tok_s", "decode_tok_s"):
            if r.get(k) is not None:
                med.setdefault((r["file"], r["engine"], k), []).append(r[k])
    med = {k: statistics.median(v) for k, v in med.items()}
    files = sorted({f for f, _, _ in med}, key=lambda f: (f.split("-")[0], f))
    engines = sorted({e for _, e, _ in med}, key=lambda e: (e != "llama", e))
    dat = path[:-len(".jsonl")] + ".dat"
    with open(dat, "w") as f:
        f.write("label " + " ".join(engines) + "\n")
        for fi in files:
            for k, short in (("prefill_tok_s", "prefill"), ("decode_tok_s", "decode")):
                vals = [med.get((fi, e, k)) for e in engines]
                if all(v is None for v in vals):
                    continue
                f.write(f'"{fi.replace(".gguf", "")}\\n{short}" ' +
                        " ".join("NaN" if v is None else f"{v:.2f}" for v in vals) + "\n")
    labels = []
    row = 0
    for fi in files:
        for k in ("prefill_tok_s", "decode_tok_s"):
            a, b = med.get((fi, "r1", k)), med.get((fi, "llama", k))
            if a is not None or b is not None:
                if a and b:
                    top = max(a, b)
                    labels.append(f'set label "{a / b:.2f}x" at {row},{top * 1.04:.2f} center font ",9"')
                row += 1
    svg = path[:-len(".jsonl")] + ".svg"
    title = os.path.basename(path)[:-len(".jsonl")]
    gnuplot(f"""set terminal svg size 900,420 dynamic noenhanced font "sans,10"
set output "{svg}"
set title "{title}: tokens/s, 2 threads, batch 1 unless named (r1/llama.cpp over each pair)"
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set ylabel "tokens/s"
set yrange [0:*]
set key top right
set grid ytics
set xtics font ",8"
{chr(10).join(labels)}
plot for [i=2:{len(engines) + 1}] "{dat}" using i:xtic(1) title columnheader(i)
""")
    os.remove(dat)
    return svg


def gpu_plot(path):
    j = json.load(open(path))
    dat = path[:-len(".json")] + ".dat"
    with open(dat, "w") as f:
        for r in j["rows"]:
            frac = r["value"] / r["target"] if r.get("higher_is_better", True) else r["target"] / r["value"]
            f.write(f'"{r["scenario"]}" {frac:.3f} "{r["value"]:g} {r.get("unit", "")}"\n')
    svg = path[:-len(".json")] + ".svg"
    gnuplot(f"""set terminal svg size 900,420 dynamic noenhanced font "sans,10"
set output "{svg}"
set title "{j['device']}, {j['date']}: each scenario as a fraction of its target (1 = met)"
set style fill solid 0.8 border -1
set boxwidth 0.7
set yrange [0:1.3]
set grid ytics
set xtics rotate by -30 font ",8"
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 2
unset key
plot "{dat}" using 0:2:xtic(1) with boxes, "" using 0:($2 + 0.04):3 with labels font ",8"
""")
    os.remove(dat)
    return svg


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "docs/bench"
    for p in sorted(glob.glob(os.path.join(d, "cpu-*.jsonl"))):
        print(cpu_plot(p))
    for p in sorted(glob.glob(os.path.join(d, "gpu-*.json"))):
        print(gpu_plot(p))


if __name__ == "__main__":
    main()
