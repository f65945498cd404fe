#!/usr/bin/env python3
"""Seeds the fuzz corpora (fuzz/corpus/<target>/) from the example configs and
the tests: config files and the TOML in tests/*.rs, the JSON documents of
tests/admin_api.rs, the templates of both, the raw requests of the tests and
requests to the fuzz routes (src/fuzzing.rs), and the upstream responses of
tests/passthrough.rs. Each seed is named by the hash of its bytes, so running
it again adds only what is new.

    python3 fuzz/seed.py
"""

import glob
import hashlib
import json
import os
import re
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
MAX_SEED = 8 * 1024


def save(target, data):
    if isinstance(data, str):
        data = data.encode()
    if not data or len(data) > MAX_SEED:
        return
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def tests():
    return {p: read(p) for p in sorted(glob.glob("tests/*.rs", root_dir=ROOT))}


def raw_strings(src):
    """The r"..." and r#"..."# literals of Rust source."""
    return [m.group(2) for m in re.finditer(r'r(#*)"(.*?)"\1', src, re.S)]


ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n in ESCAPES:
                out.append(ESCAPES[n])
                i += 2
                continue
            if n == "x":
                out.append(chr(int(s[i + 2 : i + 4], 16)))
                i += 4
                continue
            if n == "\n":
                i += 2
                while i < len(s) and s[i] in " \t":
                    i += 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def plain_strings(src):
    """The "..." and b"..." literals of Rust source, unescaped."""
    return [unescape(m.group(1)) for m in re.finditer(r'(?<![r#\w])b?"((?:[^"\\]|\\.)*)"', src, re.S)]


def json_macros(src):
    """The json!(...) arguments that are JSON as written."""
    out = []
    for m in re.finditer(r"json!\(", src):
        depth, i = 0, m.end()
        start = i
        while i < len(src):
            c = src[i]
            if c == '"':
                i += 1
                while i < len(src) and src[i] != '"':
                    i += 2 if src[i] == "\\" else 1
            elif c in "([{":
                depth += 1
            elif c in ")]}":
                if depth == 0:
                    break
                depth -= 1
            i += 1
        text = src[start:i]
        try:
            out.append(json.loads(text))
        except ValueError:
            pass
    return out


def templates_of(doc):
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "template" and isinstance(v, str):
                yield v
            else:
                yield from templates_of(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from templates_of(v)


def main():
    srcs = tests()
    tomls = [read(p) for p in sorted(glob.glob("config/*.toml", root_dir=ROOT))]
    for src in srcs.values():
        for s in raw_strings(src) + plain_strings(src):
            if "[[endpoints]]" in s or re.search(r"^\[(server|admin|upstreams|store)", s, re.M):
                tomls.append(s)
    templates = [read(p) for p in sorted(glob.glob("config/fixtures/*.j2", root_dir=ROOT))]
    for t in tomls:
        save("config", t)
        try:
            templates.extend(templates_of(tomllib.loads(t)))
        except (tomllib.TOMLDecodeError, ValueError):
            pass

    docs = json_macros(srcs["tests/admin_api.rs"]) + json_macros(srcs["tests/matching.rs"])
    for s in raw_strings(srcs["tests/admin_api.rs"]):
        try:
            docs.append(json.loads(s))
        except ValueError:
            pass
    for d in docs:
        if isinstance(d, dict) and "data" not in d and ("verb" in d or "response" in d):
            d = {"data": {"type": "endpoints", "attributes": d}}
        if isinstance(d, dict) and "data" in d:
            save("admin_doc", json.dumps(d))
            templates.extend(templates_of(d))

    bodies = ['{"items": [{"sku": "TEA-01"}]}', '{"customer": {"id": "test"}, "items": []}', "plain"]
    for i, t in enumerate(templates):
        save("template", t + "\0" + bodies[i % len(bodies)])

    requests = []
    for src in srcs.values():
        for s in plain_strings(src):
            if re.match(r"[A-Z]+ \S+ HTTP/1\.[01]\r?\n", s):
                requests.append(s)
    requests += [
        "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n",
        "DELETE /any HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        "GET /items?status=open&page=12&debug HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /items?off=1 HTTP/1.0\r\n\r\n",
        "GET /account HTTP/1.1\r\nHost: a\r\nX-Tenant: acme\r\nAccept: application/json\r\n"
        "Authorization: Bearer t\r\nCookie: session=abcd1234; beta=1\r\n\r\n",
        'POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 48\r\n\r\n{"customer": {"blocked": true}, "items": [1, 2]}',
        'POST /orders HTTP/1.1\r\nHost: a\r\nContent-Length: 38\r\n\r\n{"customer": {"id": "test"}, "items": []}',
        'POST /orders HTTP/1.1\r\nHost: a\r\n\r\n{"items": [{"sku": "TEA-01", "n": 2}]}',
        'POST /orders HTTP/1.1\r\nHost: a\r\n\r\n{"sku": "ABC-12"}',
        "GET /orders/42 HTTP/1.1\r\nHost: a\r\nX-Tenant: acme\r\n\r\n",
        "PURGE /cache/a/b/c?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /v2/users/7 HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /upstream/x?q=1 HTTP/1.1\r\nHost: a\r\nKeep-Alive: 5\r\nTE: trailers\r\n\r\n",
        "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /fault HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST /files/a/b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET http://a/plain HTTP/1.1\r\nHost: a\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    ]
    for r in requests:
        save("request", r.encode("latin-1", "replace"))

    responses = []
    for s in plain_strings(srcs["tests/passthrough.rs"]):
        if re.match(r"HTTP/1\.[01] \d{3}", s):
            responses.append(s)
    responses += [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n1;ext=1\r\na\r\n0\r\nX-T: 1\r\n\r\n",
        "HTTP/1.0 204 No Content\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nConnection: keep-alive\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\nDate: x\r\n\r\nabc",
        "HTTP/1.1 500 Oops\nContent-Length: 1\n\nx",
    ]
    for i, r in enumerate(responses):
        # The first byte: HEAD, client close and read size (see src/fuzzing.rs).
        for flags in (0, 2, 1 + (7 << 2)) if i < 3 else (i % 256,):
            save("upstream_response", bytes([flags]) + r.encode("latin-1", "replace"))


if __name__ == "__main__":
    main()
