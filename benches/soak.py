#!/usr/bin/env python3
"""Soak: load and admin churn together for a set time, on the release binary.

Starts, on loopback, an upstream nginx (`return 200`) and echo-gateway
(embedded store, journal on, admin API on its own listener) with an exact
endpoint, 1 000 templates and a templated endpoint that passes through to
the upstream. Then, for `--minutes`:
  - wrk loads the exact hit, the templates and the pass-through in turn
    (a Lua script rotates the paths);
  - one client churns the admin API: create, read, update, call, delete,
    each answer checked, with a set of runtime endpoints kept around;
  - another asks for a path nothing answers and checks the Echo 404;
  - every `--interval` seconds: resident memory, open file descriptors,
    runtime endpoints and the error counts so far.

Prints the samples as a Markdown table and a verdict: memory and file
descriptors after the warm-up (the first quarter of the run) must stay
within `--tolerance` of their level at its end, and no request may fail.
Exit status 1 when the verdict fails.

Usage: python3 benches/soak.py [--minutes 10] [--interval 30] [--binary PATH]
Needs wrk and nginx (apt-get install wrk nginx-light). See benches/README.md.
"""

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (the load bench's process and config helpers)

TEMPLATES = 1000
KEPT = 200  # runtime endpoints kept between churn cycles

WRK_SCRIPT = """
local paths = {"/soak/exact", "/soak/t7/items/1", "/soak/t999/items/abc", "/up/a/b", "/soak/t123/items/9"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
"""


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def gateway_config(port, admin_port, upstream_port):
    parts = [load.echo_server(port, 1, True, admin_port)]
    parts.append(f'[upstreams.app]\nurl = "http://127.0.0.1:{upstream_port}"\n')
    parts.append(load.endpoint("GET", "path", "/soak/exact", eid="exact"))
    for i in range(TEMPLATES):
        parts.append(load.endpoint("GET", "path", f"/soak/t{i}/items/{{id}}"))
    parts.append(
        '[[endpoints]]\nid = "up"\nverb = "GET"\npath = "/up/{*rest}"\n'
        '[endpoints.response]\ncode = 200\nproxy = "app"\n'
    )
    return "\n".join(parts)


class Counts:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = 0
        self.errors = 0
        self.first_errors = []

    def ok(self):
        with self.lock:
            self.ops += 1

    def error(self, what):
        with self.lock:
            self.errors += 1
            if len(self.first_errors) < 10:
                self.first_errors.append(what)


def request(conn, method, path, body=None):
    headers = {"Content-Type": "application/vnd.api+json"} if body is not None else {}
    conn.request(method, path, body, headers)
    r = conn.getresponse()
    return r.status, r.read()


def churn(admin_port, port, stop, counts):
    """Create, read, update, call and delete runtime endpoints, checking each answer."""
    admin = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=30)
    mock = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    kept = []
    n = 0
    while not stop.is_set():
        n += 1
        path = f"/churn/{n}" if n % 4 else f"/churn/{n}/{{id}}"
        doc = {"data": {"type": "endpoints", "attributes": {
            "verb": "GET", "path": path, "response": {"code": 200, "body": f"churn {n}"}}}}
        try:
            status, body = request(admin, "POST", "/endpoints", json.dumps(doc))
            if status != 201:
                counts.error(f"create {path}: {status} {body[:200]!r}")
                continue
            eid = json.loads(body)["data"]["id"]
            counts.ok()
            call = path.replace("{id}", "x")
            status, body = request(mock, "GET", call)
            if status != 200 or body != f"churn {n}".encode():
                counts.error(f"call {call}: {status} {body[:200]!r}")
            else:
                counts.ok()
            status, body = request(admin, "GET", f"/endpoints/{eid}")
            if status != 200:
                counts.error(f"read {eid}: {status}")
            else:
                counts.ok()
            patch = {"data": {"type": "endpoints", "id": eid, "attributes": {
                "response": {"code": 200, "body": f"patched {n}"}}}}
            status, body = request(admin, "PATCH", f"/endpoints/{eid}", json.dumps(patch))
            if status != 200:
                counts.error(f"patch {eid}: {status} {body[:200]!r}")
            else:
                counts.ok()
            kept.append(eid)
            if len(kept) > KEPT:
                gone = kept.pop(0)
                status, _ = request(admin, "DELETE", f"/endpoints/{gone}")
                if status != 204:
                    counts.error(f"delete {gone}: {status}")
                else:
                    counts.ok()
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            counts.error(f"churn: {e!r}")
            admin = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=30)
            mock = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            time.sleep(0.1)


def misses(port, stop, counts):
    """A path nothing answers: the Echo 404, every time."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        try:
            status, body = request(conn, "GET", "/nothing/here")
            if status != 404 or b"not_found" not in body:
                counts.error(f"miss: {status} {body[:200]!r}")
            else:
                counts.ok()
        except (OSError, http.client.HTTPException) as e:
            counts.error(f"miss: {e!r}")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        time.sleep(0.01)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--interval", type=float, default=30, help="seconds between samples")
    ap.add_argument("--connections", type=int, default=32, help="wrk connections")
    ap.add_argument("--tolerance", type=float, default=0.10, help="allowed growth after warm-up")
    ap.add_argument("--binary", help="echo-gateway binary (default: cargo build --release --locked)")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    args = ap.parse_args()

    binary = load.prepare(args)

    procs = load.Procs()
    tmp = tempfile.mkdtemp(prefix="echo-soak-")
    stop = threading.Event()
    try:
        upstream_port = load.free_port()
        with open(f"{tmp}/upstream.conf", "w") as f:
            f.write(load.nginx_upstream_config(tmp, upstream_port))
        up = procs.start([args.nginx, "-c", f"{tmp}/upstream.conf", "-p", tmp], f"{tmp}/upstream.log")
        load.wait_port(upstream_port, up)

        port, admin_port = load.free_port(), load.free_port()
        cfg = f"{tmp}/config"
        os.makedirs(cfg)
        with open(f"{cfg}/echo.toml", "w") as f:
            f.write(gateway_config(port, admin_port, upstream_port))
        gw = procs.start(load.echo_cmd(binary, cfg, f"{tmp}/data.redb", store="embedded"), f"{tmp}/echo.log", load.echo_env())
        load.wait_port(admin_port, gw)
        load.wait_port(port, gw)

        seconds = int(args.minutes * 60)
        with open(f"{tmp}/rotate.lua", "w") as f:
            f.write(WRK_SCRIPT)
        wrk = subprocess.Popen(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds}s", "-s", f"{tmp}/rotate.lua",
             f"http://127.0.0.1:{port}"],
            stdout=subprocess.PIPE, text=True,
        )
        counts = Counts()
        threads = [
            threading.Thread(target=churn, args=(admin_port, port, stop, counts), daemon=True),
            threading.Thread(target=misses, args=(port, stop, counts), daemon=True),
        ]
        for t in threads:
            t.start()

        samples = []
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            time.sleep(min(args.interval, max(0.0, seconds - (time.monotonic() - start))))
            if gw.poll() is not None:
                raise SystemExit(f"echo-gateway exited with {gw.returncode}; see {tmp}/echo.log")
            with counts.lock:
                ops, errors = counts.ops, counts.errors
            samples.append((time.monotonic() - start, load.rss_kib(gw.pid), fd_count(gw.pid), ops, errors))
            t, rss, fds, ops, errors = samples[-1]
            print(f"  {t:6.0f} s  rss {rss / 1024:7.1f} MiB  fds {fds:4d}  checked {ops:7d}  errors {errors}", flush=True)
        stop.set()
        out, _ = wrk.communicate()
        for t in threads:
            t.join(30)
        requests, non2xx, wrk_errors = load.wrk_counts(out)

        print(f"\nsoak: {args.minutes:g} min, wrk -t1 -c{args.connections} over the exact hit, templates and pass-through,")
        print("admin churn (create, call, read, patch, delete) and Echo 404s alongside\n")
        print("| time (s) | resident memory (MiB) | open fds | checked answers | errors |")
        print("|---:|---:|---:|---:|---:|")
        for t, rss, fds, ops, errors in samples:
            print(f"| {t:.0f} | {rss / 1024:.1f} | {fds} | {ops} | {errors} |")
        print(f"\nwrk: {requests} requests, {non2xx} not 2xx/3xx, {wrk_errors} socket errors")
        print(f"checked answers: {counts.ops}, errors: {counts.errors}")
        for e in counts.first_errors:
            print(f"  {e}")

        warm = [s for s in samples if s[0] >= seconds / 4]
        failed = []
        if warm:
            base_rss, base_fds = warm[0][1], warm[0][2]
            top_rss, top_fds = max(s[1] for s in warm), max(s[2] for s in warm)
            print(f"after warm-up: memory {base_rss / 1024:.1f} -> at most {top_rss / 1024:.1f} MiB, "
                  f"fds {base_fds} -> at most {top_fds}")
            if top_rss > base_rss * (1 + args.tolerance):
                failed.append("memory grew")
            if top_fds > base_fds * (1 + args.tolerance) + 2:
                failed.append("file descriptors grew")
        if counts.errors or non2xx or wrk_errors:
            failed.append("requests failed")
        print("verdict: " + ("FAIL: " + ", ".join(failed) if failed else "pass"))
        return 1 if failed else 0
    finally:
        stop.set()
        load.clean_up(procs, tmp)


if __name__ == "__main__":
    sys.exit(main())
