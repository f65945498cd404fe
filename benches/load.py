#!/usr/bin/env python3
"""Load benchmark: echo-gateway against nginx, side by side, with wrk.

Starts, on loopback:
  - nginx (Debian's package) answering `return 200` with the same JSON body,
    access log off, keep-alive without a request limit;
  - echo-gateway (release build) with an exact endpoint, 10k templates and
    10 regexes, the journal as configured (on by default, `--no-journal`);
  - for pass-through: an upstream nginx, behind nginx `proxy_pass` (upstream
    keep-alive) and behind echo-gateway in sidecar mode.
Both servers get the same number of workers (nginx `worker_processes`,
echo-gateway `[server] threads`). Each round runs every scenario against
both, in alternating order; the table gives medians over the rounds.

Then: resident memory idle and with 100k endpoints, the compile time of
100k endpoints and the failed requests while they are swapped in under
load, and admin API creates per second at 1k and 100k existing endpoints
(embedded store).

Usage: python3 benches/load.py [--rounds 5] [--duration 10] [--workers 1]
See benches/README.md. Needs wrk and nginx (apt-get install wrk nginx-light).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BODY = '{"ok":true,"service":"bench"}'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"process {proc.args} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {port} did not open in {timeout} s")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def toml_str(s):
    return json.dumps(s)


# --- configs -----------------------------------------------------------------


def endpoint(verb, path_key, path, body=BODY, eid=None):
    lines = ["[[endpoints]]"]
    if eid:
        lines.append(f"id = {toml_str(eid)}")
    lines += [
        f"verb = {toml_str(verb)}",
        f"{path_key} = {toml_str(path)}",
        "[endpoints.response]",
        "code = 200",
        'headers = { "Content-Type" = "application/json" }',
        f"body = {toml_str(body)}",
        "",
    ]
    return "\n".join(lines)


def echo_server(port, workers, journal, admin_port=None):
    out = [
        "[server]",
        f'listen = ["127.0.0.1:{port}"]',
        f"threads = {workers}",
        "keepalive_timeout_secs = 60",
        "shutdown_grace_secs = 0",
        "",
        "[admin]",
    ]
    if admin_port:
        # The creates section measures the store, not the admin rate limit.
        out += [f'listen = "127.0.0.1:{admin_port}"', "rate_per_client = 0"]
    else:
        out.append("enabled = false")
    out += ["", "[journal]", f"enabled = {'true' if journal else 'false'}", ""]
    return "\n".join(out)


def echo_bench_config(port, workers, journal):
    parts = [echo_server(port, workers, journal)]
    parts.append(endpoint("GET", "path", "/bench/exact", eid="exact"))
    for i in range(10_000):
        parts.append(endpoint("GET", "path", f"/bench/t{i}/items/{{id}}"))
    for i in range(10):
        parts.append(endpoint("GET", "path_regex", f"/bench/re{i}/[0-9]+/(a|b)"))
    return "\n".join(parts)


def echo_sidecar_config(port, workers, journal, upstream_port):
    return "\n".join(
        [
            echo_server(port, workers, journal),
            "[upstreams.app]",
            f'url = "http://127.0.0.1:{upstream_port}"',
            "",
            "[fallback]",
            'upstream = "app"',
            "",
        ]
    )


def echo_table_config(port, n, admin_port=None):
    parts = [echo_server(port, 1, True, admin_port)]
    for i in range(n):
        parts.append(endpoint("GET", "path", f"/t/{i}/items", eid=f"e{i}"))
    return "\n".join(parts)


def nginx_conf(tmp, name, workers, servers):
    """An nginx config of `workers` workers serving `servers` (the body of
    its `http` block), with its files under `tmp` named after `name`."""
    return f"""
daemon off;
master_process on;
worker_processes {workers};
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 60s;
    keepalive_requests 100000000;
    client_body_temp_path {tmp}/{name}-body;
    proxy_temp_path {tmp}/{name}-proxy;
    fastcgi_temp_path {tmp}/{name}-fastcgi;
    uwsgi_temp_path {tmp}/{name}-uwsgi;
    scgi_temp_path {tmp}/{name}-scgi;
    default_type application/json;
{servers}
}}
"""


def nginx_config(tmp, workers, port, proxy_port, upstream_port):
    return nginx_conf(
        tmp,
        "nginx",
        workers,
        f"""
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 404 '{BODY}'; }}
        location = /bench/exact {{ return 200 '{BODY}'; }}
        location /bench/ {{ return 200 '{BODY}'; }}
    }}
    upstream app {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{proxy_port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}""",
    )


def nginx_upstream_config(tmp, port):
    return nginx_conf(
        tmp,
        "upstream",
        1,
        f"""
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 '{BODY}'; }}
    }}""",
    )


# --- wrk ---------------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_latency(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def wrk_counts(out):
    """Requests, non-2xx/3xx responses and socket errors in wrk's output."""
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return (
        int(re.search(r"(\d+) requests in", out).group(1)),
        int(bad.group(1)) if bad else 0,
        sum(int(x) for x in errors.groups()) if errors else 0,
    )


def wrk(url, args, expect_status):
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--latency",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    requests, non2xx, errors = wrk_counts(out)
    if expect_status == 200 and non2xx:
        raise SystemExit(f"{url}: {non2xx} responses were not 2xx/3xx:\n{out}")
    if expect_status == 404 and non2xx != requests:
        raise SystemExit(f"{url}: expected only 404s:\n{out}")
    return {
        "rps": rps,
        "p50": parse_latency(lat.get("50", "nan")),
        "p99": parse_latency(lat.get("99", "nan")),
        "errors": errors,
        "non2xx": non2xx,
        "requests": requests,
    }


def check_body(port, path, want_status):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    if r.status != want_status or (want_status == 200 and body != BODY):
        raise SystemExit(f"GET {path} on {port}: {r.status} {body!r}, expected {want_status}")


# --- processes ---------------------------------------------------------------


class Procs:
    def __init__(self):
        self.list = []

    def start(self, cmd, log, env=None):
        f = open(log, "w")
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.list.append(p)
        return p

    def stop(self, p):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def stop_all(self):
        for p in self.list:
            self.stop(p)


def echo_cmd(binary, config, data_dir, store="memory"):
    return [binary, "serve", "--config", config, "--store", store, "--data", data_dir]


def echo_env():
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    return env


def prepare(args):
    """Checks for wrk and nginx; the binary to run (`--binary`, else a release build)."""
    for tool in ("wrk", args.nginx):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install wrk nginx-light")
    if args.binary:
        return args.binary
    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    return f"{ROOT}/target/release/echo-gateway"


def clean_up(procs, tmp):
    """Stops every process started and removes `tmp` (kept with KEEP_TMP=1)."""
    procs.stop_all()
    if os.environ.get("KEEP_TMP"):
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


# --- sections ----------------------------------------------------------------


def throughput(args, binary, tmp, procs):
    ports = {k: free_port() for k in ("nginx", "nginx_proxy", "upstream", "echo", "sidecar")}
    with open(f"{tmp}/nginx.conf", "w") as f:
        f.write(nginx_config(tmp, args.workers, ports["nginx"], ports["nginx_proxy"], ports["upstream"]))
    with open(f"{tmp}/upstream.conf", "w") as f:
        f.write(nginx_upstream_config(tmp, ports["upstream"]))
    os.makedirs(f"{tmp}/bench", exist_ok=True)
    os.makedirs(f"{tmp}/sidecar", exist_ok=True)
    with open(f"{tmp}/bench/echo.toml", "w") as f:
        f.write(echo_bench_config(ports["echo"], args.workers, not args.no_journal))
    with open(f"{tmp}/sidecar/echo.toml", "w") as f:
        f.write(echo_sidecar_config(ports["sidecar"], args.workers, not args.no_journal, ports["upstream"]))

    nginx = args.nginx
    up = procs.start([nginx, "-c", f"{tmp}/upstream.conf", "-p", tmp], f"{tmp}/upstream.log")
    ng = procs.start([nginx, "-c", f"{tmp}/nginx.conf", "-p", tmp], f"{tmp}/nginx.log")
    ec = procs.start(echo_cmd(binary, f"{tmp}/bench", f"{tmp}/data-bench"), f"{tmp}/echo.log", echo_env())
    sc = procs.start(echo_cmd(binary, f"{tmp}/sidecar", f"{tmp}/data-sidecar"), f"{tmp}/sidecar.log", echo_env())
    for port, p in [(ports["upstream"], up), (ports["nginx"], ng), (ports["echo"], ec), (ports["sidecar"], sc)]:
        wait_port(port, p)

    scenarios = [
        ("exact hit", "/bench/exact", "nginx", "echo", 200),
        ("template hit among 10k", "/bench/t4242/items/7", "nginx", "echo", 200),
        ("regex hit", "/bench/re7/12345/b", "nginx", "echo", 200),
        ("404 miss", "/nothing/here", "nginx", "echo", 404),
        ("pass-through", "/api/orders/1", "nginx_proxy", "sidecar", 200),
    ]
    if args.scenarios:
        keep = [k.strip() for k in args.scenarios.split(",")]
        scenarios = [s for s in scenarios if any(k in s[0] for k in keep)]
    for _, path, ref, ours, status in scenarios:
        check_body(ports[ref], path, status)
        check_body(ports[ours], path, status)

    results = {name: {"nginx": [], "echo": []} for name, *_ in scenarios}
    for r in range(args.rounds):
        for name, path, ref, ours, status in scenarios:
            order = [("nginx", ref), ("echo", ours)]
            if r % 2:
                order.reverse()
            for who, key in order:
                res = wrk(f"http://127.0.0.1:{ports[key]}{path}", args, status)
                results[name][who].append(res)
                print(
                    f"  round {r + 1} {name:<24} {who:<5} {res['rps']:>10.0f} req/s"
                    f"  p50 {res['p50']:.3f} ms  p99 {res['p99']:.3f} ms",
                    flush=True,
                )
    echo_rss = rss_kib(ec.pid)
    for p in (ec, sc, ng, up):
        procs.stop(p)
    return scenarios, results, echo_rss


def med(rows, key):
    return statistics.median(x[key] for x in rows)


def report(scenarios, results, args):
    print()
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {args.rounds} rounds, "
        f"{args.workers} worker(s) each; medians"
    )
    print()
    print("| Scenario | nginx req/s | echo req/s | ratio | nginx p50 / p99 | echo p50 / p99 | p99 ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, *_ in scenarios:
        n, e = results[name]["nginx"], results[name]["echo"]
        ratios = [b["rps"] / a["rps"] for a, b in zip(n, e)]
        p99s = [b["p99"] / a["p99"] for a, b in zip(n, e)]
        print(
            f"| {name} | {med(n, 'rps'):,.0f} | {med(e, 'rps'):,.0f} | {statistics.median(ratios):.2f} | "
            f"{med(n, 'p50'):.3f} / {med(n, 'p99'):.3f} ms | {med(e, 'p50'):.3f} / {med(e, 'p99'):.3f} ms | "
            f"{statistics.median(p99s):.2f} |"
        )


def memory_and_swap(args, binary, tmp, procs):
    """Resident memory idle and with 100k endpoints; compile time; a swap under load."""
    idle_dir = f"{tmp}/idle"
    os.makedirs(idle_dir, exist_ok=True)
    port = free_port()
    with open(f"{idle_dir}/echo.toml", "w") as f:
        f.write(echo_server(port, 1, True) + endpoint("GET", "path", "/bench/exact"))
    p = procs.start(echo_cmd(binary, idle_dir, f"{tmp}/data-idle", store="embedded"), f"{tmp}/idle.log", echo_env())
    wait_port(port, p)
    check_body(port, "/bench/exact", 200)
    time.sleep(2)
    idle = rss_kib(p.pid)
    procs.stop(p)

    big_dir = f"{tmp}/big"
    os.makedirs(big_dir, exist_ok=True)
    port = free_port()
    with open(f"{big_dir}/echo.toml", "w") as f:
        f.write(echo_table_config(port, 100_000))
    env = echo_env()
    env["RUST_LOG"] = "info"
    log = f"{tmp}/big.log"
    p = procs.start(echo_cmd(binary, big_dir, f"{tmp}/data-big", store="embedded") + ["--log-format", "json"], log, env)
    wait_port(port, p, timeout=300)
    check_body(port, "/t/99999/items", 200)
    time.sleep(2)
    loaded = rss_kib(p.pid)

    # Five edits of the 100k file (one body changes each time, so that the
    # whole table is compiled again) while wrk loads the gateway.
    compile_ms = []
    wrk_proc = subprocess.Popen(
        ["wrk", f"-t{args.threads}", f"-c{args.connections}", "-d15s", f"http://127.0.0.1:{port}/t/777/items"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)
    text = open(f"{big_dir}/echo.toml").read()
    for k in range(5):
        seen = len(reload_lines(log))
        edited = text.replace(toml_str(BODY), toml_str(BODY.replace("bench", f"bench-{k}")), 1)
        with open(f"{big_dir}/.echo.toml.tmp", "w") as f:
            f.write(edited)
        os.rename(f"{big_dir}/.echo.toml.tmp", f"{big_dir}/echo.toml")
        deadline = time.monotonic() + 30
        while len(reload_lines(log)) == seen and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = reload_lines(log)
        if len(lines) > seen:
            compile_ms.append(float(lines[-1].get("fields", lines[-1]).get("compile_ms", "nan")))
        time.sleep(0.5)
    out, _ = wrk_proc.communicate()
    after = rss_kib(p.pid)
    procs.stop(p)
    requests, non2xx, errors = wrk_counts(out)
    failed = non2xx + errors
    return idle, loaded, after, compile_ms, requests, failed


def reload_lines(log):
    out = []
    with open(log) as f:
        for line in f:
            if "config reloaded" in line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def creates(args, binary, tmp, procs, existing, count):
    """Creates per second through the admin API with `existing` runtime endpoints."""
    d = f"{tmp}/creates-{existing}"
    os.makedirs(d, exist_ok=True)
    port, admin = free_port(), free_port()
    with open(f"{d}/echo.toml", "w") as f:
        f.write(echo_server(port, 1, True, admin))
    p = procs.start(echo_cmd(binary, d, f"{d}/data", store="embedded"), f"{d}/echo.log", echo_env())
    wait_port(admin, p)
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=60)

    def post(i):
        body = json.dumps(
            {
                "data": {
                    "type": "endpoints",
                    "attributes": {
                        "verb": "GET",
                        "path": f"/c/{i}/items",
                        "response": {"code": 200, "body": BODY},
                    },
                }
            }
        )
        conn.request("POST", "/endpoints", body, {"Content-Type": "application/vnd.api+json"})
        r = conn.getresponse()
        r.read()
        if r.status != 201:
            raise SystemExit(f"POST /endpoints: {r.status}")

    t0 = time.monotonic()
    for i in range(existing):
        post(i)
    fill = time.monotonic() - t0
    t0 = time.monotonic()
    for i in range(existing, existing + count):
        post(i)
    rate = count / (time.monotonic() - t0)
    procs.stop(p)
    return rate, fill


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=64, help="wrk connections")
    ap.add_argument("--workers", type=int, default=1, help="nginx workers and echo-gateway threads")
    ap.add_argument("--no-journal", action="store_true", help="run echo-gateway with the journal off")
    ap.add_argument("--binary", help="echo-gateway binary (default: cargo build --release --locked)")
    ap.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    ap.add_argument(
        "--sections",
        default="throughput,memory,creates",
        help="comma-separated: throughput, memory, creates",
    )
    ap.add_argument("--scenarios", help="comma-separated parts of scenario names (default: all)")
    ap.add_argument("--creates-existing", default="1000,100000", help="existing endpoints for the creates section")
    args = ap.parse_args()

    binary = prepare(args)
    sections = set(args.sections.split(","))
    procs = Procs()
    tmp = tempfile.mkdtemp(prefix="echo-load-")
    try:
        if "throughput" in sections:
            scenarios, results, rss = throughput(args, binary, tmp, procs)
            report(scenarios, results, args)
            print(f"\nresident memory of the gateway after the runs (10k templates): {rss / 1024:.1f} MiB")
        if "memory" in sections:
            idle, loaded, after, compile_ms, requests, failed = memory_and_swap(args, binary, tmp, procs)
            print(f"\nresident memory idle (one endpoint, embedded store): {idle / 1024:.1f} MiB")
            print(f"resident memory with 100k endpoints: {loaded / 1024:.1f} MiB, after 5 reloads {after / 1024:.1f} MiB")
            ms = ", ".join(f"{x:.0f}" for x in compile_ms)
            print(f"compile of 100k endpoints on reload (ms): {ms}")
            print(f"requests during the reloads: {requests}, failed: {failed}")
        if "creates" in sections:
            for existing in (int(x) for x in args.creates_existing.split(",")):
                rate, fill = creates(args, binary, tmp, procs, existing, 500)
                print(f"\ncreates/s with {existing} existing runtime endpoints: {rate:.0f} (filling took {fill:.1f} s)")
    finally:
        clean_up(procs, tmp)


if __name__ == "__main__":
    sys.exit(main())
