#!/usr/bin/env python3
"""The lab: llm-server --inject NAME cases, each with the load that exposes it.

  diagnose_lab.py test            every case through `llmscope diagnose`: the top
                                  finding must name the injected cause; a clean run
                                  must have no high-confidence finding; the switch
                                  must not show anywhere collect looks.
  diagnose_lab.py bench OUTDIR    each case's load with and without the injection
                                  (latency P50/P99, throughput) into OUTDIR/NAME.md
                                  and OUTDIR/summary.md.

Prints `ok   name` / `FAIL name` and a closing `N passed, N failed` (test mode).
Python stdlib only; servers on free loopback ports; the stories260K model from
$MODELS (default ../shared/models)."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("LLMSCOPE_BIN", os.path.join(HERE, "..", "build", "bin"))
MODELS = os.environ.get("MODELS", os.path.join(HERE, "..", "..", "shared", "models"))
MODEL = os.path.join(MODELS, "stories260K.gguf")
# A model whose tokenizer (32000-token vocabulary) costs more than its forward
# pass (8 dimensions, one layer): there a slow tokenizer stage is what limits.
TOKENIZER_BOUND = os.path.join(MODELS, "llama-2-tiny-random.gguf")
SECONDS = float(os.environ.get("LAB_SECONDS", "3"))

SHORT = "Once upon a time"
LONG = ("Once upon a time, in a small village by the sea, there lived a little girl named Lily. "
        "She loved to walk on the beach and look for shells with her dog. ") * 3
# The single tokenizer's prompts: three times LONG, so that tokenizing them
# outweighs the forward pass of the tokenizer-bound model even where that
# pass is slow (sanitizer builds on a busy host ran it at 65% of the
# server's CPU and the tokenizer stage did not saturate with LONG).
LONGER = LONG * 3

# Each case: the finding key the report must rank first, and the load that
# exposes the injected cost against the plain work of the model (MODEL unless
# MODEL_FOR names another).
CASES = {
    "alloc-churn": ("alloc-churn", ["-c", "4", "--openai", "completions", "--max-tokens", "4", "-d", LONG]),
    "single-tokenizer": ("tokenizer-saturated", ["-c", "8", "--openai", "completions", "--max-tokens", "4", "-d", LONGER]),
    "yield-per-token": ("scheduler-thrash", ["-c", "16", "--openai", "completions", "--max-tokens", "16", "-d", SHORT]),
    "false-sharing": ("false-sharing", ["-c", "4", "--openai", "completions", "--max-tokens", "32", "-d", SHORT]),
    "global-lock": ("lock-convoy", ["-c", "16", "--openai", "completions", "--max-tokens", "2", "-d", SHORT]),
    "slow-clients": ("slow-clients", ["-c", "4", "--openai", "completions", "--max-tokens", "16", "-d", SHORT]),
    "heap-growth": ("heap-growth", ["-c", "8", "--openai", "completions", "--max-tokens", "2", "-d", SHORT]),
}
MODEL_FOR = {"alloc-churn": TOKENIZER_BOUND, "single-tokenizer": TOKENIZER_BOUND}
CLEAN_LOAD = ["-c", "4", "--openai", "completions", "--max-tokens", "32", "-d", SHORT]
# One request at a time: every decode step reads all the weights for one token.
BATCH1_LOAD = ["-c", "1", "--openai", "completions", "--max-tokens", "32", "-d", SHORT]
VOCAB = os.path.join(MODELS, "vocab", "ggml-vocab-llama-spm.gguf")
SLOW_CLIENTS = 200
BENCH_SLOW_CLIENTS = 300   # more than llm-server's default --max-conns (256)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Trickle:
    """Slow clients: connections that send a request header a line every
    `every` seconds and never finish it."""

    def __init__(self, port, n, every=1.0):
        self.port, self.n, self.every, self.stop = port, n, every, threading.Event()
        self.socks = []
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        deadline = time.time() + 30
        while len(self.socks) < self.n and time.time() < deadline and not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: lab\r\n")
                self.socks.append(s)
            except OSError:
                time.sleep(0.05)
        while not self.stop.wait(self.every):
            for s in self.socks:
                try:
                    s.send(b"X-Slow: 1\r\n")
                except OSError:
                    pass

    def close(self):
        self.stop.set()
        self.t.join(5)
        for s in self.socks:
            s.close()


def http_get(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data.decode("utf-8", "replace")


def start_server(port, inject, model=MODEL, extra=()):
    args = [os.path.join(BIN, "llm-server"), "-m", model, "--http-addr", f"127.0.0.1:{port}", "-t", "2", *extra]
    if inject:
        args += ["--inject", inject]
    log = tempfile.TemporaryFile()
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            if " 200 " in http_get(port, "/health").split("\r\n")[0]:
                return p
        except OSError:
            pass
        time.sleep(0.05)
    p.kill()
    raise RuntimeError("server did not start")


def stop_server(p):
    p.terminate()
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def diagnose(case, inject, load, outdir, model=None, server_flags=""):
    """Runs `llmscope diagnose --model` (it starts the server), with slow
    clients for that case. Returns (report markdown, capture dir)."""
    port = free_port()
    cap = os.path.join(outdir, case)
    rep = os.path.join(outdir, case + ".md")
    flags = "-t 2" + (f" --inject {inject}" if inject else "") + (f" {server_flags}" if server_flags else "")
    cmd = [os.path.join(BIN, "llmscope"), "diagnose", "--model", model or MODEL_FOR.get(case, MODEL), "--url", f"http://127.0.0.1:{port}",
           "--server-flags", flags, "--seconds", str(SECONDS), "-o", cap, "--format", "md", "--report", rep] + load
    tr = Trickle(port, SLOW_CLIENTS) if case == "slow-clients" else None
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    finally:
        if tr:
            tr.close()
    if r.returncode != 0:
        raise RuntimeError(f"diagnose exited {r.returncode}: {r.stderr.decode()[-2000:]}")
    return open(rep).read(), cap


def findings(md):
    """(key, confidence) of each ranked finding, in order."""
    out = []
    for m in re.finditer(r"^### \d+\. \[([a-z-]+)\].*?\n\nconfidence: (\w+)", md, re.M | re.S):
        out.append((m.group(1), m.group(2)))
    return out


passed = failed = 0


def result(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name}" + (f"\n  {detail}" if detail else ""), flush=True)


def test_switch_hidden():
    """The switch leaves no trace where collect looks: /health, /metrics (names),
    /v1/models and the manifest are the same with and without it."""
    views = {}
    for inj in (None, "global-lock"):
        port = free_port()
        p = start_server(port, inj)
        try:
            body = lambda s: s.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in s else s
            health = body(http_get(port, "/health"))
            models = json.loads(body(http_get(port, "/v1/models")))
            for m in models.get("data", []):
                m.pop("created", None)
            metrics = sorted(set(re.findall(r"^([a-z_:]+)", body(http_get(port, "/metrics")), re.M)))
            views[inj] = (health, models, metrics)
            text = health + json.dumps(models) + " ".join(metrics)
            leaked = [w for w in ("inject", "global-lock", "global_lock", "auth_check") if w in text]
        finally:
            stop_server(p)
        if leaked:
            result("switch_hidden", False, f"{leaked} visible with --inject {inj}")
            return
    result("switch_hidden", views[None] == views["global-lock"], "health/models/metrics differ with the switch on")


def test_bandwidth(out):
    """No injection: batch-1 decode of a model far larger than the caches (a
    stories110M-shaped Q8_0, 116 MB a step) is bound by memory bandwidth.
    memory-bandwidth must rank first, its metrics evidence putting the
    weights the steps streamed against the read bandwidth the server measured
    at start. Mapped (--mmap: 4 KiB pages, the row kernels) the same, the
    pages named in the evidence and the change, and no false sharing read
    into the kernels' inlined helpers."""
    big = os.path.join(out, "stories110M-q8_0.gguf")
    r = subprocess.run([os.path.join(BIN, "llmscope"), "gguf", "synth", "--shape", "stories110M", "--type", "q8_0",
                        "--vocab", VOCAB, "--seed", "3", "-o", big], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        result("lab_memory_bandwidth", False, f"synth exited {r.returncode}: {r.stderr.decode()[-500:]}")
        return
    for case, flags in (("memory-bandwidth", ""), ("memory-bandwidth-mmap", "--mmap")):
        try:
            md, cap = diagnose(case, None, BATCH1_LOAD, out, big, flags)
        except Exception as e:  # noqa: BLE001 - report and go on
            result(f"lab_{case}", False, str(e))
            continue
        f = findings(md)
        ev = re.search(r"metrics: the steps streamed [0-9.]+ GB/s of weights \(116\.4 MB a step.*?: [0-9]+% of the [0-9.]+ GB/s "
                       r"the compute threads read at start", md)
        ok = bool(f) and f[0][0] == "memory-bandwidth" and ev is not None and all(k != "false-sharing" for k, _ in f)
        if flags:
            ok = ok and "are in 2 MiB pages (llmscope_weights_huge_page_bytes)" in md and "give the weights 2 MiB pages" in md
        result(f"lab_{case}", ok, f"findings: {f}; evidence {'found' if ev else 'missing'}")
        if not ok and os.environ.get("LAB_KEEP"):
            shutil.copytree(cap, os.path.join(os.environ["LAB_KEEP"], case), dirs_exist_ok=True)


def run_tests():
    if not os.path.exists(MODEL):
        print(f"skip: no model at {MODEL}")
        print("0 passed, 0 failed")
        return 0
    out = tempfile.mkdtemp(prefix="llmscope-lab-")
    try:
        test_switch_hidden()
        md, cap = diagnose("clean", None, CLEAN_LOAD, out)
        f = findings(md)
        result("clean_no_high_confidence_finding", all(c != "high" for _, c in f), f"findings: {f}")
        man = open(os.path.join(cap, "manifest.json")).read()
        mj = json.loads(man)
        # Sanitizer builds compile the heap profiler out; the manifest must say so.
        heap_ok = all(k in mj["captured"] or "compiled out" in mj["unavailable"].get(k, "") for k in ("heap_start", "heap_end"))
        result("clean_manifest_complete", heap_ok and all(k in mj["captured"] for k in
                                              ("cpu", "trace", "threads", "block_start", "block_end", "mutex_start",
                                               "mutex_end", "counters", "metrics_before", "metrics_after", "load", "proc"))
               and "model" in mj["server"], json.dumps(mj["unavailable"]))
        html = os.path.join(out, "clean.html")
        r = subprocess.run([os.path.join(BIN, "llmscope"), "report", cap, "--format", "html", "-o", html])
        h = open(html).read() if r.returncode == 0 else ""
        result("report_html_self_contained", h.count("<svg") >= 2 and "<script src" not in h and "http://" not in h.replace("http://www.w3.org", "")
               .replace(json.loads(man)["url"], ""), f"exit {r.returncode}, {len(h)} bytes")
        rc = [subprocess.run([os.path.join(BIN, "llmscope")] + a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
              for a in (["report", cap, "--format", "pdf"], ["report", os.path.join(out, "missing")],
                        ["collect", "--url", f"http://127.0.0.1:{free_port()}", "--seconds", "1", "-o", os.path.join(out, "x")],
                        ["collect", "--seconds", "1"])]
        result("cli_errors", rc == [2, 1, 1, 2], f"exit codes {rc}")
        md, cap = diagnose("clean-tokenizer-model", None, CASES["single-tokenizer"][1], out, TOKENIZER_BOUND)
        f = findings(md)
        result("clean_tokenizer_model_no_high_confidence_finding", all(c != "high" for _, c in f), f"findings: {f}")
        for case, (key, load) in CASES.items():
            try:
                md, cap = diagnose(case, case, load, out)
            except Exception as e:  # noqa: BLE001 - report and go on
                result(f"lab_{case}", False, str(e))
                continue
            f = findings(md)
            man = open(os.path.join(cap, "manifest.json")).read()
            if case == "heap-growth" and "compiled out" in json.loads(man)["unavailable"].get("heap_end", ""):
                result(f"lab_{case}", True)   # skipped: this build has no heap profiler (sanitizers)
                print("  (skipped: heap profiling is compiled out of this build)")
                continue
            # Where the switch could show: the manifest (server config), /metrics, the server's log.
            seen = man + "".join(open(os.path.join(cap, n)).read() for n in ("metrics_before.txt", "metrics_after.txt", "server.log")
                                 if os.path.exists(os.path.join(cap, n)))
            leaked = case in seen or "inject" in seen
            ok = bool(f) and f[0][0] == key and f[0][1] in ("high", "medium") and not leaked
            result(f"lab_{case}", ok, f"findings: {f}" + (" (the switch shows in the capture)" if leaked else ""))
            if not ok and os.environ.get("LAB_KEEP"):
                shutil.copytree(cap, os.path.join(os.environ["LAB_KEEP"], case), dirs_exist_ok=True)
        test_bandwidth(out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


# ---- bench -------------------------------------------------------------------------------

def run_load(port, load, seconds):
    cmd = [os.path.join(BIN, "llmscope"), "load", "-z", f"{seconds}s", "--json"] + load + [f"http://127.0.0.1:{port}"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=seconds + 120)
    return json.loads(r.stdout)


def bench(outdir, seconds, rounds):
    os.makedirs(outdir, exist_ok=True)
    rows = []
    for case, (key, load) in CASES.items():
        res = {}
        for inj in (None, case):   # interleaved rounds
            res[inj] = []
        for _ in range(rounds):
            for inj in (None, case):
                port = free_port()
                # Slow clients in the bench: more of them than --max-conns, a line every 5 s, against a
                # 2 s read timeout the plain server keeps and the injected one drops.
                slow = case == "slow-clients"
                p = start_server(port, inj, MODEL_FOR.get(case, MODEL), ["--read-timeout", "2"] if slow else [])
                tr = Trickle(port, BENCH_SLOW_CLIENTS, 5.0) if slow else None
                try:
                    if tr:
                        time.sleep(1)
                    j = run_load(port, load, seconds)
                    try:
                        j["rss_mib"] = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1)) / 1024
                    except (OSError, AttributeError):
                        j["rss_mib"] = 0
                finally:
                    if tr:
                        tr.close()
                    stop_server(p)
                res[inj].append(j)

        def agg(js, f):
            v = sorted(f(j) for j in js)
            return v[len(v) // 2]
        fig = {}
        for inj in (None, case):
            js = res[inj]
            fig[inj] = {
                "p50": agg(js, lambda j: j["latency_ms"]["p50"]),
                "p99": agg(js, lambda j: j["latency_ms"]["p99"]),
                "rps": agg(js, lambda j: j["summary"]["requests_per_sec"]),
                "tps": agg(js, lambda j: (j.get("llm") or {}).get("output_throughput", 0)),
                "err": agg(js, lambda j: j["summary"]["errors"]),
                "rss": agg(js, lambda j: j.get("rss_mib", 0)),
            }
        off, on = fig[None], fig[case]
        loadtxt = " ".join(a if " " not in a else f"'{a[:24]}…' ({len(a)} bytes)" for a in load)
        with open(os.path.join(outdir, f"{case}.md"), "w") as f:
            f.write(f"# lab: {case}\n\n")
            slow = case == "slow-clients"
            f.write(f"`llmscope load -z {seconds}s {loadtxt}` against `llm-server -m {os.path.basename(MODEL_FOR.get(case, MODEL))} -t 2"
                    f"{' --read-timeout 2' if slow else ''}`"
                    f"{', with ' + str(BENCH_SLOW_CLIENTS) + ' slow clients sending a header line every 5 s' if slow else ''}, "
                    f"with and without `--inject {case}`; median of {rounds} interleaved rounds.\n\n")
            f.write("| server | P50 ms | P99 ms | requests/s | output tokens/s | errors | server RSS MiB at the end |\n"
                    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
            for name, v in (("plain", off), (f"--inject {case}", on)):
                lat = f"{v['p50']:.1f} | {v['p99']:.1f}" if v["rps"] > 0 else "none completed | none completed"
                f.write(f"| {name} | {lat} | {v['rps']:.2f} | {v['tps']:.1f} | {v['err']} | {v['rss']:.0f} |\n")
            if case == "alloc-churn":
                imp = (1 - off["p99"] / on["p99"]) * 100 if on["p99"] else 0
                f.write(f"\nPooled buffers (the plain server) cut P99 latency by {imp:.0f}% against per-piece allocation.\n")
        rows.append((case, off, on))
        print(f"{case}: P99 {off['p99']:.1f} -> {on['p99']:.1f} ms, {off['rps']:.2f} -> {on['rps']:.2f} req/s", flush=True)
    with open(os.path.join(outdir, "summary.md"), "w") as f:
        f.write("# lab summary\n\nEach case's own load, plain server against `--inject NAME` "
                f"({seconds} s runs, median of {rounds} interleaved rounds; details in NAME.md).\n\n")
        f.write("| case | P50 ms plain → injected | P99 ms plain → injected | P99 change | requests/s plain → injected | errors | RSS MiB |\n"
                "| --- | --- | --- | ---: | --- | --- | --- |\n")
        for case, off, on in rows:
            ch = f"{(on['p99'] / off['p99'] - 1) * 100:+.0f}%" if off["p99"] and on["rps"] > 0 else "–"
            p50 = f"{on['p50']:.1f}" if on["rps"] > 0 else "none completed"
            p99 = f"{on['p99']:.1f}" if on["rps"] > 0 else "none completed"
            f.write(f"| {case} | {off['p50']:.1f} → {p50} | {off['p99']:.1f} → {p99} | {ch} | "
                    f"{off['rps']:.2f} → {on['rps']:.2f} | {off['err']} → {on['err']} | {off['rss']:.0f} → {on['rss']:.0f} |\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "bench":
        sys.exit(bench(sys.argv[2] if len(sys.argv) > 2 else "bench/lab", int(os.environ.get("LAB_BENCH_SECONDS", "8")),
                       int(os.environ.get("LAB_BENCH_ROUNDS", "3"))))
    sys.exit(run_tests())
