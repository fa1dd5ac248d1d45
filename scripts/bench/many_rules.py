#!/usr/bin/env python3
"""Generates N detection-rules TOML files for the many-rules benchmark: variants of the two seed rules
(other constants, so each variant does the full work of its seed) and simple event queries over the
fields Windows Security events carry. Usage: many_rules.py SEED_RULES_DIR OUT_DIR N"""
import pathlib
import re
import shutil
import sys
import uuid

seeds_dir, out_dir, n = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), int(sys.argv[3])
shutil.rmtree(out_dir, ignore_errors=True)
out_dir.mkdir(parents=True)
seeds = sorted(seeds_dir.glob("*.toml"))
texts = [p.read_text() for p in seeds]

SIMPLE = [
    'process where host.os.type == "windows" and process.name : "tool{i}.exe"',
    'authentication where event.code == "4625" and user.name == "svc{i}"',
    'any where event.action == "logged-in" and source.ip == "10.9.{a}.{b}"',
    'file where event.code == "5145" and winlog.event_data.ShareName : "\\\\\\\\*\\\\share{i}"',
    'iam where event.code in ("4720", "4722", "4738") and user.name : "admin{i}*"',
]


def with_identity(text, i, query=None):
    text = re.sub(r'(?m)^rule_id = ".*"$', f'rule_id = "{uuid.uuid5(uuid.NAMESPACE_URL, f"bench-{i}")}"', text)
    text = re.sub(r'(?m)^name = "(.*)"$', lambda m: f'name = "{m.group(1)} (bench variant {i})"', text)
    if query is not None:
        text = re.sub(r"(?ms)^query = '''.*?'''", lambda _: f"query = '''\n{query}\n'''", text)
    return text


for i in range(n):
    if i % 4 == 0:
        # A seed variant: same shape, other constants (the work per event stays the seed's).
        seed = texts[(i // 4) % len(texts)]
        seed = seed.replace('"%%1843"', f'"%%{1843 + i}"').replace('"$")', f'"{i}$")')
        out = with_identity(seed, i)
    else:
        q = SIMPLE[i % len(SIMPLE)].format(i=i, a=i // 256 % 256, b=i % 256)
        out = with_identity(texts[0], i, q)
    (out_dir / f"bench_{i:05}.toml").write_text(out)
print(f"{n} rules in {out_dir}", file=sys.stderr)
