#!/usr/bin/env python3
"""Per-kernel GPU time of one decode step, from Nsight Compute's CSV (ncu --csv --metrics gpu__time_duration.sum).

  TERNLM_CUDA_GRAPH=0 ncu --csv --launch-skip 800 --launch-count 152 --metrics gpu__time_duration.sum \\
      ternlm run -m 2b4t.gguf -p hi -n 12 --gpu > prof.csv;  tools/cuda_profile.py prof.csv
"""
import csv
import sys
from collections import defaultdict

rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]
name_i, val_i, unit_i = head.index("Kernel Name"), head.index("Metric Value"), head.index("Metric Unit")
total, count = defaultdict(float), defaultdict(int)
for r in rows[1:]:
    scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "ns": 1e-3, "us": 1.0}.get(r[unit_i], 1.0)
    k = r[name_i].split("(")[0]
    total[k] += float(r[val_i].replace(",", "")) * scale
    count[k] += 1
s = sum(total.values())
for k in sorted(total, key=total.get, reverse=True):
    print(f"{k:40s} {count[k]:5d} launches {total[k]:10.1f} us  {total[k] / count[k]:8.2f} us each  {100 * total[k] / s:5.1f}%")
print(f"{'all':40s} {sum(count.values()):5d} launches {s:10.1f} us")
