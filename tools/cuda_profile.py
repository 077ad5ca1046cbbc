#!/usr/bin/env python3
"""Per-kernel GPU time and DRAM traffic of one decode step, from Nsight Compute's CSV.

  TERNLM_CUDA_GRAPH=0 ncu --csv --clock-control none --launch-skip 1500 --launch-count 153 \\
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \\
      ternlm run -m 2b4t.gguf -p hi -n 24 --gpu > prof.csv;  tools/cuda_profile.py prof.csv
(--launch-count: the launches of one decode step, so each kernel of the step is counted once.)
"""
import csv
import sys
from collections import defaultdict

SCALE = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "ns": 1e-3, "us": 1.0, "ms": 1e3, "second": 1e6,
         "byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9, "KB": 1e3, "MB": 1e6, "GB": 1e9}

rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]
ids, name_i = head.index("ID"), head.index("Kernel Name")
metric_i, val_i, unit_i = head.index("Metric Name"), head.index("Metric Value"), head.index("Metric Unit")
per_launch = defaultdict(dict)  # launch id -> metric -> value (us or bytes)
names = {}
for r in rows[1:]:
    v = float(r[val_i].replace(",", "")) * SCALE.get(r[unit_i], 1.0)
    per_launch[r[ids]][r[metric_i]] = v
    names[r[ids]] = r[name_i].split("(")[0].replace("void ", "")
time, byts, count = defaultdict(float), defaultdict(float), defaultdict(int)
for i, m in per_launch.items():
    k = names[i]
    time[k] += m.get("gpu__time_duration.sum", 0.0)
    byts[k] += m.get("dram__bytes_read.sum", 0.0) + m.get("dram__bytes_write.sum", 0.0)
    count[k] += 1
s = sum(time.values())
print(f"{'kernel':34s} {'launches':>8s} {'total us':>10s} {'us each':>9s} {'share':>6s} {'DRAM MB':>9s} {'GB/s':>7s}")
for k in sorted(time, key=time.get, reverse=True):
    gbs = byts[k] / (time[k] * 1e3) if time[k] else 0.0
    print(f"{k:34s} {count[k]:8d} {time[k]:10.1f} {time[k] / count[k]:9.2f} {100 * time[k] / s:5.1f}% "
          f"{byts[k] / 1e6:9.1f} {gbs:7.0f}")
tb = sum(byts.values())
print(f"{'all':34s} {sum(count.values()):8d} {s:10.1f} {'':9s} {'':6s} {tb / 1e6:9.1f} {tb / (s * 1e3):7.0f}")
