#!/usr/bin/env python3
"""The peer of `esdetect run --once` in scripts/bench.sh's cluster mode: a bare point-in-time /
`search_after` fetch of each rule's window, written with the standard library only, as a user would.

It sends the requests `esdetect explain RULE_ID --now T` prints — open the PIT, the same search body (query
with the rule's pushdown filter, sort, size) for every page with `pit` and `search_after` added, close the
PIT — serialised compactly with the keys in the same order, so the bytes on the wire are the ones esdetect
sends. Each page is parsed with `json.loads` (a user needs `sort` and the PIT id to page on) and the hits
are dropped: no evaluation, no alerts. With `--read-only` the page is not parsed at all: the PIT id, the
number of hits and the last hit's `sort` are found by searching the bytes — the floor of any client.

By default the body is sent as printed, `_source` filter included (esdetect's default `[source] fetch =
"filtered"`: only the fields the rules read). With `--full-source` the `_source` filter is left out: every
hit carries its whole document (what `fetch = "full"` reads, and what a peer that wants the documents reads).
The `_mget` of the alerts' events that follows a filtered run is not sent: which events become alerts is
what esdetect computes.

    bare_fetch.py [--read-only] [--full-source] URL EXPLAIN_FILE…

Prints one line per rule to stderr: hits, pages and response bytes (compare with `run --once`'s
`fetched` and `bytes_fetched`).
"""
import http.client
import json
import re
import sys
import urllib.parse

PIT_ID = re.compile(rb'"pit_id":"([^"]*)"')


def parse_explain(path):
    """(pit path with query string, search body) from the text `esdetect explain` prints."""
    lines = open(path, encoding="utf-8").read().splitlines()
    pit = next((l for l in lines if l.startswith("1. POST /") and "/_pit?" in l), None)
    start = next((i for i, l in enumerate(lines) if l.startswith("2. POST /_search")), None)
    end = next((i for i, l in enumerate(lines) if l.startswith("3. DELETE /_pit")), None)
    if pit is None or start is None or end is None:
        sys.exit(f"bare_fetch: {path}: not the explain output of an EQL rule (no PIT open, search and close lines)")
    return pit[len("1. POST "):].strip(), json.loads("\n".join(lines[start + 1:end]))


def compact(value):
    # serde_json's compact form: no spaces, non-ASCII kept as UTF-8.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class Cluster:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http":
            sys.exit(f"bare_fetch: only plain http URLs are supported (got {url})")
        self.conn = http.client.HTTPConnection(u.hostname, u.port or 9200, timeout=120)

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if not 200 <= resp.status < 300:
            sys.exit(f"bare_fetch: {method} {path} answered {resp.status}: {data[:500]!r}")
        return data


def parsed_page(data):
    """(new PIT id or None, number of hits, last hit's sort values) of a search answer, parsed as JSON."""
    page = json.loads(data)
    hits = page["hits"]["hits"]
    return page.get("pit_id"), len(hits), hits[-1]["sort"] if hits else None


def scanned_page(data):
    """The same as parsed_page, found by searching the bytes (no JSON tree; every hit has `_index` and `sort`)."""
    m = PIT_ID.search(data, 0, 4096)
    n = data.count(b'"_index":')
    last = data.rfind(b'"sort":[')
    sort = json.loads(data[last + 7:data.index(b"]", last) + 1]) if n and last >= 0 else None
    return m.group(1).decode() if m else None, n, sort


def fetch(cluster, pit_path, base, read_page):
    pit_id = json.loads(cluster.request("POST", pit_path))["id"]
    size = base["size"]
    hits = pages = nbytes = 0
    search_after = None
    while True:
        body = dict(base)
        body["pit"] = {"id": pit_id, "keep_alive": "1m"}
        if search_after is not None:
            body["search_after"] = search_after
        data = cluster.request("POST", "/_search", compact(body))
        pages += 1
        nbytes += len(data)
        new_id, n, search_after = read_page(data)
        pit_id = new_id or pit_id
        hits += n
        if n < size:
            break
    cluster.request("DELETE", "/_pit", compact({"id": pit_id}))
    return hits, pages, nbytes


def main():
    flags = {"--read-only", "--full-source"}
    args = [a for a in sys.argv[1:] if a not in flags]
    read_page = scanned_page if "--read-only" in sys.argv[1:] else parsed_page
    full_source = "--full-source" in sys.argv[1:]
    if len(args) < 2:
        sys.exit(__doc__)
    cluster = Cluster(args[0])
    for path in args[1:]:
        pit_path, base = parse_explain(path)
        if full_source:
            base.pop("_source", None)
        hits, pages, nbytes = fetch(cluster, pit_path, base, read_page)
        print(f"bare_fetch: {path}: {hits} hits, {pages} pages, {nbytes} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
