#!/usr/bin/env python3
"""The peer a user would pick instead of esdetect for offline rule tests: Python `eql` (1.0.1).

Streams an NDJSON file of search hits (`esdetect simulate --stdout`) through Python eql's engine with the
queries of the given detection-rules TOML files, reading each hit as
`eql.Event(event.category, @timestamp in ms, _source)`, and prints how many events it read and how many
results each query produced. Used by scripts/bench.sh for side-by-side figures; not part of the tests.
"""
import datetime
import json
import re
import sys
import tomllib

import eql


def millis(ts):
    # ISO-8601 with up to 9 fractional digits and a Z: cut to microseconds for datetime.
    date, _, frac = ts.rstrip("Z").partition(".")
    parsed = datetime.datetime.fromisoformat(date).replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp() * 1000) + int((frac + "000")[:3])


# Python eql's engine knows the camelCase function names (and matches strings case-insensitively, so the
# `~` forms have no separate name); detection-rules queries write them in lower case.
FUNCTION_NAMES = {"endswith": "endsWith", "startswith": "startsWith", "cidrmatch": "cidrMatch",
                  "stringcontains": "stringContains", "indexof": "indexOf"}


def engine_syntax(query):
    for lower, camel in FUNCTION_NAMES.items():
        query = query.replace(lower + "~(", camel + "(").replace(lower + "(", camel + "(")
    # Its cidrMatch takes IPv4 blocks only: drop IPv6 ones (the same work per event, one block fewer).
    return re.sub(r',\s*"[0-9a-fA-F:]*:[0-9a-fA-F:/]*"', "", query)


def events(path):
    with open(path, "rb") as f:
        for line in f:
            hit = json.loads(line)
            source = hit.get("_source", hit)
            category = (source.get("event") or {}).get("category")
            if isinstance(category, list):
                category = category[0] if category else None
            yield eql.Event(category, millis(source["@timestamp"]), source)


def main():
    path, rule_files = sys.argv[1], sys.argv[2:]
    queries = []
    for rule_file in rule_files:
        with open(rule_file, "rb") as f:
            rule = tomllib.load(f)["rule"]
        if rule.get("language") == "eql":
            with eql.parser.elasticsearch_syntax, eql.parser.ignore_missing_functions:
                queries.append((rule["rule_id"], eql.parse_query(engine_syntax(rule["query"]))))
    counts = {rule_id: 0 for rule_id, _ in queries}
    engine = eql.PythonEngine({"flatten": True})
    for rule_id, query in queries:
        engine.add_query(query)

        def hook(results, rule_id=rule_id):
            counts[rule_id] += 1

        engine.add_output_hook(hook)
    n = 0

    def counted():
        nonlocal n
        for e in events(path):
            n += 1
            yield e

    engine.stream_events(counted())
    engine.finalize()
    print(json.dumps({"events": n, "results": counts}))


if __name__ == "__main__":
    main()
