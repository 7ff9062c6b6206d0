#!/bin/bash
# gpu-profile.sh - where a decode step's time goes on the GPU: Nsight Compute
# (ncu) times every kernel of a few decode steps (CUDA graphs off, so each
# kernel is its own launch) and this prints a table by kernel name: launches,
# total and mean microseconds, DRAM GB/s, share of the step.
#
#   tools/gpu/gpu-profile.sh SHAPE PROMPT_LEN [STEPS] [r1 bench options...]
#   e.g. tools/gpu/gpu-profile.sh 1.5b 128 3
# Needs ncu (Nsight Compute) and a CUDA build of bin/r1.
set -euo pipefail
cd "$(dirname "$0")/../.."
shape=${1:-1.5b}
plen=${2:-128}
steps=${3:-3}
shift 3 2>/dev/null || shift $#
NCU=${NCU:-$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)}
csv=$(mktemp)
# kernels of the warm-up, the prefill and the first decode steps are skipped:
# count a decode step's launches first (graphs off, one short run)
R1_CUDA_GRAPHS=0 "$NCU" --csv --log-file "$csv" --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
	--launch-skip "${SKIP:-2000}" --launch-count "${COUNT:-1200}" \
	bin/r1 bench --random-weights "$shape" --device cuda --batch "${BATCH:-1}" --prompt-len "$plen" \
	--gen-len "${GEN:-64}" "$@" > "$csv.out" 2> "$csv.err" || { tail -5 "$csv" "$csv.err"; exit 1; }
[ -n "${RAW:-}" ] && cp "$csv" "$RAW"
python3 - "$csv" "$steps" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
h0 = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
head = rows[h0]; rows = rows[h0 + 1:]
iK, iM, iU, iV = head.index("Kernel Name"), head.index("Metric Name"), head.index("Metric Unit"), head.index("Metric Value")
iID = head.index("ID")
k = collections.OrderedDict()
for r in rows:
    d = k.setdefault(r[iID], {"name": r[iK]})
    v = float(r[iV].replace(",", ""))
    u = r[iU]
    scale = {"ns": 1e-3, "us": 1, "ms": 1e3, "nsecond": 1e-3, "usecond": 1, "msecond": 1e3, "second": 1e6, "byte": 1, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}.get(u, 1)
    d[r[iM]] = v * scale
agg = collections.OrderedDict()
for d in k.values():
    n = d["name"][:70]
    a = agg.setdefault(n, [0, 0.0, 0.0])
    a[0] += 1; a[1] += d.get("gpu__time_duration.sum", 0); a[2] += d.get("dram__bytes_read.sum", 0) + d.get("dram__bytes_write.sum", 0)
tot = sum(a[1] for a in agg.values())
print("%d kernels, %.1f us in all" % (len(k), tot))
print("%-70s %6s %10s %8s %8s %6s" % ("kernel", "n", "total_us", "mean_us", "GB/s", "share"))
for n, a in sorted(agg.items(), key=lambda x: -x[1][1]):
    print("%-70s %6d %10.1f %8.2f %8.0f %5.1f%%" % (n, a[0], a[1], a[1] / a[0], a[2] / (a[1] * 1e3) if a[1] else 0, 100 * a[1] / tot))
PY
