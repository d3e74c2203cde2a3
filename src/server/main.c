// main.c — llm-server: flags, start-up (listen first, answer /health with 503
// while the model loads), and shutdown on SIGTERM/SIGINT (stop accepting,
// let in-flight requests finish until a deadline, cancel the rest, exit 0).
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "http.h"
#include "lab.h"
#include "metrics.h"
#include "model/llama.h"
#include "prof/pmu.h"
#include "prof/pprof.h"
#include "prof/thread.h"
#include "prof/trace.h"
#include "util/util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: llm-server --model FILE [options]\n"
            "  -m, --model FILE        GGUF model (required)\n"
            "  --http-addr ADDR        HOST:PORT to listen on; \":PORT\" = all interfaces (default 127.0.0.1:8080)\n"
            "  -t, --threads N         compute threads (default: all CPUs)\n"
            "  --cpu-affinity LIST     pin compute thread i to the i-th CPU of LIST (e.g. 0-3,6)\n"
            "  --numa MODE             off (default), distribute (threads over nodes) or isolate\n"
            "  --parallel N            sequences decoded together (default 8)\n"
            "  -c, --ctx N             context length per sequence (default: the model's, at most 4096)\n"
            "  --batch N               most tokens in one forward step (default 512)\n"
            "  --kv-type f16|f32       KV cache elements (default f16)\n"
            "  --bw-probe-mib N        at start, measure the memory read bandwidth by streaming N MiB\n"
            "                          (default 256; 0 = do not) into a metric llmscope report uses\n"
            "  --mmap                  map the model file (4 KiB pages) instead of reading it into\n"
            "                          2 MiB transparent huge pages\n"
            "  --prefill-chunk N       most prompt tokens of one sequence per step (default 256)\n"
            "  --tokenizer-threads N   tokenizer workers (default 2)\n"
            "  --max-queue N           requests waiting before 503 (default 64)\n"
            "  --max-body BYTES        largest request body (default 1048576)\n"
            "  --read-timeout S        idle connections are closed after S seconds (default 30)\n"
            "  --max-conns N           open connections at most (default 256)\n"
            "  --api-key KEY           require \"Authorization: Bearer KEY\" (not for /health, /metrics)\n"
            "  --shutdown-timeout S    on SIGTERM, wait this long for in-flight requests (default 10)\n"
            "  --debug-addr HOST:PORT  also serve /debug/* (only) on this address; clients that are\n"
            "                          not on loopback must send X-Debug-Token (a token is required\n"
            "                          unless HOST is a loopback address)\n"
            "  --debug-remote          /debug/* on --http-addr answers non-loopback clients too, when\n"
            "                          they send X-Debug-Token with the --debug-token value (required then)\n"
            "  --debug-token TOKEN     the token remote debug clients must present (16+ characters)\n"
            "  --enable-trace[=B]      keep the execution tracer's flight recorder on (default false)\n"
            "  --trace-window S        how far back /debug/trace/flight reaches (default 10)\n"
            "  --trace-events N        events kept per thread by the tracer (default 32768; 64 bytes each)\n"
            "  --trace-slow-ms MS      with the flight recorder on, a request slower than this writes\n"
            "                          the trace window around it to --trace-dir (default off)\n"
            "  --trace-dir DIR         where slow-request traces go (default .)\n"
            "  --inject NAME           the teaching lab: switch on a known-bad implementation\n"
            "                          (alloc-churn, single-tokenizer, yield-per-token, false-sharing,\n"
            "                          global-lock, slow-clients, heap-growth; docs/diagnose.md)\n");
}

static bool flag(int argc, char **argv, int *i, const char *shortf, const char *longf, const char **val) {
    const char *a = argv[*i];
    size_t ll = strlen(longf);
    if ((shortf && !strcmp(a, shortf)) || !strcmp(a, longf)) {
        if (*i + 1 >= argc) { fprintf(stderr, "llm-server: %s needs a value\n", a); exit(2); }
        *val = argv[++*i];
        return true;
    }
    if (!strncmp(a, longf, ll) && a[ll] == '=') { *val = a + ll + 1; return true; }
    return false;
}

// A numeric loopback address, or "localhost" ("" = all interfaces is not).
static bool loopback_host(const char *h) {
    struct in_addr a4;
    struct in6_addr a6;
    if (!strcmp(h, "localhost")) return true;
    if (inet_pton(AF_INET, h, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, h, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

static int64_t num(const char *flagname, const char *v, int64_t lo, int64_t hi) {
    int64_t x;
    if (!util_parse_i64(v, lo, hi, &x)) {
        fprintf(stderr, "llm-server: bad value for %s: '%s' (want %lld..%lld)\n", flagname, v, (long long)lo, (long long)hi);
        exit(2);
    }
    return x;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *addr = "127.0.0.1:8080", *api_key = NULL, *debug_addr = NULL;
    eng_config ec = {.n_threads = 0, .parallel = 8, .n_ctx = 0, .max_queue = 64, .tok_threads = 2, .n_batch = 512, .prefill_chunk = 256,
                     .bw_probe_mib = 256};
    http_config hc = {.max_conns = 256, .read_timeout_s = 30, .max_body = 1 << 20};
    int64_t shutdown_s = 10, trace_window_s = 10, trace_events = TRACE_DEFAULT_EVENTS;
    bool trace = false, use_mmap = false;
    hc.trace_dir = ".";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--debug-remote")) hc.debug_remote = true;
        else if (!strcmp(argv[i], "--mmap")) use_mmap = true;
        else if (!strcmp(argv[i], "--enable-trace")) trace = true;
        else if (!strncmp(argv[i], "--enable-trace=", 15)) {
            v = argv[i] + 15;
            if (!strcmp(v, "true") || !strcmp(v, "1")) trace = true;
            else if (!strcmp(v, "false") || !strcmp(v, "0")) trace = false;
            else { fprintf(stderr, "llm-server: bad value for --enable-trace: '%s' (true or false)\n", v); return 2; }
        }
        else if (flag(argc, argv, &i, "-m", "--model", &v)) model_path = v;
        else if (flag(argc, argv, &i, NULL, "--http-addr", &v)) addr = v;
        else if (flag(argc, argv, &i, NULL, "--debug-addr", &v)) debug_addr = v;
        else if (flag(argc, argv, &i, "-t", "--threads", &v)) ec.n_threads = (int)num("--threads", v, 1, 1024);
        else if (flag(argc, argv, &i, NULL, "--cpu-affinity", &v)) ec.cpu_affinity = v;
        else if (flag(argc, argv, &i, NULL, "--numa", &v)) ec.numa = v;
        else if (flag(argc, argv, &i, NULL, "--parallel", &v)) ec.parallel = (int)num("--parallel", v, 1, 256);
        else if (flag(argc, argv, &i, "-c", "--ctx", &v)) ec.n_ctx = (int)num("--ctx", v, 8, 1 << 20);
        else if (flag(argc, argv, &i, NULL, "--batch", &v)) ec.n_batch = (int)num("--batch", v, 1, 8192);
        else if (flag(argc, argv, &i, NULL, "--kv-type", &v)) {
            if (!llama_kv_type_parse(v, &ec.kv_type)) { fprintf(stderr, "llm-server: bad value for --kv-type: '%s' (f16 or f32)\n", v); return 2; }
        }
        else if (flag(argc, argv, &i, NULL, "--bw-probe-mib", &v)) ec.bw_probe_mib = (int)num("--bw-probe-mib", v, 0, 1 << 16);
        else if (flag(argc, argv, &i, NULL, "--prefill-chunk", &v)) ec.prefill_chunk = (int)num("--prefill-chunk", v, 1, 8192);
        else if (flag(argc, argv, &i, NULL, "--tokenizer-threads", &v)) ec.tok_threads = (int)num("--tokenizer-threads", v, 1, 64);
        else if (flag(argc, argv, &i, NULL, "--max-queue", &v)) ec.max_queue = (int)num("--max-queue", v, 1, 1 << 20);
        else if (flag(argc, argv, &i, NULL, "--max-body", &v)) hc.max_body = (size_t)num("--max-body", v, 64, 1 << 30);
        else if (flag(argc, argv, &i, NULL, "--read-timeout", &v)) hc.read_timeout_s = (int)num("--read-timeout", v, 1, 86400);
        else if (flag(argc, argv, &i, NULL, "--max-conns", &v)) hc.max_conns = (int)num("--max-conns", v, 1, 100000);
        else if (flag(argc, argv, &i, NULL, "--api-key", &v)) api_key = v;
        else if (flag(argc, argv, &i, NULL, "--debug-token", &v)) hc.debug_token = v;
        else if (flag(argc, argv, &i, NULL, "--shutdown-timeout", &v)) shutdown_s = num("--shutdown-timeout", v, 0, 3600);
        else if (flag(argc, argv, &i, NULL, "--trace-window", &v)) trace_window_s = num("--trace-window", v, 1, 3600);
        else if (flag(argc, argv, &i, NULL, "--trace-events", &v)) trace_events = num("--trace-events", v, 1024, 1 << 24);
        else if (flag(argc, argv, &i, NULL, "--trace-slow-ms", &v)) hc.trace_slow_ms = (int)num("--trace-slow-ms", v, 0, 86400000);
        else if (flag(argc, argv, &i, NULL, "--trace-dir", &v)) hc.trace_dir = v;
        else if (flag(argc, argv, &i, NULL, "--inject", &v)) {
            if (!lab_parse(v, &lab_case)) { fprintf(stderr, "llm-server: unknown --inject '%s' (one of: %s)\n", v, lab_names()); return 2; }
        }
        else { fprintf(stderr, "llm-server: unknown argument '%s'\n", argv[i]); usage(stderr); return 2; }
    }
    if (!model_path) { usage(stderr); return 2; }
    if (hc.debug_remote && (!hc.debug_token || strlen(hc.debug_token) < 16)) {
        fprintf(stderr, "llm-server: --debug-remote needs --debug-token with at least 16 characters\n");
        return 2;
    }
    if (lab_case == LAB_SINGLE_TOKENIZER) ec.tok_threads = 1;
    if (lab_case == LAB_SLOW_CLIENTS) hc.read_timeout_s = 0;   // MHD: no timeout
    lab_install();

    char host[256];
    uint16_t port;
    if (!http_parse_addr(addr, host, sizeof host, &port)) {
        fprintf(stderr, "llm-server: bad --http-addr '%s' (want HOST:PORT or :PORT)\n", addr);
        return 2;
    }
    hc.host = host;
    hc.port = port;
    hc.api_key = api_key;
    char dhost[256];
    if (debug_addr) {
        if (!http_parse_addr(debug_addr, dhost, sizeof dhost, &hc.debug_port)) {
            fprintf(stderr, "llm-server: bad --debug-addr '%s' (want HOST:PORT or :PORT)\n", debug_addr);
            return 2;
        }
        hc.debug_host = dhost;
        if (!loopback_host(dhost) && (!hc.debug_token || strlen(hc.debug_token) < 16)) {
            fprintf(stderr, "llm-server: --debug-addr %s is reachable from other machines: it needs --debug-token "
                            "with at least 16 characters\n", debug_addr);
            return 2;
        }
    }

    // Large blocks (trace dumps, profiles, their JSON) always come from
    // mmap and go back to the system when freed. glibc's default threshold
    // rises after each large free, so later dumps were carved from the
    // serving thread's arena and their pages stayed resident (+10 MB RSS per
    // flight-recorder dump in the soak). Only request bodies near --max-body reach 1 MiB.
    mallopt(M_MMAP_THRESHOLD, 1 << 20);

    // Signals are taken by sigwait() in this thread only.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    // The instruments: profiler signal handlers and recorders, the tracer
    // (on permanently as a flight recorder with --enable-trace), waits on
    // named primitives into the trace.
    prof_status ps = prof_init();
    if (ps != PROF_OK) fprintf(stderr, "llm-server: profiler unavailable: %s\n", prof_strerror(ps));
    pmu_init();
    trace_init((uint32_t)trace_events);
    prof_sync_set_hook(trace_sync_hook);
    if (trace) trace_flight_start((uint64_t)trace_window_s * 1000000000ull);
    prof_thread_register("main", "main");
    met_init();
    char err[512];
    if (!http_start(&hc, err, sizeof err)) { fprintf(stderr, "llm-server: %s\n", err); return 1; }
    port = http_port();
    const char *shown = host[0] ? host : "0.0.0.0";
    fprintf(stderr, "llm-server: listening on http://%s%s%s:%u (loading %s)\n", strchr(shown, ':') ? "[" : "", shown,
            strchr(shown, ':') ? "]" : "", port, model_path);
    if (debug_addr) {
        const char *ds = dhost[0] ? dhost : "0.0.0.0";
        fprintf(stderr, "llm-server: debug endpoints on http://%s%s%s:%u/debug/\n", strchr(ds, ':') ? "[" : "", ds,
                strchr(ds, ':') ? "]" : "", http_debug_port());
    }

    uint64_t t0 = util_now_ns();
    llama_model *m = llama_load_with(model_path, &(llama_load_params){.mmap = use_mmap}, err, sizeof err);
    if (!m) { fprintf(stderr, "llm-server: %s\n", err); http_stop(); return 1; }
    char wmem[160];
    llama_weights_memory(m, wmem, sizeof wmem);
    srv_engine *e = eng_start(&ec, m, err, sizeof err);
    if (!e) { fprintf(stderr, "llm-server: %s\n", err); http_stop(); llama_free(m); return 1; }
    char bw[160];
    if (eng_read_bandwidth(e) > 0)
        snprintf(bw, sizeof bw, "the compute threads read %.1f GB/s (%d MiB streamed at start); a decode step reads %.1f MB of weights",
                 eng_read_bandwidth(e) / 1e9, ec.bw_probe_mib, (double)m->weight_bytes / 1e6);
    else if (ec.bw_probe_mib > 0)
        snprintf(bw, sizeof bw, "read bandwidth not measured (no buffer of %d MiB); a decode step reads %.1f MB of weights",
                 ec.bw_probe_mib, (double)m->weight_bytes / 1e6);
    else
        snprintf(bw, sizeof bw, "read bandwidth not measured (--bw-probe-mib 0); a decode step reads %.1f MB of weights",
                 (double)m->weight_bytes / 1e6);
    const char *base = strrchr(model_path, '/');
    http_set_ready(m, e, base ? base + 1 : model_path);
    char url[300];
    snprintf(url, sizeof url, "http://%s%s%s:%u", strchr(shown, ':') ? "[" : "", host[0] ? host : "127.0.0.1",
             strchr(shown, ':') ? "]" : "", port);
    fprintf(stderr,
            "llm-server: ready in %.0f ms: %s, %d-token context, %d parallel sequences, %s KV cache, %s\n"
            "  weights: %s\n"
            "  memory: %s\n"
            "  try:  curl -s '%s/infer?prompt=Once+upon+a+time&max_tokens=32'\n"
            "        curl -sN %s/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"stream\":true}'\n"
            "        hey -z 30s -q 16 -c 8 %s/infer\n"
            "        curl -s %s/metrics | grep llmscope_\n"
            "        curl -s %s/debug/pprof/threads?debug=2\n"
            "        curl -s '%s/debug/pprof/profile?seconds=10' > cpu.pprof   # go tool pprof cpu.pprof\n"
            "        curl -s '%s/debug/trace?seconds=5' > trace.json          # ui.perfetto.dev\n",
            (double)(util_now_ns() - t0) / 1e6, m->name, eng_n_ctx(e), eng_parallel(e), eng_kv_type(e),
            eng_placement(e), wmem, bw,
            url, url, url, url, url, url, url);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "llm-server: %s: draining (up to %llds)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)shutdown_s);
    http_quiesce();
    eng_stop(e, util_now_ns() + (uint64_t)shutdown_s * 1000000000ull);
    http_stop();
    eng_free(e);
    llama_free(m);
    fprintf(stderr, "llm-server: stopped\n");
    return 0;
}
