#!/usr/bin/env python3
"""Turns scripts/bench.sh's interleaved runs into one table: per size and contender the median CPU time
(user + sys), events per CPU-second, peak RSS, and the median per-round ratio to esdetect."""
import collections
import os
import statistics
import sys

runs = collections.defaultdict(list)  # (size, contender) -> [(cpu, rss_kb)]
order = []
for line in open(sys.argv[1]):
    if line.startswith("Command exited"):  # /usr/bin/time's note on a non-zero exit (esdetect's 3)
        continue
    name, wall, user, sys_, rss = line.split()
    contender, size, lines = name.split("/")
    key = (int(size), contender)
    if key not in runs:
        order.append(key)
    runs[key].append((float(user) + float(sys_), int(rss), int(lines)))

print(f"load average at the end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
print()
print("| events | contender | CPU s (median) | events / CPU-s | peak RSS | × esdetect CPU (per-round median) |")
print("|---:|---|---:|---:|---:|---:|")
for size, contender in order:
    rs = runs[(size, contender)]
    cpu = statistics.median(r[0] for r in rs)
    rss = max(r[1] for r in rs)
    lines = rs[0][2]
    base = runs.get((size, "esdetect")) or runs.get((size, "esdetect-2-rules"))
    ratio = ""
    if base and contender not in ("esdetect", "esdetect-2-rules"):
        ratio = f"{statistics.median(a[0] / b[0] for a, b in zip(rs, base) if b[0] > 0):.2f}"
    rate = f"{lines / cpu:,.0f}" if cpu > 0 else "—"
    print(f"| {lines:,} | {contender} | {cpu:.2f} | {rate} | {rss / 1024:,.0f} MiB | {ratio} |")
