#!/usr/bin/env python3
"""Turns scripts/bench.sh's interleaved runs into one table: per size and contender the median CPU time
(user + sys), events per CPU-second, peak RSS, and the median per-round ratio to esdetect. With `--wall` (the
cluster mode, where much of the work happens in Elasticsearch) also the median wall time and its per-round ratio."""
import collections
import os
import statistics
import sys

args = [a for a in sys.argv[1:] if a != "--wall"]
wall_too = "--wall" in sys.argv[1:]
runs = collections.defaultdict(list)  # (size, contender) -> [(cpu, rss_kb, lines, wall)]
order = []
for line in open(args[0]):
    if line.startswith("Command exited"):  # /usr/bin/time's note on a non-zero exit (esdetect's 3)
        continue
    name, wall, user, sys_, rss = line.split()
    contender, size, lines = name.split("/")
    key = (int(size), contender)
    if key not in runs:
        order.append(key)
    runs[key].append((float(user) + float(sys_), int(rss), int(lines), float(wall)))

print(f"load average at the end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
print()
if wall_too:
    print("| events | contender | CPU s (median) | events / CPU-s | peak RSS | × esdetect CPU (per-round median) "
          "| wall s (median) | × esdetect wall (per-round median) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
else:
    print("| events | contender | CPU s (median) | events / CPU-s | peak RSS | × esdetect CPU (per-round median) |")
    print("|---:|---|---:|---:|---:|---:|")
for size, contender in order:
    rs = runs[(size, contender)]
    cpu = statistics.median(r[0] for r in rs)
    rss = max(r[1] for r in rs)
    lines = rs[0][2]
    base = runs.get((size, "esdetect")) or runs.get((size, "esdetect-2-rules"))
    ratio = wall_ratio = ""
    if base and contender not in ("esdetect", "esdetect-2-rules"):
        ratio = f"{statistics.median(a[0] / b[0] for a, b in zip(rs, base) if b[0] > 0):.2f}"
        wall_ratio = f"{statistics.median(a[3] / b[3] for a, b in zip(rs, base) if b[3] > 0):.2f}"
    rate = f"{lines / cpu:,.0f}" if cpu > 0 else "—"
    row = f"| {lines:,} | {contender} | {cpu:.2f} | {rate} | {rss / 1024:,.0f} MiB | {ratio} |"
    if wall_too:
        row += f" {statistics.median(r[3] for r in rs):.2f} | {wall_ratio} |"
    print(row)
