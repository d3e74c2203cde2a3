#!/usr/bin/env python3
"""A test target for `llmscope load`: an HTTP/1.1 server (asyncio, stdlib
only) on 127.0.0.1 with an ephemeral port, with known delays, streams with
known gaps, and a switch that stalls every request for a known time. It
prints "PORT <n>" once listening and serves until killed.

Routes (GET or POST; the query string sets the figures, times in ms):
  /health                      200 "ok\\n"
  /delay?ms=D                  answers after D ms
  /fast?stall_at=K&stall_ms=M  answers at once; the K-th request with this
                               query string stalls the whole server for M ms
  /chunked?n=K                 K chunks of 10 bytes, chunked encoding
  /close                       no Content-Length: the body ends at the close
  /status?code=C               status C
  /flaky?every=K               every K-th request gets its connection closed
  /bad                         a malformed status line
  /sse?n=N&ttft=T&gap=G&style=infer|openai|chat&usage=U
                               N token events, the first after T ms, then one
                               every G ms, then "data: [DONE]"; chat sends a
                               role-only first event; usage=U adds a usage
                               chunk reporting U completion tokens
  /v1/completions, /v1/chat/completions (POST)
                               checks the OpenAI body (model, prompt or
                               messages, max_tokens, stream: true; 400 if
                               not) and streams max_tokens events (ttft, gap
                               from the query, default 5 ms)
  /stats?tag=X                 JSON: distinct connections that carried
                               requests whose query had tag=X
"""
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit, parse_qs

counters = {}
stall_until = 0.0
tags = {}
conn_seq = 0


def q1(q, k, d):
    v = q.get(k)
    return v[0] if v else d


def head(status, extra=b"", length=None, chunked=False, ctype=b"text/plain", close=False):
    h = b"HTTP/1.1 %d X\r\nContent-Type: %s\r\n" % (status, ctype)
    if length is not None:
        h += b"Content-Length: %d\r\n" % length
    if chunked:
        h += b"Transfer-Encoding: chunked\r\n"
    if close:
        h += b"Connection: close\r\n"
    return h + extra + b"\r\n"


def chunk(b):
    return b"%x\r\n%s\r\n" % (len(b), b)


def event(style, i, n):
    if style == "openai":
        d = {"id": "x", "object": "text_completion", "choices": [{"index": 0, "text": " t%d" % i}]}
    elif style == "chat":
        d = {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": " t%d" % i}}]}
    else:
        d = {"token": 100 + i, "text": " t%d" % i}
    return b"data: " + json.dumps(d).encode() + b"\n\n"


async def stream(w, n, ttft, gap, style, usage):
    w.write(head(200, chunked=True, ctype=b"text/event-stream"))
    if style == "chat":
        w.write(chunk(b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'))
    await w.drain()
    # Each gap counts from the previous event's send, so a late event (a
    # loaded machine) only ever adds delay and never shortens the next gap.
    due = time.monotonic() + ttft / 1000.0
    for i in range(n):
        d = due - time.monotonic()
        if d > 0:
            await asyncio.sleep(d)
        w.write(chunk(event(style, i, n)))
        await w.drain()
        due = time.monotonic() + gap / 1000.0
    if usage is not None:
        w.write(chunk(b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":%d}}\n\n' % usage))
    w.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await w.drain()


async def handle(r, w):
    global stall_until, conn_seq
    conn_seq += 1
    cid = conn_seq
    try:
        while True:
            try:
                raw = await r.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = raw.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            hdrs = {}
            for ln in lines[1:]:
                if ":" in ln:
                    k, v = ln.split(":", 1)
                    hdrs[k.strip().lower()] = v.strip()
            body = b""
            if "content-length" in hdrs:
                body = await r.readexactly(int(hdrs["content-length"]))
            client_close = hdrs.get("connection", "").lower() == "close"
            u = urlsplit(target)
            q = parse_qs(u.query)
            path = u.path
            if "tag" in q and path != "/stats":
                tags.setdefault(q1(q, "tag", ""), set()).add(cid)
            key = path + "?" + u.query
            counters[key] = counters.get(key, 0) + 1
            count = counters[key]
            if path == "/fast" and count == int(q1(q, "stall_at", "0")):
                stall_until = time.monotonic() + int(q1(q, "stall_ms", "0")) / 1000.0
            wait = stall_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

            if path in ("/health", "/fast"):
                w.write(head(200, length=3) + b"ok\n")
            elif path == "/delay":
                await asyncio.sleep(int(q1(q, "ms", "0")) / 1000.0)
                w.write(head(200, length=5) + b"done\n")
            elif path == "/chunked":
                out = head(200, chunked=True)
                for i in range(int(q1(q, "n", "3"))):
                    out += chunk(b"0123456789")
                w.write(out + b"0\r\nX-Trailer: 1\r\n\r\n")
            elif path == "/close":
                w.write(head(200, close=True) + b"closing body")
                await w.drain()
                return
            elif path == "/status":
                w.write(head(int(q1(q, "code", "200")), length=0))
            elif path == "/flaky":
                if count % int(q1(q, "every", "3")) == 0:
                    return
                w.write(head(200, length=3) + b"ok\n")
            elif path == "/bad":
                w.write(b"HTTP/1.1 2x0 Broken\r\n\r\n")
                await w.drain()
                return
            elif path == "/sse":
                u_ = q1(q, "usage", None)
                await stream(w, int(q1(q, "n", "5")), float(q1(q, "ttft", "10")), float(q1(q, "gap", "10")),
                             q1(q, "style", "infer"), int(u_) if u_ is not None else None)
            elif path in ("/v1/completions", "/v1/chat/completions"):
                chat = path.endswith("chat/completions")
                try:
                    j = json.loads(body)
                    ok = (isinstance(j.get("model"), str) and j.get("stream") is True
                          and isinstance(j.get("max_tokens"), int) and j["max_tokens"] > 0)
                    if chat:
                        ok = ok and isinstance(j.get("messages"), list) and all(
                            isinstance(m, dict) and "role" in m and "content" in m for m in j["messages"])
                    else:
                        ok = ok and isinstance(j.get("prompt"), str)
                except Exception:
                    ok = False
                if not ok:
                    msg = b'{"error":{"message":"bad request body"}}'
                    w.write(head(400, length=len(msg), ctype=b"application/json") + msg)
                else:
                    u_ = q1(q, "usage", None)
                    await stream(w, j["max_tokens"], float(q1(q, "ttft", "5")), float(q1(q, "gap", "5")),
                                 "chat" if chat else "openai", int(u_) if u_ is not None else None)
            elif path == "/stats":
                msg = json.dumps({"connections": len(tags.get(q1(q, "tag", ""), ()))}).encode()
                w.write(head(200, length=len(msg), ctype=b"application/json") + msg)
            else:
                w.write(head(404, length=0))
            await w.drain()
            if client_close:
                return
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            w.close()
        except Exception:
            pass


async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=512)
    print("PORT", srv.sockets[0].getsockname()[1], flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
