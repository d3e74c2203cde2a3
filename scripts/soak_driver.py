#!/usr/bin/env python3
"""Soak test of llm-server (run by scripts/soak.sh; standard library only).

Starts llm-server with the flight recorder on, keeps it saturated for the
given minutes with a mix of streamed and non-streamed requests on every
inference endpoint plus random cancellations, captures the CPU profile, the
heap profile and the flight recorder every minute, samples the process
(VmRSS, open fds, threads, /metrics) every 10 s, then stops the server with
SIGTERM. Writes OUT/soak.csv and OUT/soak.md; exits 1 if a criterion fails.
"""
import argparse
import gzip
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time

# ---- criteria (stated in the report) -------------------------------------------
RSS_GROWTH_FRAC = 0.02            # RSS at the end vs. at warm-up end: at most +2 % ...
RSS_GROWTH_FLOOR_KB = 4096        # ... or +4 MiB, whichever is larger
RSS_SLOPE_MAX_KB_MIN = 64.0       # least-squares slope of RSS after warm-up
FD_SLACK = 2                      # idle fds after the load <= idle fds before it + this
THREAD_SLACK = 2                  # the same for threads
OK_STATUSES = {200, 503}

WORDS = ("once upon a time there was a little girl named Lily she liked to play in the park with her "
         "dog Max one day they found a big red ball under a tree and the sun was warm so they ran and "
         "laughed until mom called them home for dinner").split()


def now():
    return time.monotonic()


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_kind = {}          # kind -> {status or outcome: n}
        self.completed = 0         # well-formed complete responses (200)
        self.cancelled = 0         # requests we abandoned on purpose
        self.n503 = 0
        self.bad_status = 0        # anything but 200/503
        self.malformed = 0         # a 200 whose body or stream is not well-formed
        self.transport = 0         # connection failures on requests we did not cancel
        self.examples = []         # first few failures, for the report

    def add(self, kind, outcome, failure=None):
        with self.lock:
            d = self.by_kind.setdefault(kind, {})
            d[outcome] = d.get(outcome, 0) + 1
            if failure and len(self.examples) < 10:
                self.examples.append(f"{kind}: {failure}"[:300])


def prompt_text(rng):
    n = rng.choice((1, 2, 4, 8, 16, 32, 64, 120))
    n = rng.randint(max(1, n // 2), n)
    start = rng.randrange(len(WORDS))
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(n)).capitalize()


def make_request(rng):
    """(kind, method, path, body or None, streamed)."""
    kind = rng.choice(("completions", "completions-stream", "chat", "chat-stream", "infer", "infer-stream",
                       "infer-get"))
    mt = rng.choice((1, 4, 8, 16, 32, 64, 128))
    mt = rng.randint(1, mt)
    p = prompt_text(rng)
    samp = {"temperature": rng.choice((0, 0.8)), "seed": rng.randrange(1 << 30)}
    if kind.startswith("completions"):
        body = {"prompt": p, "max_tokens": mt, "stream": kind.endswith("stream"), **samp}
        return kind, "POST", "/v1/completions", body, body["stream"]
    if kind.startswith("chat"):
        body = {"messages": [{"role": "user", "content": p}], "max_tokens": mt, "stream": kind.endswith("stream"),
                **samp}
        return kind, "POST", "/v1/chat/completions", body, body["stream"]
    if kind == "infer-get":
        from urllib.parse import urlencode
        return kind, "GET", "/infer?" + urlencode({"prompt": p, "max_tokens": mt}), None, False
    body = {"prompt": p, "max_tokens": mt, "stream": kind.endswith("stream"), **samp}
    return kind, "POST", "/infer", body, body["stream"]


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_json(kind, j, max_tokens):
    """None if the non-streamed answer has the expected shape, else why not."""
    if not isinstance(j, dict):
        return "not an object"
    if kind.startswith("infer"):
        need = ("id", "text", "tokens", "finish_reason", "prompt_tokens", "generated_tokens", "timings")
        if any(k not in j for k in need):
            return "missing fields: " + ",".join(k for k in need if k not in j)
        if not isinstance(j["text"], str) or not isinstance(j["tokens"], list):
            return "wrong types"
        if j["generated_tokens"] != len(j["tokens"]) or (max_tokens and j["generated_tokens"] > max_tokens):
            return f"generated_tokens {j['generated_tokens']} vs {len(j['tokens'])} tokens, max {max_tokens}"
        if j["finish_reason"] not in ("stop", "length"):
            return "finish_reason " + repr(j["finish_reason"])
        return None
    obj = "text_completion" if kind.startswith("completions") else "chat.completion"
    if j.get("object") != obj:
        return f"object {j.get('object')!r}"
    ch = j.get("choices")
    if not isinstance(ch, list) or len(ch) != 1 or not isinstance(ch[0], dict):
        return "choices"
    c = ch[0]
    if obj == "text_completion":
        if not isinstance(c.get("text"), str):
            return "choices[0].text"
    else:
        m = c.get("message")
        if not isinstance(m, dict) or m.get("role") != "assistant" or not isinstance(m.get("content"), str):
            return "choices[0].message"
    if c.get("finish_reason") not in ("stop", "length"):
        return "finish_reason " + repr(c.get("finish_reason"))
    u = j.get("usage")
    if not isinstance(u, dict) or not all(is_int(u.get(k)) for k in ("prompt_tokens", "completion_tokens",
                                                                         "total_tokens")):
        return "usage"
    if u["completion_tokens"] > max_tokens or u["total_tokens"] != u["prompt_tokens"] + u["completion_tokens"]:
        return f"usage {u} with max_tokens {max_tokens}"
    if not isinstance(j.get("timings"), dict):
        return "timings"
    return None


def check_event(kind, ev, i):
    """Checks one streamed JSON event (not [DONE]); returns (final?, error)."""
    if not isinstance(ev, dict):
        return False, "event not an object"
    if "error" in ev:
        return False, "error event: " + json.dumps(ev)[:200]
    if kind.startswith("infer"):
        if ev.get("done") is True:
            if ev.get("finish_reason") not in ("stop", "length") or not is_int(ev.get("generated_tokens")):
                return True, "bad final event"
            return True, None
        if not (is_int(ev.get("index")) and is_int(ev.get("token")) and isinstance(ev.get("text"), str)):
            return False, "bad token event"
        return False, None
    obj = "text_completion" if kind.startswith("completions") else "chat.completion.chunk"
    if ev.get("object") != obj:
        return False, f"object {ev.get('object')!r}"
    ch = ev.get("choices")
    if not isinstance(ch, list) or len(ch) != 1 or not isinstance(ch[0], dict):
        return False, "choices"
    c = ch[0]
    if obj == "text_completion":
        if not isinstance(c.get("text"), str):
            return False, "choices[0].text"
    else:
        d = c.get("delta")
        if not isinstance(d, dict) or ("content" in d and not isinstance(d["content"], str)):
            return False, "choices[0].delta"
        if i == 0 and d.get("role") != "assistant":
            return False, "first delta without the role"
    fin = c.get("finish_reason")
    if fin is None:
        return False, None
    if fin not in ("stop", "length"):
        return True, "finish_reason " + repr(fin)
    u = ev.get("usage")
    if not isinstance(u, dict) or not is_int(u.get("completion_tokens")):
        return True, "final event without usage"
    return True, None


def read_sse(resp, kind, cancel_after):
    """Reads an SSE body. Returns (outcome, error): outcome 'ok', 'cancelled' or 'malformed'."""
    buf = b""
    n = 0
    final = False
    done = False
    while True:
        chunk = resp.read1(65536)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            raw, buf = buf.split(b"\n\n", 1)
            lines = [l for l in raw.split(b"\n") if l]
            if not lines or not all(l.startswith(b"data: ") for l in lines) or len(lines) != 1:
                return "malformed", f"event framing {raw[:120]!r}"
            data = lines[0][6:]
            if done:
                return "malformed", "data after [DONE]"
            if data == b"[DONE]":
                if not final:
                    return "malformed", "[DONE] without a final event"
                done = True
                continue
            if final:
                return "malformed", "event after the final event"
            try:
                ev = json.loads(data)
            except ValueError:
                return "malformed", f"event not JSON {data[:120]!r}"
            fin, err = check_event(kind, ev, n)
            if err:
                return "malformed", err
            final = final or fin
            n += 1
            if cancel_after is not None and n >= cancel_after and not done:
                return "cancelled", None
    if buf.strip():
        return "malformed", f"trailing bytes {buf[:120]!r}"
    if not done:
        return "malformed", f"stream ended after {n} events without [DONE]"
    return "ok", None


def client(port, rng, tally, stop_at, cancel_p):
    while now() < stop_at:
        kind, method, path, body, streamed = make_request(rng)
        mt = body["max_tokens"] if body else int(re.search(r"max_tokens=(\d+)", path).group(1))
        r = rng.random()
        cancel = None
        if r < cancel_p:
            # Hang up: before reading anything, after k events of a stream, or after a delay.
            cancel = rng.choice(("before", "delay", "events" if streamed else "delay"))
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            data = json.dumps(body) if body is not None else None
            c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            if cancel == "before":
                time.sleep(rng.random() * 0.05)
                c.sock.shutdown(socket.SHUT_RDWR)
                c.close()
                tally.add(kind, "cancelled-before")
                with tally.lock:
                    tally.cancelled += 1
                continue
            if cancel == "delay":
                c.sock.settimeout(rng.uniform(0.05, 1.0))
            resp = c.getresponse()
            st = resp.status
            if st != 200:
                raw = resp.read()
                if st == 503:
                    with tally.lock:
                        tally.n503 += 1
                    tally.add(kind, "503")
                    time.sleep(rng.uniform(0.02, 0.2))
                else:
                    with tally.lock:
                        tally.bad_status += 1
                    tally.add(kind, str(st), f"status {st}: {raw[:200]!r}")
                continue
            if streamed:
                k = rng.randint(1, 8) if cancel == "events" else None
                outcome, err = read_sse(resp, kind, k)
            else:
                raw = resp.read()
                try:
                    err = check_json(kind, json.loads(raw), mt)
                except ValueError:
                    err = f"body not JSON: {raw[:200]!r}"
                outcome = "malformed" if err else "ok"
            if outcome == "cancelled":
                with tally.lock:
                    tally.cancelled += 1
                tally.add(kind, "cancelled-mid-stream")
            elif outcome == "malformed":
                with tally.lock:
                    tally.malformed += 1
                tally.add(kind, "malformed", err)
            else:
                with tally.lock:
                    tally.completed += 1
                tally.add(kind, "200")
        except socket.timeout:
            if cancel == "delay":
                with tally.lock:
                    tally.cancelled += 1
                tally.add(kind, "cancelled-waiting")
            else:
                with tally.lock:
                    tally.transport += 1
                tally.add(kind, "timeout", "timeout")
        except (OSError, http.client.HTTPException) as e:
            with tally.lock:
                tally.transport += 1
            tally.add(kind, "transport-error", repr(e))
        finally:
            c.close()


def get(port, path, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def proc_stats(pid):
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds, threads


def metrics_done(port):
    st, body = get(port, "/metrics", timeout=10)
    done = waiting = 0
    for line in body.decode().splitlines():
        m = re.match(r'llmscope_http_requests_total\{endpoint="([^"]*)",status="(\d+)"\} (\d+)', line)
        if m and not m.group(1).startswith(("/debug", "/metrics", "/health")):
            done += int(m.group(3))
        m = re.match(r"llmscope_num_requests_waiting (\S+)", line)
        if m:
            waiting = float(m.group(1))
    return done, waiting


def validate_capture(name, st, body):
    if st != 200:
        return f"{name}: status {st}"
    if not body:
        return f"{name}: empty"
    if name in ("profile", "heap"):
        if body[:2] != b"\x1f\x8b":
            return f"{name}: not gzip"
        try:
            raw = gzip.decompress(body)
        except (OSError, EOFError) as e:
            return f"{name}: bad gzip ({e})"
        if not raw:
            return f"{name}: empty profile.proto"
        return None
    try:
        j = json.loads(body)
    except ValueError as e:
        return f"{name}: not JSON ({e})"
    ev = j.get("traceEvents") if isinstance(j, dict) else j
    if not isinstance(ev, list) or not ev:
        return f"{name}: no trace events"
    return None


def slope(points):
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=None, help="minutes (default min(5, minutes/3))")
    ap.add_argument("--clients", type=int, default=24)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--max-queue", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cancel", type=float, default=0.15, help="fraction of requests cancelled")
    ap.add_argument("--sample-every", type=float, default=10)
    ap.add_argument("--capture-every", type=float, default=60)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    warm_min = a.warmup if a.warmup is not None else min(5.0, a.minutes / 3)
    os.makedirs(a.out, exist_ok=True)
    pdir = os.path.join(a.out, "profiles")
    os.makedirs(pdir, exist_ok=True)

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    args = [a.server, "-m", a.model, "--http-addr", f"127.0.0.1:{port}", "-t", str(a.threads),
            "--parallel", str(a.parallel), "--max-queue", str(a.max_queue), "--ctx", "512", "--enable-trace"]
    log = open(os.path.join(a.out, "server.log"), "w")
    srv = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = now() + 60
    while now() < deadline:
        try:
            if get(port, "/health", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        srv.kill()
        sys.exit("soak: the server did not become ready")
    print(f"soak: llm-server pid {srv.pid} on port {port}: {' '.join(os.path.basename(x) for x in args[:1])} "
          f"{' '.join(args[3:])}", flush=True)

    # Baseline at idle, after one request of each kind has paged in the weights.
    rng0 = random.Random(a.seed)
    for _ in range(7):
        kind, method, path, body, streamed = make_request(rng0)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request(method, path, body=json.dumps(body) if body else None)
        c.getresponse().read()
        c.close()
    # Fill every sequence slot's KV cache to the end of the context once, so
    # that pages first touched by a rare long request do not read as growth.
    def long_request(i):
        body = {"prompt": " ".join(WORDS[:60]), "max_tokens": 512, "temperature": 0.8, "seed": i}
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        c.request("POST", "/infer", body=json.dumps(body), headers={"Content-Type": "application/json"})
        c.getresponse().read()
        c.close()
    fill = [threading.Thread(target=long_request, args=(i,)) for i in range(a.parallel)]
    for t in fill:
        t.start()
    for t in fill:
        t.join()
    time.sleep(1)
    idle_start = proc_stats(srv.pid)
    print(f"soak: idle after filling the KV cache: rss {idle_start[0]} kB, fds {idle_start[1]}, "
          f"threads {idle_start[2]}", flush=True)

    tally = Tally()
    t0 = now()
    stop_at = t0 + a.minutes * 60
    clients = [threading.Thread(target=client, args=(port, random.Random(a.seed * 1000 + i), tally, stop_at, a.cancel),
                                daemon=True) for i in range(a.clients)]
    for t in clients:
        t.start()

    captures = {"profile": 0, "heap": 0, "flight": 0}
    capture_errors = []
    heap_files = []
    caplog = open(os.path.join(a.out, "captures.csv"), "w")
    caplog.write("time_s,capture,status,bytes,rss_before_kb,rss_after_kb\n")

    def capturer():
        k = 0
        next_t = t0 + 30
        while True:
            while now() < next_t:
                if now() >= stop_at - 15:
                    return
                time.sleep(0.5)
            next_t += a.capture_every
            k += 1
            for name, path, timeout in (("profile", "/debug/pprof/profile?seconds=10", 60),
                                        ("heap", "/debug/pprof/heap", 60),
                                        ("flight", "/debug/trace/flight", 120)):
                t_cap = now() - t0
                rss_before = proc_stats(srv.pid)[0]
                try:
                    st, body = get(port, path, timeout=timeout)
                except (OSError, http.client.HTTPException) as e:
                    st, body = 0, repr(e).encode()
                caplog.write(f"{t_cap:.1f},{name},{st},{len(body)},{rss_before},{proc_stats(srv.pid)[0]}\n")
                caplog.flush()
                err = validate_capture(name, st, body)
                if err:
                    capture_errors.append(f"capture {k} at {now() - t0:.0f} s: {err}")
                else:
                    captures[name] += 1
                    if name == "heap":
                        fn = os.path.join(pdir, f"heap-{k:03d}.pb.gz")
                        with open(fn, "wb") as f:
                            f.write(body)
                        heap_files.append(fn)

    cap = threading.Thread(target=capturer, daemon=True)
    cap.start()

    rows = []
    csvf = open(os.path.join(a.out, "soak.csv"), "w")
    csvf.write("time_s,rss_kb,fds,threads,completed,cancelled,n503,server_requests,waiting\n")
    next_s = t0
    while True:
        t = now()
        if t >= next_s:
            rss, fds, thr = proc_stats(srv.pid)
            try:
                done, waiting = metrics_done(port)
            except (OSError, http.client.HTTPException):
                done, waiting = -1, -1
            with tally.lock:
                row = (round(t - t0, 1), rss, fds, thr, tally.completed, tally.cancelled, tally.n503, done, waiting)
            rows.append(row)
            csvf.write(",".join(str(x) for x in row) + "\n")
            csvf.flush()
            if len(rows) % 6 == 1:
                print(f"soak: {row[0]:7.0f} s  rss {rss} kB  fds {fds}  threads {thr}  completed {row[4]}  "
                      f"cancelled {row[5]}  503 {row[6]}  waiting {waiting:g}", flush=True)
            next_s += a.sample_every
        if t >= stop_at or srv.poll() is not None:
            break
        time.sleep(min(0.5, max(0.0, next_s - now())))
    for th in clients:
        th.join(timeout=180)
    cap.join(timeout=180)
    elapsed = now() - t0
    time.sleep(3)   # let the server close the last connections and their threads
    server_alive = srv.poll() is None
    idle_end = proc_stats(srv.pid) if server_alive else (0, 0, 0)
    try:
        final_done, _ = metrics_done(port)
    except (OSError, http.client.HTTPException):
        final_done = -1
    srv.send_signal(signal.SIGTERM)
    try:
        rc = srv.wait(60)
    except subprocess.TimeoutExpired:
        srv.kill()
        rc = srv.wait()
        rc = f"none (killed after 60 s; {rc})"
    log.close()
    csvf.close()

    # ---- the verdicts -------------------------------------------------------
    warm_s = warm_min * 60
    after = [r for r in rows if r[0] >= warm_s]
    warm_row = after[0] if after else rows[-1]
    end_row = rows[-1]
    rss_max = max(r[1] for r in rows)
    rss_max_after = max(r[1] for r in after) if after else rss_max
    sl = slope([(r[0] / 60, r[1]) for r in after])
    growth = end_row[1] - warm_row[1]
    growth_lim = max(RSS_GROWTH_FRAC * warm_row[1], RSS_GROWTH_FLOOR_KB)
    fd_max = max(r[2] for r in rows)
    thr_max = max(r[3] for r in rows)
    verdicts = [
        ("statuses only 200/503", tally.bad_status == 0,
         f"{tally.bad_status} other statuses"),
        ("every completed response well-formed", tally.malformed == 0,
         f"{tally.malformed} malformed of {tally.completed + tally.malformed} completed"),
        ("no transport errors on requests not cancelled", tally.transport == 0,
         f"{tally.transport} connection errors or timeouts"),
        ("load reached saturation (some 503 from the full queue)", tally.n503 > 0, f"{tally.n503} × 503"),
        (f"RSS growth after warm-up < max(2 %, {RSS_GROWTH_FLOOR_KB // 1024} MiB)", growth < growth_lim,
         f"{growth:+d} kB (limit {growth_lim:.0f} kB)"),
        (f"RSS slope after warm-up < {RSS_SLOPE_MAX_KB_MIN:g} kB/min", sl < RSS_SLOPE_MAX_KB_MIN,
         f"{sl:+.1f} kB/min"),
        (f"idle fds after the load ≤ before + {FD_SLACK}", server_alive and idle_end[1] <= idle_start[1] + FD_SLACK,
         f"{idle_start[1]} → {idle_end[1]}"),
        (f"idle threads after the load ≤ before + {THREAD_SLACK}",
         server_alive and idle_end[2] <= idle_start[2] + THREAD_SLACK, f"{idle_start[2]} → {idle_end[2]}"),
        ("every capture valid (CPU profile and heap gzip'd, flight recorder JSON with events)",
         not capture_errors and min(captures.values()) > 0,
         f"{captures['profile']} CPU, {captures['heap']} heap, {captures['flight']} flight; "
         f"{len(capture_errors)} failed"),
        ("server alive throughout, exits 0 on SIGTERM", server_alive and rc == 0, f"exit status {rc}"),
    ]
    ok = all(v[1] for v in verdicts)

    kinds = sorted(tally.by_kind)
    outcomes = ["200", "503", "cancelled-before", "cancelled-waiting", "cancelled-mid-stream", "malformed"]
    extra = sorted({o for d in tally.by_kind.values() for o in d} - set(outcomes))
    outcomes += extra
    md = []
    md.append("# Soak run\n")
    md.append(f"`scripts/soak.sh --minutes {a.minutes:g}` — llm-server `{' '.join(args[3:5])} … "
              f"{' '.join(args[5:])}` on `{os.path.basename(a.model)}`; {a.clients} clients "
              f"(more than `--parallel {a.parallel}` + `--max-queue {a.max_queue}`), "
              f"{a.cancel:.0%} of requests cancelled; every {a.capture_every:g} s a 10 s CPU profile, a heap "
              f"profile and the flight recorder; process sampled every {a.sample_every:g} s.\n")
    md.append(f"- duration: {elapsed / 60:.1f} min of load (warm-up: first {warm_min:g} min)")
    total = sum(sum(d.values()) for d in tally.by_kind.values())
    md.append(f"- requests: {total} sent; {tally.completed} completed (200, well-formed), {tally.n503} × 503, "
              f"{tally.cancelled} cancelled by the client, {tally.bad_status} other statuses, "
              f"{tally.malformed} malformed, {tally.transport} transport errors")
    md.append(f"- server's count of inference requests answered (`llmscope_http_requests_total`): {final_done}")
    md.append(f"- RSS: {warm_row[1] / 1024:.1f} MiB at warm-up end ({warm_row[0] / 60:.1f} min), "
              f"{end_row[1] / 1024:.1f} MiB at the end, max {rss_max / 1024:.1f} MiB "
              f"(max after warm-up {rss_max_after / 1024:.1f} MiB); slope after warm-up {sl:+.1f} kB/min "
              f"(least squares over {len(after)} samples)")
    md.append(f"- fds: {idle_start[1]} idle before the load, {idle_end[1]} idle after, max {fd_max} under load")
    md.append(f"- threads: {idle_start[2]} idle before, {idle_end[2]} idle after, max {thr_max} under load")
    md.append("")
    md.append("| request | " + " | ".join(outcomes) + " |")
    md.append("| --- | " + " | ".join("---:" for _ in outcomes) + " |")
    for k in kinds:
        md.append(f"| {k} | " + " | ".join(str(tally.by_kind[k].get(o, 0)) for o in outcomes) + " |")
    md.append("| **all** | " + " | ".join(str(sum(tally.by_kind[k].get(o, 0) for k in kinds)) for o in outcomes)
              + " |")
    md.append("")
    md.append("RSS, fds and threads every 5 minutes (and at the end):\n")
    md.append("| min | RSS MiB | fds | threads | completed | cancelled | 503 |")
    md.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    step = 300 if a.minutes >= 10 else 30
    shown = [r for r in rows if int(r[0] + 0.5) % step < a.sample_every - 0.01 or r is rows[-1]]
    for r in shown:
        md.append(f"| {r[0] / 60:.1f} | {r[1] / 1024:.1f} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} |")
    md.append("")
    md.append("| criterion | verdict | measured |")
    md.append("| --- | --- | --- |")
    for name, v, detail in verdicts:
        md.append(f"| {name} | {'PASS' if v else 'FAIL'} | {detail} |")
    md.append("")
    if tally.examples or capture_errors:
        md.append("First failures:\n")
        for e in tally.examples + capture_errors[:10]:
            md.append(f"- `{e}`")
        md.append("")
    md.append(f"Verdict: **{'PASS' if ok else 'FAIL'}**. Per-sample figures: `soak.csv`.")
    text = "\n".join(md) + "\n"
    with open(os.path.join(a.out, "soak.md"), "w") as f:
        f.write(text)
    print(text, flush=True)
    if len(heap_files) >= 2:
        print(f"soak: heap growth between the first and last capture: "
              f"go tool pprof -top -sample_index=inuse_space -base {heap_files[0]} {heap_files[-1]}", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
