#!/usr/bin/env python3
"""Integration tests of llm-server over real loopback sockets, on the real
stories260K model. Run by tests/test_server.sh; prints `ok   name` / `FAIL name`
per test and a closing `N passed, N failed` line."""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = os.environ.get("LLMSCOPE_BIN", os.path.join(os.path.dirname(__file__), "..", "build", "bin"))
MODELS = os.environ.get("MODELS", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "models"))
MODEL = os.path.join(MODELS, "stories260K.gguf")
HERE = os.path.dirname(os.path.abspath(__file__))

passed = failed = 0


def result(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name}" + (f"\n  {detail}" if detail else ""), flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    def __init__(self, *args):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="llm-server-", suffix=".log", delete=False)
        # No start-up bandwidth probe unless a test asks for it: it streams
        # 256 MiB, which sanitizer builds make slow.
        probe = () if "--bw-probe-mib" in args else ("--bw-probe-mib", "0")
        self.proc = subprocess.Popen([os.path.join(BIN, "llm-server"), "-m", MODEL, "--http-addr",
                                      f"127.0.0.1:{self.port}", "-t", "2", *probe, *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if self.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready: " + open(self.log.name).read())

    def request(self, method, path, body=None, headers=None, timeout=60):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hdrs = dict(r.getheaders())
        c.close()
        return r.status, data, hdrs

    def json(self, method, path, body=None, **kw):
        st, data, hdrs = self.request(method, path, body, **kw)
        try:
            return st, json.loads(data), hdrs
        except ValueError:
            return st, data, hdrs

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        if os.path.exists(self.log.name):
            self.final_log = open(self.log.name).read()
            os.unlink(self.log.name)
        return rc

    def logtext(self):
        if os.path.exists(self.log.name):
            return open(self.log.name).read()
        return getattr(self, "final_log", "")


def sse_events(resp):
    """Yields the data payloads of a server-sent-event stream as they arrive."""
    buf = b""
    while True:
        chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1)
        if not chunk:
            return
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            for line in ev.split(b"\n"):
                if line.startswith(b"data: "):
                    yield line[6:].decode()


def stream(srv, path, body, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return c, r


PROMPTS = ["Once upon a time", "Lily and Tom", "The cat", "One day, a little bird", "Tim had a red ball",
           "The sun was", "Mom said", "There was a big dog named Max who liked to run"]


def greedy(srv, prompt, n=40):
    st, j, _ = srv.json("POST", "/infer", {"prompt": prompt, "max_tokens": n, "temperature": 0})
    return st, j


def test_batching_is_exact(srv):
    seq = {}
    for p in PROMPTS:
        st, j = greedy(srv, p)
        if st != 200:
            return result("batching: 8 concurrent greedy requests equal 8 sequential ones", False, f"{st} {j}")
        seq[p] = j["tokens"]
    con = {}
    errs = []

    def worker(p):
        st, j = greedy(srv, p)
        if st == 200:
            con[p] = j["tokens"]
        else:
            errs.append((st, j))
    for _ in range(2):   # twice, so arrivals interleave differently
        ts = [threading.Thread(target=worker, args=(p,)) for p in PROMPTS]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        diff = [p for p in PROMPTS if con.get(p) != seq[p]]
        if errs or diff:
            return result("batching: 8 concurrent greedy requests equal 8 sequential ones", False,
                          f"errors {errs[:2]}, differing: {diff}")
    # The batched runs really were batched: some step carried several sequences.
    st, text, _ = srv.request("GET", "/metrics")
    m = re.search(rb'llmscope_batch_tokens_bucket\{le="1"\} (\d+)\n', text)
    tot = re.search(rb'llmscope_batch_tokens_count (\d+)\n', text)
    multi = m and tot and int(tot.group(1)) > int(m.group(1))
    result("batching: 8 concurrent greedy requests equal 8 sequential ones", bool(multi),
           "no step carried more than one token")


def test_golden_text(srv):
    golden = json.load(open(os.path.join(MODELS, "golden", "stories260K_greedy.json")))
    case = golden["cases"][1]
    st, j = greedy(srv, "Once upon a time", n=60)
    want = case["stdout_text"]
    got = "Once upon a time" + (j.get("text", "") if isinstance(j, dict) else "")
    result("infer: greedy text equals the golden output", st == 200 and got == want, f"{st} {got!r} vs {want!r}")


def test_get_infer_defaults(srv):
    st, j, _ = srv.json("GET", "/infer")
    ok = st == 200 and j["generated_tokens"] == 16 and j["prompt_tokens"] > 0 and "timings" in j
    ok = ok and all(k in j["timings"] for k in ("queue_ms", "tokenize_ms", "prefill_ms", "decode_ms", "ttft_ms", "tpot_ms"))
    result("infer: bare GET works with defaults (16 tokens, timings)", ok, f"{st} {j}")
    st, j, _ = srv.json("GET", "/infer?prompt=Lily%20went&max_tokens=5&temperature=0")
    result("infer: GET query parameters", st == 200 and j["generated_tokens"] == 5, f"{st} {j}")


def test_stream_matches(srv):
    st, j = greedy(srv, "Lily and Tom", n=30)
    c, r = stream(srv, "/infer", {"prompt": "Lily and Tom", "max_tokens": 30, "temperature": 0, "stream": True})
    evs = list(sse_events(r))
    c.close()
    toks = [json.loads(e) for e in evs if e != "[DONE]"]
    text = "".join(t.get("text", "") for t in toks if "token" in t)
    ok = r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream") and evs[-1] == "[DONE]"
    ok = ok and text == j["text"] and [t["token"] for t in toks if "token" in t] == j["tokens"]
    ok = ok and toks[-1].get("done") is True and toks[-1]["generated_tokens"] == 30
    result("stream: /infer SSE tokens equal the non-streamed answer, end with [DONE]", ok, f"{evs[:3]} ... {evs[-2:]}")


def test_openai_shapes(srv):
    st, j, _ = srv.json("POST", "/v1/completions", {"model": "x", "prompt": "Once upon a time", "max_tokens": 12,
                                                     "temperature": 0})
    ok = st == 200 and j["object"] == "text_completion" and j["choices"][0]["finish_reason"] == "length"
    ok = ok and j["usage"]["completion_tokens"] == 12 and j["usage"]["total_tokens"] == j["usage"]["prompt_tokens"] + 12
    result("openai: /v1/completions response and usage", ok, f"{st} {j}")
    st, j, _ = srv.json("POST", "/v1/chat/completions", {"model": "x", "messages": [
        {"role": "system", "content": "You tell stories."}, {"role": "user", "content": "Tell me one."}],
        "max_tokens": 10, "temperature": 0})
    ok = st == 200 and j["object"] == "chat.completion" and j["choices"][0]["message"]["role"] == "assistant"
    ok = ok and j["usage"]["completion_tokens"] <= 10
    result("openai: /v1/chat/completions response", ok, f"{st} {j}")
    c, r = stream(srv, "/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8,
                                                "stream": True, "temperature": 0})
    evs = list(sse_events(r))
    c.close()
    chunks = [json.loads(e) for e in evs[:-1]]
    ok = evs[-1] == "[DONE]" and chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    ok = ok and all(ch["object"] == "chat.completion.chunk" for ch in chunks)
    ok = ok and chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")
    result("openai: chat stream chunks, role first, finish_reason last, [DONE]", ok, f"{evs[:2]} {evs[-2:]}")
    st, j, _ = srv.json("GET", "/v1/models")
    result("openai: /v1/models lists the model", st == 200 and j["data"][0]["id"] == "stories260K.gguf", f"{st} {j}")


def test_stop_strings(srv):
    st, j = greedy(srv, "Once upon a time", n=60)
    full = j["text"]
    cut = full.find("Lily")
    st, j2, _ = srv.json("POST", "/infer", {"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0,
                                            "stop": ["Lily"]})
    ok = st == 200 and cut > 0 and j2["text"] == full[:cut] and j2["finish_reason"] == "stop"
    # Streamed: no part of the stop string leaks before it is recognised.
    c, r = stream(srv, "/infer", {"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0, "stop": "Lily",
                                  "stream": True})
    evs = [json.loads(e) for e in sse_events(r) if e != "[DONE]"]
    c.close()
    streamed = "".join(e.get("text", "") for e in evs if "token" in e)
    ok = ok and streamed == full[:cut]
    result("infer: stop strings cut the text, streamed too", ok, f"{j2} / {streamed!r}")


def test_tokenize(srv):
    st, j, _ = srv.json("POST", "/tokenize", {"content": "Once upon a time"})
    cli = subprocess.run([os.path.join(BIN, "llmscope"), "tokenize", "-m", MODEL, "--ids", "Once upon a time"],
                         capture_output=True, text=True).stdout.split()
    ok = st == 200 and [str(t) for t in j["tokens"]] == re.findall(r"\d+", " ".join(cli))
    result("tokenize: ids equal the command line's", ok, f"{j} vs {cli}")


BAD = [
    # (name, method, path, body, headers, status)
    ("malformed JSON", "POST", "/infer", "{\"prompt\": ", None, 400),
    ("not an object", "POST", "/infer", "[1,2]", None, 400),
    ("prompt not a string", "POST", "/infer", {"prompt": 5}, None, 400),
    ("max_tokens a string", "POST", "/infer", {"prompt": "a", "max_tokens": "ten"}, None, 400),
    ("max_tokens zero", "POST", "/infer", {"prompt": "a", "max_tokens": 0}, None, 400),
    ("max_tokens too large", "POST", "/infer", {"prompt": "a", "max_tokens": 10**9}, None, 400),
    ("max_tokens fractional", "POST", "/infer", {"prompt": "a", "max_tokens": 2.5}, None, 400),
    ("temperature negative", "POST", "/infer", {"prompt": "a", "temperature": -1}, None, 400),
    ("top_p above 1", "POST", "/infer", {"prompt": "a", "top_p": 1.5}, None, 400),
    ("top_k negative", "POST", "/infer", {"prompt": "a", "top_k": -3}, None, 400),
    ("seed negative", "POST", "/infer", {"prompt": "a", "seed": -1}, None, 400),
    ("stream not a bool", "POST", "/infer", {"prompt": "a", "stream": "yes"}, None, 400),
    ("stop not a string", "POST", "/infer", {"prompt": "a", "stop": [1]}, None, 400),
    ("too many stop strings", "POST", "/infer", {"prompt": "a", "stop": ["a", "b", "c", "d", "e"]}, None, 400),
    ("n above 1", "POST", "/v1/completions", {"prompt": "a", "n": 2}, None, 400),
    ("invalid UTF-8 body", "POST", "/infer", b'{"prompt": "\xff\xfe"}', None, 400),
    ("NUL in prompt", "POST", "/infer", '{"prompt": "a\\u0000b"}', None, 400),
    ("duplicate keys", "POST", "/infer", '{"prompt": "a", "prompt": "b"}', None, 400),
    ("completions without prompt", "POST", "/v1/completions", {"max_tokens": 3}, None, 400),
    ("chat without messages", "POST", "/v1/chat/completions", {"max_tokens": 3}, None, 400),
    ("chat messages not an array", "POST", "/v1/chat/completions", {"messages": "hi"}, None, 400),
    ("chat bad role", "POST", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, None, 400),
    ("chat content a number", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": 3}]}, None, 400),
    ("GET max_tokens junk", "GET", "/infer?max_tokens=12abc", None, None, 400),
    ("GET invalid UTF-8 prompt", "GET", "/infer?prompt=%ff%fe", None, None, 400),
    ("prompt longer than the context", "POST", "/infer", {"prompt": "once upon a time " * 700}, None, 400),
    ("body over --max-body", "POST", "/infer", {"prompt": "x" * 300000}, None, 413),
    ("unknown endpoint", "GET", "/nope", None, None, 404),
    ("wrong method", "DELETE", "/infer", None, None, 405),
    ("GET on a POST endpoint", "GET", "/v1/completions", None, None, 405),
]


def test_bad_requests(srv):
    bad = []
    for name, method, path, body, headers, want in BAD:
        st, j, _ = srv.json(method, path, body, headers=headers)
        good = st == want and isinstance(j, dict) and isinstance(j.get("error"), dict)
        good = good and isinstance(j["error"].get("message"), str) and j["error"].get("code") == want
        good = good and isinstance(j["error"].get("type"), str)
        if name == "prompt longer than the context" and good:
            good = re.search(r"\d+ tokens.*context holds \d+", j["error"]["message"]) is not None
        if not good:
            bad.append(f"{name}: {st} {j!r}"[:200])
    st, j = greedy(srv, "Once upon a time", n=5)
    result(f"errors: {len(BAD)} bad requests get their status and a JSON error body", not bad, "; ".join(bad))
    result("errors: the server still serves a good request afterwards", st == 200 and j["generated_tokens"] == 5)


def test_metrics(srv):
    st, before, _ = srv.request("GET", "/metrics")
    greedy(srv, "The cat", n=7)
    st2, after, hdrs = srv.request("GET", "/metrics")

    def val(text, name):
        m = re.search(rb"^" + re.escape(name.encode()) + rb" ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else None
    moved = all(val(after, n) is not None and val(after, n) > (val(before, n) or 0) for n in (
        "llmscope_e2e_request_latency_seconds_count", "llmscope_time_to_first_token_seconds_count",
        "llmscope_inter_token_latency_seconds_count", "llmscope_generation_tokens_total"))
    ok = st2 == 200 and hdrs.get("Content-Type", "").startswith("text/plain") and moved
    ok = ok and b'llmscope_http_requests_total{endpoint="/infer",status="200"}' in after
    ok = ok and val(after, "llmscope_compute_thread_moves_total") is not None
    result("metrics: histograms and counters move as requests complete", ok)
    promtool = shutil.which("promtool")
    if not promtool:
        result("metrics: promtool check metrics accepts /metrics (promtool not installed)", False,
               "install Debian's prometheus package (scripts/setup.sh does)")
        return
    p = subprocess.run([promtool, "check", "metrics"], input=after, capture_output=True)
    result("metrics: promtool check metrics accepts /metrics", p.returncode == 0,
           (p.stdout + p.stderr).decode()[:500])


def test_weights_memory():
    """The weights are read into 2 MiB pages unless --mmap: /metrics says how
    many bytes are held and how many of them in huge pages, and the ready line
    says how they are held. With --bw-probe-mib the server measures its read
    bandwidth at start (a metric and the ready line; without it, 0 and "not
    measured"), and /metrics gives the weight bytes a step reads."""
    thp = "unavailable"
    for f in ("/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled", "/sys/kernel/mm/transparent_hugepage/enabled"):
        try:
            thp = re.search(r"\[(\w+)\]", open(f).read()).group(1)
        except (OSError, AttributeError):
            continue
        if thp != "inherit":
            break
    if thp == "inherit":
        thp = "unavailable"
    size = os.path.getsize(MODEL)
    for args in ((), ("--mmap",)):
        probe = () if args else ("--bw-probe-mib", "64")
        srv = Server(*args, *probe, "--parallel", "2", "--ctx", "64")
        try:
            _, m, _ = srv.request("GET", "/metrics")
            wb = re.search(rb"^llmscope_weights_bytes ([0-9.e+]+)$", m, re.M)
            hb = re.search(rb"^llmscope_weights_huge_page_bytes ([0-9.e+]+)$", m, re.M)
            bw = re.search(rb"^llmscope_memory_read_bandwidth_bytes_per_second ([0-9.e+]+)$", m, re.M)
            ws = re.search(rb"^llmscope_weights_read_per_step_bytes ([0-9.e+]+)$", m, re.M)
            bwv, wsv = float(bw.group(1)) if bw else -1, float(ws.group(1)) if ws else -1
            # stories260K: the matrices (not the token embeddings' table) a step reads.
            step_ok = 0.5 * size < wsv < size
            if probe:
                bw_ok = bwv > 1e8 and re.search(r"memory: the compute threads read [0-9.]+ GB/s \(64 MiB streamed at start\)",
                                                srv.logtext()) is not None
            else:
                bw_ok = bwv == 0 and "read bandwidth not measured (--bw-probe-mib 0)" in srv.logtext()
            result(f"weights {'--mmap' if args else 'default'}: read bandwidth {'measured' if probe else 'not measured'} at start "
                   "(llmscope_memory_read_bandwidth_bytes_per_second, ready line), llmscope_weights_read_per_step_bytes",
                   bw_ok and step_ok, f"{bwv} {wsv} of {size}: {srv.logtext()[:500]}")
            if not args:   # the decode prefetch's choice: on until pairs of steps measure otherwise, then 0 or 1
                pf0 = re.search(rb"^llmscope_decode_prefetch ([0-9.e+]+)$", m, re.M)
                for _ in range(3):
                    srv.json("POST", "/infer", {"prompt": "Once upon a time", "max_tokens": 40, "temperature": 0})
                _, m2, _ = srv.request("GET", "/metrics")
                pf1 = re.search(rb"^llmscope_decode_prefetch ([0-9.e+]+)$", m2, re.M)
                result("llmscope_decode_prefetch: 1 at start, 0 or 1 after single-stream decode",
                       pf0 is not None and float(pf0.group(1)) == 1 and pf1 is not None and float(pf1.group(1)) in (0.0, 1.0),
                       f"{pf0.group(0) if pf0 else None} {pf1.group(0) if pf1 else None}")
            huge = float(hb.group(1)) if hb else -1
            if args:
                ok = huge == 0 and "weights: file mapping (--mmap)" in srv.logtext()
            elif thp in ("always", "madvise"):
                ok = 0 < huge <= size and "weights: read into memory, " in srv.logtext()
            else:
                ok = huge == 0 and "weights: file mapping" in srv.logtext()
            ok = ok and wb is not None and float(wb.group(1)) == size
            result(f"weights {'--mmap' if args else 'default'} (THP {thp}): llmscope_weights_bytes and _huge_page_bytes, ready line",
                   ok, f"{wb and wb.group(1)} {hb and hb.group(1)} {srv.logtext()[:400]}")
        finally:
            srv.stop()


def test_kv_type():
    """--kv-type: the cache's size on /metrics and its type on the ready line
    follow the flag (stories260K: 5 layers, 4 KV heads of 8, here 2 slots of
    64 positions), and greedy text is the same with either cache."""
    texts = {}
    for kv, es in (("f16", 2), ("f32", 4)):
        srv = Server("--kv-type", kv, "--parallel", "2", "--ctx", "64")
        try:
            _, m, _ = srv.request("GET", "/metrics")
            got = re.search(rb"^llmscope_kv_cache_bytes ([0-9.e+]+)$", m, re.M)
            want = 2 * 5 * 2 * 64 * 32 * es
            ok = got is not None and float(got.group(1)) == want and f"{kv} KV cache".encode() in srv.logtext().encode()
            result(f"--kv-type {kv}: llmscope_kv_cache_bytes {want} and the ready line name the cache", ok,
                   f"{got.group(1) if got else None} {srv.logtext()[:300]}")
            st, j = greedy(srv, "Once upon a time", n=24)
            texts[kv] = j.get("text") if st == 200 else None
        finally:
            srv.stop()
    result("--kv-type: f16 and f32 caches give the same greedy text", texts["f16"] is not None and texts["f16"] == texts["f32"],
           str(texts))


def test_auth():
    srv = Server("--api-key", "sekret")
    try:
        st, j, h = srv.json("POST", "/infer", {"prompt": "a", "max_tokens": 2})
        st2, j2, _ = srv.json("POST", "/infer", {"prompt": "a", "max_tokens": 2}, headers={"Authorization": "Bearer nope"})
        st3, j3, _ = srv.json("POST", "/infer", {"prompt": "a", "max_tokens": 2},
                              headers={"Authorization": "Bearer sekret"})
        st4, _, _ = srv.request("GET", "/health")
        ok = st == 401 and j["error"]["code"] == 401 and st2 == 401 and st3 == 200 and st4 == 200
        result("limits: --api-key refuses missing and wrong keys with 401, /health stays open", ok,
               f"{st} {st2} {st3} {st4}")
    finally:
        srv.stop()


def test_cancel_frees_slot():
    srv = Server("--parallel", "1")
    try:
        c, r = stream(srv, "/infer", {"prompt": "Once upon a time", "max_tokens": 1500, "stream": True})
        it = sse_events(r)
        got = [next(it) for _ in range(3)]
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        t0 = time.time()
        st, j = greedy(srv, "Lily", n=5)
        dt = time.time() - t0
        # The slot came back: the next request finished long before the first
        # request's 1500 tokens could have been generated.
        st2, text, _ = srv.request("GET", "/metrics")
        running = re.search(rb"^llmscope_num_requests_running (\S+)$", text, re.M)
        ok = len(got) == 3 and st == 200 and j["generated_tokens"] == 5 and running and float(running.group(1)) == 0
        gen = re.search(rb"^llmscope_generation_tokens_total (\S+)$", text, re.M)
        ok = ok and gen and float(gen.group(1)) < 1500
        result("cancel: a client leaving mid-stream frees its slot", ok, f"{st} {j} in {dt:.2f}s, running={running}")
    finally:
        srv.stop()


def test_overload_503():
    srv = Server("--parallel", "1", "--max-queue", "2")
    try:
        out = []

        def worker():
            try:
                st, j, h = srv.json("POST", "/infer", {"prompt": "Once upon a time", "max_tokens": 400})
                out.append((st, h.get("Retry-After"), j))
            except Exception as e:   # noqa: BLE001
                out.append((0, None, str(e)))
        ts = [threading.Thread(target=worker) for _ in range(12)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        codes = sorted(o[0] for o in out)
        over = [o for o in out if o[0] == 503]
        ok = len(out) == 12 and set(codes) <= {200, 503} and over and all(o[1] for o in over) and 200 in codes
        ok = ok and all(o[2]["error"]["code"] == 503 for o in over)
        result("limits: overload gives 503 with Retry-After, not a hang", ok, f"{codes}")
    finally:
        srv.stop()


def test_sigterm_under_load():
    srv = Server("--parallel", "2", "--shutdown-timeout", "2")
    out = []

    def worker(i):
        try:
            if i % 2:
                st, j, _ = srv.json("POST", "/infer", {"prompt": "Once upon a time", "max_tokens": 1800}, timeout=30)
                out.append(st)
            else:
                c, r = stream(srv, "/infer", {"prompt": "Lily", "max_tokens": 1800, "stream": True}, timeout=30)
                evs = list(sse_events(r))
                out.append(200 if evs and evs[-1] == "[DONE]" else -1)
        except Exception:   # noqa: BLE001  (a closed connection is an answer too)
            out.append(0)
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    time.sleep(0.7)
    t0 = time.time()
    rc = srv.stop(signal.SIGTERM, timeout=20)
    for t in ts:
        t.join(20)
    dt = time.time() - t0
    hanging = sum(t.is_alive() for t in ts)
    result("shutdown: SIGTERM under load exits 0 and answers every client", rc == 0 and hanging == 0 and len(out) == 6,
           f"rc={rc} in {dt:.1f}s, answers {out}, hanging {hanging}; log: {srv.logtext()[-300:]}")


def test_port_in_use():
    srv = Server()
    try:
        p = subprocess.run([os.path.join(BIN, "llm-server"), "-m", MODEL, "--http-addr", f"127.0.0.1:{srv.port}"],
                           capture_output=True, text=True, timeout=20)
        result("start-up: a port already in use is a one-line error, exit 1", p.returncode == 1 and
               "cannot listen" in p.stderr, f"exit {p.returncode}: {p.stderr.strip()[:200]}")
    finally:
        srv.stop()


def test_idle_connections():
    srv = Server("--read-timeout", "2", "--max-conns", "64")
    try:
        idle = []
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")   # and never finish
            idle.append(s)
        st, j = greedy(srv, "The cat", n=4)
        ok = st == 200
        time.sleep(3.5)
        closed = 0
        for s in idle:
            s.settimeout(2)
            try:
                if s.recv(100) == b"":
                    closed += 1
            except (ConnectionResetError, socket.timeout):
                closed += 1 if not isinstance(sys.exc_info()[1], socket.timeout) else 0
            s.close()
        result("limits: slow clients do not starve others and are cut at --read-timeout", ok and closed == len(idle),
               f"good request {st}, {closed}/{len(idle)} slow connections closed")
    finally:
        srv.stop()


def test_conn_limit():
    """--max-conns holds: past it a connection waits in the listen backlog
    (no answer, no descriptor in the server) and is served once a place frees."""
    srv = Server("--max-conns", "16", "--read-timeout", "30")
    try:
        fds0 = len(os.listdir(f"/proc/{srv.proc.pid}/fd"))
        held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(16)]
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        extra.settimeout(1.0)
        try:
            early = extra.recv(100)
        except socket.timeout:
            early = None
        fds_full = len(os.listdir(f"/proc/{srv.proc.pid}/fd"))
        for h in held:
            h.close()
        extra.settimeout(5)
        late = b""
        try:
            while True:
                d = extra.recv(4096)
                if not d:
                    break
                late += d
        except OSError:
            pass
        extra.close()
        result("limits: past --max-conns a connection waits, then is served when a place frees",
               early is None and fds_full <= fds0 + 16 and late.startswith(b"HTTP/1.1 200"),
               f"answer while full: {early!r}, fds {fds0} idle, {fds_full} full, answer after: {late[:40]!r}")
    finally:
        srv.stop()


def test_hey(srv):
    hey = shutil.which("hey")
    if not hey:
        result("hey: -z 5s -c 8 /infer gives only 200s (hey not installed)", False, "install Debian's hey")
        return
    p = subprocess.run([hey, "-z", "5s", "-c", "8", f"http://127.0.0.1:{srv.port}/infer"], capture_output=True,
                       text=True, timeout=60)
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", p.stdout)
    ok = p.returncode == 0 and codes and all(c == "200" for c, _ in codes) and "Error distribution" not in p.stdout
    result("hey: -z 5s -c 8 /infer gives only 200s", ok, p.stdout[-600:])


def test_openai_client(srv):
    node = shutil.which("node")
    mod = os.path.join(HERE, "node_modules", "openai")
    if not node or not os.path.isdir(mod):
        result("openai npm client: streamed completions and chat", False,
               "node or the openai package is missing (scripts/setup.sh installs them)")
        return
    p = subprocess.run([node, os.path.join(HERE, "openai_client.mjs"), f"http://127.0.0.1:{srv.port}/v1"],
                       capture_output=True, text=True, timeout=60)
    result("openai npm client: streamed completions and chat", p.returncode == 0 and "openai-client ok" in p.stdout,
           (p.stdout + p.stderr)[-800:])


def test_curl_stream(srv):
    curl = shutil.which("curl")
    if not curl:
        result("curl -N streams chat chunks", False, "curl missing")
        return
    p = subprocess.run([curl, "-sN", f"http://127.0.0.1:{srv.port}/v1/chat/completions", "-d",
                        json.dumps({"messages": [{"role": "user", "content": "Hi"}], "stream": True, "max_tokens": 6})],
                       capture_output=True, text=True, timeout=30)
    lines = [ln for ln in p.stdout.split("\n") if ln.startswith("data: ")]
    result("curl -N streams chat chunks", p.returncode == 0 and len(lines) >= 3 and lines[-1] == "data: [DONE]",
           p.stdout[-300:])


def nesting_errors(evs):
    """Slices (X) of each thread must be disjoint or contain one another."""
    by = {}
    for e in evs:
        if e["ph"] == "X":
            by.setdefault(e["tid"], []).append((float(e["ts"]), float(e["ts"]) + float(e["dur"]), e["name"]))
    bad = 0
    for sl in by.values():
        sl.sort(key=lambda x: (x[0], -x[1]))
        stack = []
        for a, b, name in sl:
            while stack and stack[-1][1] <= a + 1e-3:
                stack.pop()
            if stack and b > stack[-1][1] + 1e-3:
                bad += 1
            stack.append((a, b, name))
    return bad


def test_trace_capture(srv):
    """A capture during a known load: every request has its task, its regions
    in order across threads, one log per generated token, and flows."""
    n_req, n_tok = 6, 10
    box = {}

    def capture():
        box["trace"] = srv.request("GET", "/debug/trace?seconds=2", timeout=30)
    th = threading.Thread(target=capture)
    th.start()
    time.sleep(0.3)
    ids = []
    lock = threading.Lock()

    def one(p):
        st, j = greedy(srv, p, n=n_tok)
        with lock:
            ids.append(j["id"] if st == 200 else None)
    ts = [threading.Thread(target=one, args=(p,)) for p in PROMPTS[:n_req]]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    th.join()
    st, data, hdrs = box["trace"]
    try:
        tr = json.loads(data)
    except ValueError:
        return result("trace: /debug/trace is JSON", False, data[:200])
    evs = tr["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "thread_name"}
    problems = []
    if None in ids or len(ids) != n_req:
        problems.append(f"requests failed: {ids}")
    for rid in ids:
        if rid is None:
            continue
        b = [e for e in evs if e["ph"] == "b" and e.get("id") == rid]
        e_ = [e for e in evs if e["ph"] == "e" and e.get("id") == rid]
        toks = [e for e in evs if e["ph"] == "i" and e["name"] == "token" and e["args"].get("request") == rid]
        flows = [e for e in evs if e["ph"] in "stf" and e.get("id") == rid and e.get("cat") == "request"]
        regs = {}
        for e in evs:
            if e["ph"] == "X" and e.get("args", {}).get("request") == rid:
                regs.setdefault(e["name"], e)
        if len(b) != 1 or len(e_) != 1:
            problems.append(f"{rid}: task b/e {len(b)}/{len(e_)}")
        if sorted(t["args"]["index"] for t in toks) != list(range(n_tok)):
            problems.append(f"{rid}: token logs {[t['args']['index'] for t in toks]}")
        order = [regs.get(k) for k in ("submit", "tokenize", "respond")]
        if None in order or not (order[0]["ts"] <= order[1]["ts"] <= order[2]["ts"]):
            problems.append(f"{rid}: regions {list(regs)}")
        elif names.get(order[1]["tid"], "").startswith("http") or not names.get(order[0]["tid"], "").startswith("http"):
            problems.append(f"{rid}: submit on {names.get(order[0]['tid'])}, tokenize on {names.get(order[1]['tid'])}")
        phs = "".join(f["ph"] for f in sorted(flows, key=lambda f: float(f["ts"])))
        if not (phs.startswith("s") and phs.endswith("f") and "t" in phs) or len({f["tid"] for f in flows}) < 3:
            problems.append(f"{rid}: flows {phs} over {len({f['tid'] for f in flows})} threads")
    bad = nesting_errors(evs)
    if bad:
        problems.append(f"{bad} slices overlap without nesting")
    roles = set(names.values())
    if not any(n.startswith("compute") for n in roles) or "scheduler" not in roles:
        problems.append(f"threads {sorted(roles)}")
    if not any(e["ph"] == "C" and e["name"] == "queue.tokenize" for e in evs):
        problems.append("no queue depth counter")
    result("trace: tasks, ordered regions, a log per token and flows for every request of a known load",
           st == 200 and not problems, "; ".join(problems)[:800])


def test_flight_off(srv):
    st, j, _ = srv.json("GET", "/debug/trace/flight")
    result("trace: /debug/trace/flight without the recorder is 409 with a reason", st == 409 and "enable-trace" in
           j["error"]["message"], f"{st} {j}")


def test_flight_recorder():
    d = tempfile.mkdtemp(prefix="llmscope-trace-")
    srv = Server("--enable-trace=true", "--trace-slow-ms", "400", "--trace-dir", d, "--parallel", "2")
    try:
        t0 = time.time()
        st0, j0 = greedy(srv, "The cat", n=3)   # fast: no dump
        fast = time.time() - t0 < 0.4
        time.sleep(1.1)   # dumps are rate-limited to one a second
        t0 = time.time()
        st, j = greedy(srv, "Once upon a time", n=1800)   # slow: dumped
        slow_enough = time.time() - t0 > 0.45
        time.sleep(0.3)
        files = os.listdir(d)
        slow = [f for f in files if f.startswith(f"slow-request-{j['id']}-")]
        quick = [f for f in files if f.startswith(f"slow-request-{j0['id']}-")]
        ok = st == 200 and (len(slow) == 1 or not slow_enough) and not (fast and quick)
        detail = f"{files} (fast request under the bar: {fast}, slow one over it: {slow_enough})"
        if slow:
            tr = json.load(open(os.path.join(d, slow[0])))
            evs = tr["traceEvents"]
            toks = [e for e in evs if e["ph"] == "i" and e["args"].get("request") == j["id"]]
            tasks = [e for e in evs if e["ph"] in "be" and e.get("id") == j["id"]]
            ok = ok and len(tasks) == 2 and len(toks) > 100 and nesting_errors(evs) == 0
            detail += f" tasks {len(tasks)} token logs {len(toks)}"
        st2, data, _ = srv.request("GET", "/debug/trace/flight")
        fl = json.loads(data) if st2 == 200 else {}
        ok = ok and any(e.get("id") == j["id"] for e in fl.get("traceEvents", []))
        result("trace: flight recorder dumps the slow request and serves the last window", ok, detail)
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_pprof_endpoints(srv):
    go = shutil.which("go")
    stop = time.time() + 4

    def load():
        while time.time() < stop:
            greedy(srv, "Once upon a time", n=30)
    ts = [threading.Thread(target=load) for _ in range(4)]
    for t in ts:
        t.start()
    st, prof, hdrs = srv.request("GET", "/debug/pprof/profile?seconds=2&hz=500", timeout=30)
    st2, heap, _ = srv.request("GET", "/debug/pprof/heap", timeout=30)
    st3, thr, _ = srv.request("GET", "/debug/pprof/threads?debug=2", timeout=30)
    for t in ts:
        t.join()
    ok = st == 200 and prof[:2] == b"\x1f\x8b" and st3 == 200 and b"scheduler" in thr and b"tokenizer-1" in thr
    detail = f"profile {st} {len(prof)} bytes, heap {st2}, threads {st3}"
    if ok and go:
        with tempfile.NamedTemporaryFile(suffix=".pprof") as f:
            f.write(prof)
            f.flush()
            top = subprocess.run([go, "tool", "pprof", "-top", f.name], capture_output=True, text=True, timeout=60)
            foc = subprocess.run([go, "tool", "pprof", "-top", "-tagfocus", "phase=decode", f.name],
                                 capture_output=True, text=True, timeout=60)
            ok = top.returncode == 0 and "Build ID" in top.stdout and re.search(r"llama_decode|forward_worker|mm_", top.stdout)
            ok = ok and foc.returncode == 0 and re.search(r"llama_decode|forward_worker|mm_|matmul", foc.stdout)
            detail += " | " + top.stdout[-400:] + foc.stderr[-200:]
    elif not go:
        detail += " (go missing: scripts/setup.sh installs golang-go)"
        ok = False
    result("pprof: CPU profile under load read by go tool pprof, labels focus on decode; threads dump", bool(ok), detail)


def test_debug_safety(srv):
    p = subprocess.run([os.path.join(BIN, "llm-server"), "-m", MODEL, "--debug-remote"], capture_output=True, text=True,
                       timeout=20)
    ok = p.returncode == 2 and "debug-token" in p.stderr
    out = []

    def cap():
        st, j, h = srv.json("GET", "/debug/trace?seconds=1.5", timeout=30)
        out.append(st)
    ts = [threading.Thread(target=cap) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = ok and sorted(out).count(200) == 4 and sorted(out).count(429) == 2
    st, j, _ = srv.json("GET", "/debug/pprof/profile?seconds=100000")
    st2, j2, _ = srv.json("GET", "/debug/pprof/profile?seconds=1&hz=100000")
    st3, j3, _ = srv.json("GET", "/debug/trace?seconds=61")
    ok = ok and st == 400 and st2 == 400 and st3 == 400
    result("debug safety: remote needs a token, at most 4 captures at once, seconds and hz capped", ok,
           f"exit {p.returncode} {p.stderr.strip()[:100]}; captures {sorted(out)}; caps {st} {st2} {st3}")


def local_ip():
    """A non-loopback address of this machine, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 9))   # no packet is sent: this only picks the outgoing interface
        ip = s.getsockname()[0]
    except OSError:
        ip = None
    finally:
        s.close()
    return None if not ip or ip.startswith("127.") or ip == "0.0.0.0" else ip


def get(host, port, path, headers=None):
    c = http.client.HTTPConnection(host, port, timeout=30)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def test_debug_addr():
    """--debug-addr: a second listener serving /debug/* only; remote clients need the token."""
    p = subprocess.run([os.path.join(BIN, "llm-server"), "-m", MODEL, "--debug-addr", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=20)
    ok = p.returncode == 2 and "debug-token" in p.stderr
    detail = f"no token: exit {p.returncode} {p.stderr.strip()[:120]}"
    dport, token = free_port(), "t0ken-of-sixteen-chars"
    srv = Server("--debug-addr", f"0.0.0.0:{dport}", "--debug-token", token)
    try:
        st1, idx = get("127.0.0.1", dport, "/debug/pprof/")
        st2, body2 = get("127.0.0.1", dport, "/infer?prompt=hi&max_tokens=2")
        st3, _ = get("127.0.0.1", srv.port, "/debug/pprof/")
        ok = ok and st1 == 200 and b"profile" in idx and st2 == 404 and b"error" in body2 and st3 == 200
        ok = ok and f"debug endpoints on http://0.0.0.0:{dport}/debug/" in srv.logtext()
        detail += f"; loopback on debug port {st1}, /infer there {st2}, debug on main port {st3}"
        ip = local_ip()
        if ip:
            st4, b4 = get(ip, dport, "/debug/pprof/")
            st5, _ = get(ip, dport, "/debug/pprof/", {"X-Debug-Token": token})
            st6, _ = get(ip, dport, "/debug/pprof/", {"X-Debug-Token": token[:-1] + "X"})
            ok = ok and st4 == 401 and b"error" in b4 and st5 == 200 and st6 == 401
            detail += f"; from {ip}: no token {st4}, token {st5}, wrong token {st6}"
        else:
            detail += "; no non-loopback address here: the remote half was not exercised"
    finally:
        rc = srv.stop()
    ok = ok and rc == 0
    result("debug: --debug-addr serves /debug/ only, on loopback freely, remotely with the token", ok, detail)


def test_hostile_clients():
    """Hundreds of slow, half-open and reset connections while normal
    clients keep their P99 within 2x of an undisturbed baseline."""
    if os.environ.get("LLMSCOPE_SANITIZER") == "thread":
        # Its P99 bound means nothing at TSan's speed, and a threads dump
        # racing hundreds of exiting threads crashes inside the TSan runtime
        # (plain, ASan and UBSan builds run it).
        print("skip hostile clients: not run under TSan", flush=True)
        return
    srv = Server("--max-conns", "600", "--read-timeout", "5", "--parallel", "4")
    try:
        def p99(n=100):   # with 100 requests the P99 is the second slowest, not the slowest
            lat = []
            for i in range(n):
                t0 = time.time()
                st, j = greedy(srv, PROMPTS[i % len(PROMPTS)], n=8)
                lat.append(time.time() - t0 if st == 200 else 99)
                if st != 200:
                    statuses.append((st, j))
            lat.sort()
            return lat[int(len(lat) * 0.99) - 1 if len(lat) >= 100 else -1], lat
        statuses = []
        p99(8)   # warm-up
        base, _ = p99()
        fds_before = len(os.listdir(f"/proc/{srv.proc.pid}/fd"))
        # The hostile side runs in its own process, so that its 300 sockets
        # and its trickling loop do not share an interpreter (and its lock)
        # with the normal client being timed.
        hostile = subprocess.Popen([sys.executable, os.path.abspath(__file__), "hostile-side", str(srv.port)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = hostile.stdout.readline().split()
        n_socks = int(ready[1]) if len(ready) == 2 and ready[0] == "ready" else 0
        time.sleep(0.3)
        disturbed, lat = p99()
        hostile.stdin.close()   # stop: it closes its sockets and exits
        hostile.wait(timeout=30)
        # Nothing leaks: every connection thread is gone again.
        deadline = time.time() + 10
        while time.time() < deadline:
            st, text, _ = srv.request("GET", "/debug/pprof/threads?debug=2")
            n_http = len(re.findall(rb"http-\d+", text))
            fds_after = len(os.listdir(f"/proc/{srv.proc.pid}/fd"))
            if n_http <= 4 and fds_after <= fds_before + 2:
                break
            time.sleep(0.5)
        ok = n_socks == 300 and hostile.returncode == 0 and disturbed <= 2 * base + 0.05 and max(lat) < 99
        result("hostile clients: 300 slow, half-open and reset connections; normal P99 within 2x of baseline",
               ok, f"baseline p99 {base * 1e3:.1f} ms, disturbed p99 {disturbed * 1e3:.1f} ms, {n_socks} sockets, "
               f"failures {statuses[:3]}")
        result("hostile clients: their connection threads and descriptors end when they go",
               n_http <= 4 and fds_after <= fds_before + 2,
               f"{n_http} http threads still registered, fds {fds_before} before, {fds_after} after")
    finally:
        srv.stop()


def hostile_side(port):
    """The hostile clients of test_hostile_clients, in a process of their
    own: 300 connections (headers a byte at a time, half-open, an answer
    read a byte at a time, a partial body then a reset); prints `ready N`
    once they are open and keeps trickling until stdin closes."""
    socks, stop = [], threading.Event()
    for i in range(300):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            break
        kind = i % 4
        if kind == 0:      # headers one byte at a time
            s.sendall(b"G")
        elif kind == 1:    # half-open: connects, says nothing
            pass
        elif kind == 2:    # a request whose (larger than its buffer) answer it reads a byte at a time
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        else:              # a partial body, then a reset
            s.sendall(b"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"pro")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        socks.append((kind, s))

    def trickle():
        msg = b"ET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        k = 0
        while not stop.is_set() and k < len(msg):
            for kind, s in socks:
                try:
                    if kind == 0:
                        s.send(msg[k:k + 1])
                    elif kind == 2:
                        s.recv(1)
                except OSError:
                    pass
            k += 1
            stop.wait(0.1)
    for kind, s in socks:
        if kind == 3:
            s.close()   # RST
    th = threading.Thread(target=trickle)
    th.start()
    print(f"ready {len(socks)}", flush=True)
    sys.stdin.read()
    stop.set()
    th.join()
    for kind, s in socks:
        try:
            s.close()
        except OSError:
            pass


def main():
    if sys.argv[1:2] == ["hostile-side"]:
        hostile_side(int(sys.argv[2]))
        return
    if sys.argv[1:] == ["hostile"]:   # the slow-client figures for docs/security.md
        global result
        plain = result

        def result(name, ok, detail=""):   # noqa: F811
            plain(name, ok, detail)
            print(f"     {detail}", flush=True)
        test_hostile_clients()
        sys.exit(1 if failed else 0)
    srv = Server("--max-body", "200000", "--parallel", "8")
    try:
        for t in (test_golden_text, test_get_infer_defaults, test_batching_is_exact, test_stream_matches,
                  test_openai_shapes, test_stop_strings, test_tokenize, test_bad_requests, test_metrics,
                  test_curl_stream, test_openai_client, test_hey, test_trace_capture, test_flight_off,
                  test_pprof_endpoints, test_debug_safety):
            try:
                t(srv)
            except Exception as e:   # noqa: BLE001
                result(t.__name__, False, f"{type(e).__name__}: {e}")
        rc = srv.stop()
        # A sanitizer report is in the server's log: show it when the exit says so.
        result("shutdown: idle server exits 0 on SIGTERM", rc == 0,
               f"rc={rc}" + ("" if rc == 0 else "; log:\n" + srv.logtext()[:6000]))
    finally:
        srv.stop()
    for t in (test_kv_type, test_weights_memory, test_auth, test_cancel_frees_slot, test_overload_503, test_idle_connections, test_sigterm_under_load,
              test_flight_recorder, test_hostile_clients, test_conn_limit, test_port_in_use, test_debug_addr):
        try:
            t()
        except Exception as e:   # noqa: BLE001
            result(t.__name__, False, f"{type(e).__name__}: {e}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
