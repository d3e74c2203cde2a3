// cmd_load.c — `llmscope load`: a load generator with hey's flags and report,
// an open-loop mode that corrects for coordinated omission (wrk2), and the
// LLM serving metrics of vLLM's benchmark (TTFT, TPOT, ITL, goodput) for
// streamed responses. This file reads the flags and the prompt file, builds
// the requests and prints the reports; load.c runs the load.
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "load.h"
#include "tools.h"
#include "util/util.h"

#define BODY_MAX (64u << 20)          // -D and --prompts files (bytes)
#define PROMPTS_MAX 1000000           // prompt lines
#define HEADERS_MAX 64                // -H flags

static void load_usage(FILE *f) {
    fprintf(f,
"usage: llmscope load [flags] http://host[:port]/path\n"
"\n"
"hey's flags, with hey's meaning:\n"
"  -n N        requests to run (default 200); each of the -c workers runs n/c\n"
"  -c N        workers running concurrently (default 50)\n"
"  -q QPS      rate limit per worker, in requests per second (default none)\n"
"  -z D        run for this long, then stop (Go duration: 30s, 1m, 1m30s, 500ms); overrides -n\n"
"  -o csv      print one CSV line per request instead of the summary\n"
"  -m METHOD   GET, POST, PUT, DELETE, HEAD, OPTIONS, PATCH (default GET; POST with --openai)\n"
"  -H 'K: V'   a request header (repeatable)\n"
"  -t S        timeout of each request in seconds (default 20; 0 = none)\n"
"  -A V        Accept header;  -a user:pass  basic authentication;  -U V  User-Agent\n"
"  -d BODY     request body;  -D FILE  request body from a file;  -T TYPE  Content-Type (default text/html)\n"
"  -host NAME  the Host header\n"
"  -disable-keepalive   a new connection for every request\n"
"  -disable-compression, -disable-redirects, -cpus N   accepted for compatibility (no effect)\n"
"\n"
"open loop (latency counted from each request's intended send time, so a stalled\n"
"server is not hidden; hey's closed loop counts from the actual send):\n"
"  --rate R              R arrivals per second in total, whatever the server does\n"
"  --arrival KIND        constant (default) or poisson\n"
"  --seed N              random seed of the poisson arrivals (default 1)\n"
"\n"
"LLM serving metrics (vLLM's benchmark definitions):\n"
"  --stream              read the response as server-sent events: TTFT, TPOT, ITL, E2E, tokens/s\n"
"  --openai completions|chat   send OpenAI request bodies (implies --stream and POST)\n"
"  --model NAME          the body's \"model\" (default \"default\")\n"
"  --max-tokens N        the body's \"max_tokens\" (default 128)\n"
"  --prompts FILE        JSONL, one {\"prompt\": ...} or {\"messages\": [...]} a line, cycled through;\n"
"                        without --openai each line is sent as the body as it is\n"
"  --slo-ttft MS, --slo-tpot MS, --slo-e2e MS   goodput: requests/s within every bound given\n"
"\n"
"output:\n"
"  --json                every figure as one JSON object on stdout (schema: docs/load.md)\n"
"\n"
"Only http:// URLs are supported (no TLS). A live progress line goes to stderr when it\n"
"is a terminal. Exit status: 0 done, 1 runtime failure, 2 usage error.\n");
}

// Matches Go-flag style -name, --name, -name=V, --name=V. For a flag that
// takes a value (val != NULL), stores it and advances *i; *missing when absent.
static bool flag(int argc, char **argv, int *i, const char *name, const char **val, bool *missing) {
    const char *a = argv[*i];
    if (a[0] != '-') return false;
    a += a[1] == '-' ? 2 : 1;
    size_t k = strlen(name);
    if (strncmp(a, name, k)) return false;
    if (a[k] == '=') {
        if (!val) return false;
        *val = a + k + 1;
        return true;
    }
    if (a[k]) return false;
    if (!val) return true;
    if (*i + 1 >= argc) { *missing = true; return true; }
    *val = argv[++*i];
    return true;
}

// Go's time.ParseDuration for the units hey users write: "30s", "1m30s",
// "500ms", "1.5h", "100us". Bounded: at most 16 parts; result in ns.
static bool parse_duration(const char *s, uint64_t *out) {
    double total = 0;
    int parts = 0;
    if (!s || !*s) return false;
    if (!strcmp(s, "0")) { *out = 0; return true; }
    while (*s) {
        if (++parts > 16) return false;
        char *end;
        errno = 0;
        if (!((*s >= '0' && *s <= '9') || *s == '.')) return false;
        double v = strtod(s, &end);
        if (end == s || errno || !(v >= 0)) return false;
        s = end;
        double unit;
        if (!strncmp(s, "ns", 2)) { unit = 1; s += 2; }
        else if (!strncmp(s, "us", 2)) { unit = 1e3; s += 2; }
        else if (!strncmp(s, "\xc2\xb5s", 3)) { unit = 1e3; s += 3; }
        else if (!strncmp(s, "ms", 2)) { unit = 1e6; s += 2; }
        else if (*s == 's') { unit = 1e9; s++; }
        else if (*s == 'm') { unit = 60e9; s++; }
        else if (*s == 'h') { unit = 3600e9; s++; }
        else return false;
        total += v * unit;
        if (total > 1e9 * 86400 * 365) return false;
    }
    *out = (uint64_t)total;
    return true;
}

static char *read_file(const char *path, size_t *len, const char **why) {
    FILE *f = fopen(path, "rb");
    if (!f) { *why = strerror(errno); return NULL; }
    size_t cap = 4096, n = 0;
    char *p = malloc(cap);
    while (p) {
        if (n + 1 >= cap) {
            if (cap >= BODY_MAX + 1) { free(p); p = NULL; *why = "larger than 64 MiB"; break; }
            size_t nc = cap * 2 > BODY_MAX + 1 ? BODY_MAX + 1 : cap * 2;
            char *q = realloc(p, nc);
            if (!q) { free(p); p = NULL; *why = "out of memory"; break; }
            p = q; cap = nc;
        }
        size_t k = fread(p + n, 1, cap - n - 1, f);
        n += k;
        if (!k) {
            if (ferror(f)) { free(p); p = NULL; *why = strerror(errno); }
            break;
        }
    }
    if (!p && !*why) *why = "out of memory";
    fclose(f);
    if (p) { p[n] = 0; *len = n; }
    return p;
}

// A header value or URL part that would break the request framing.
static bool has_ctl(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 && *s != '\t') return true;
    return false;
}

typedef struct url_parts {
    char host[256];       // as written (without brackets for IPv6)
    char port[8];
    char hostport[272];   // for the Host header
    char *path;           // the request target: "/..." with the query, no fragment (malloc'd)
} url_parts;

static bool parse_url(const char *u, url_parts *p, const char **why) {
    if (!strncasecmp(u, "https://", 8)) { *why = "https is not supported: only http:// URLs (no TLS)"; return false; }
    if (strncasecmp(u, "http://", 7)) { *why = "the URL must start with http://"; return false; }
    if (has_ctl(u) || strchr(u, ' ')) { *why = "the URL contains spaces or control characters"; return false; }
    const char *h = u + 7, *hend, *rest;
    if (*h == '[') {
        hend = strchr(h, ']');
        if (!hend) { *why = "unterminated [IPv6] host"; return false; }
        rest = hend + 1;
        h++;
    } else {
        hend = h + strcspn(h, ":/?#");
        rest = hend;
    }
    size_t hl = (size_t)(hend - h);
    if (!hl || hl >= sizeof p->host) { *why = "bad host in the URL"; return false; }
    if (memchr(h, '@', hl)) { *why = "user:password@ in the URL is not supported (use -a)"; return false; }
    memcpy(p->host, h, hl);
    p->host[hl] = 0;
    snprintf(p->port, sizeof p->port, "80");
    if (*rest == ':') {
        rest++;
        size_t pl = strspn(rest, "0123456789");
        int64_t port;
        char tmp[8] = {0};
        if (!pl || pl > 5) { *why = "bad port in the URL"; return false; }
        memcpy(tmp, rest, pl);
        if (!util_parse_i64(tmp, 1, 65535, &port)) { *why = "bad port in the URL"; return false; }
        snprintf(p->port, sizeof p->port, "%d", (int)port);
        rest += pl;
    }
    if (*rest && *rest != '/' && *rest != '?' && *rest != '#') { *why = "bad URL"; return false; }
    size_t rl = strcspn(rest, "#");
    p->path = malloc(rl + 2);
    if (!p->path) { *why = "out of memory"; return false; }
    snprintf(p->path, rl + 2, "%s%.*s", *rest == '/' ? "" : "/", (int)rl, rest);
    bool v6 = strchr(p->host, ':') != NULL;
    if (!strcmp(p->port, "80")) snprintf(p->hostport, sizeof p->hostport, v6 ? "[%s]" : "%s", p->host);
    else snprintf(p->hostport, sizeof p->hostport, v6 ? "[%s]:%s" : "%s:%s", p->host, p->port);
    return true;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static void base64(const char *in, char *out, size_t outlen) {
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n && o + 5 < outlen; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)in[i] << 16;
        if (i + 1 < n) v |= (uint32_t)(unsigned char)in[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)in[i + 2];
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = 0;
}

// A growing byte buffer for building requests.
typedef struct sbuf { char *p; size_t n, cap; bool oom; } sbuf;
static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 512;
        while (nc < b->n + n + 1) nc *= 2;
        char *q = realloc(b->p, nc);
        if (!q) { b->oom = true; return; }
        b->p = q; b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

typedef struct opts {
    int64_t n, c;
    double q, rate;
    uint64_t z_ns, t_ns;
    const char *method, *body, *body_file, *ctype, *accept, *auth, *ua, *host_hdr, *output;
    const char *headers[HEADERS_MAX];
    int n_headers;
    bool keepalive, stream, json, poisson, n_given;
    int64_t seed, max_tokens;
    const char *openai, *model, *prompts;
    double slo_ttft, slo_tpot, slo_e2e;
    const char *url;
} opts;

// Builds the request head (everything before the body) for a body of len bytes.
static bool build_request(const opts *o, const url_parts *u, const char *path, const char *body, size_t len, load_req *out) {
    sbuf b = {0};
    char line[512];
    sb_str(&b, o->method); sb_str(&b, " "); sb_str(&b, path); sb_str(&b, " HTTP/1.1\r\n");
    bool has_host = o->host_hdr != NULL;
    for (int i = 0; i < o->n_headers; i++)
        if (!strncasecmp(o->headers[i], "host:", 5)) has_host = true;
    if (!has_host) { sb_str(&b, "Host: "); sb_str(&b, u->hostport); sb_str(&b, "\r\n"); }
    else if (o->host_hdr) { sb_str(&b, "Host: "); sb_str(&b, o->host_hdr); sb_str(&b, "\r\n"); }
    sb_str(&b, "User-Agent: "); sb_str(&b, o->ua ? o->ua : "llmscope-load/1"); sb_str(&b, "\r\n");
    if (o->accept) { sb_str(&b, "Accept: "); sb_str(&b, o->accept); sb_str(&b, "\r\n"); }
    else if (o->stream) sb_str(&b, "Accept: text/event-stream\r\n");
    if (o->auth) {
        char enc[1400];
        base64(o->auth, enc, sizeof enc);
        sb_str(&b, "Authorization: Basic "); sb_str(&b, enc); sb_str(&b, "\r\n");
    }
    bool bodyful = len || !strcmp(o->method, "POST") || !strcmp(o->method, "PUT") || !strcmp(o->method, "PATCH");
    if (bodyful) {
        sb_str(&b, "Content-Type: "); sb_str(&b, o->ctype); sb_str(&b, "\r\n");
        snprintf(line, sizeof line, "Content-Length: %zu\r\n", len);
        sb_str(&b, line);
    }
    if (!o->keepalive) sb_str(&b, "Connection: close\r\n");
    for (int i = 0; i < o->n_headers; i++) { sb_str(&b, o->headers[i]); sb_str(&b, "\r\n"); }
    sb_str(&b, "\r\n");
    sb_add(&b, body, len);
    if (b.oom) { free(b.p); return false; }
    out->buf = b.p;
    out->len = b.n;
    return true;
}

// The body of one OpenAI request for a prompt (string) or messages (array).
static char *openai_body(const opts *o, json_t *prompt, json_t *messages) {
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(o->model));
    if (!strcmp(o->openai, "chat")) {
        if (messages) json_object_set(j, "messages", messages);
        else {
            json_t *m = json_object();
            json_object_set_new(m, "role", json_string("user"));
            json_object_set(m, "content", prompt);
            json_t *a = json_array();
            json_array_append_new(a, m);
            json_object_set_new(j, "messages", a);
        }
    } else {
        json_object_set(j, "prompt", prompt);
    }
    json_object_set_new(j, "max_tokens", json_integer(o->max_tokens));
    json_object_set_new(j, "stream", json_true());
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    return s;
}

// Reads --prompts and builds one request per line. Returns the count, or -1
// with a one-line message naming the file and line.
static int64_t load_prompts(const opts *o, const url_parts *u, const char *path, load_req **out, char *err, size_t errlen) {
    size_t len = 0;
    const char *why = NULL;
    char *text = read_file(o->prompts, &len, &why);
    if (!text) { snprintf(err, errlen, "%s: %s", o->prompts, why); return -1; }
    load_req *reqs = NULL;
    int64_t n = 0, cap = 0, lineno = 0;
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        lineno++;
        char *s = p;
        p = nl ? nl + 1 : end;
        size_t sl = (size_t)(le - s);
        while (sl && (s[sl - 1] == '\r' || s[sl - 1] == ' ' || s[sl - 1] == '\t')) sl--;
        while (sl && (*s == ' ' || *s == '\t')) { s++; sl--; }
        if (!sl) continue;
        if (n >= PROMPTS_MAX) { snprintf(err, errlen, "%s: more than %d prompts", o->prompts, PROMPTS_MAX); goto fail; }
        json_error_t je;
        json_t *j = json_loadb(s, sl, 0, &je);
        if (!json_is_object(j)) {
            snprintf(err, errlen, "%s:%lld: not a JSON object (%s)", o->prompts, (long long)lineno, j ? "other JSON value" : je.text);
            json_decref(j);
            goto fail;
        }
        json_t *pr = json_object_get(j, "prompt"), *ms = json_object_get(j, "messages");
        if (!json_is_string(pr)) pr = NULL;
        if (!json_is_array(ms)) ms = NULL;
        if (!pr && !ms) {
            snprintf(err, errlen, "%s:%lld: no \"prompt\" string or \"messages\" array", o->prompts, (long long)lineno);
            json_decref(j);
            goto fail;
        }
        char *body = NULL;
        if (o->openai) {
            if (!strcmp(o->openai, "completions") && !pr) {
                snprintf(err, errlen, "%s:%lld: --openai completions needs a \"prompt\"", o->prompts, (long long)lineno);
                json_decref(j);
                goto fail;
            }
            body = openai_body(o, pr, ms);
        } else {
            body = malloc(sl + 1);
            if (body) { memcpy(body, s, sl); body[sl] = 0; }
        }
        json_decref(j);
        if (n == cap) {
            int64_t nc = cap ? cap * 2 : 64;
            load_req *q = realloc(reqs, (size_t)nc * sizeof *q);
            if (!q) { free(body); body = NULL; }
            else { reqs = q; cap = nc; }
        }
        if (!body || !build_request(o, u, path, body, strlen(body), &reqs[n])) {
            free(body);
            snprintf(err, errlen, "%s: out of memory", o->prompts);
            goto fail;
        }
        free(body);
        n++;
    }
    free(text);
    if (!n) { snprintf(err, errlen, "%s: no prompts", o->prompts); free(reqs); return -1; }
    *out = reqs;
    return n;
fail:
    for (int64_t i = 0; i < n; i++) free(reqs[i].buf);
    free(reqs);
    free(text);
    return -1;
}

// One blocking connect before the run, so an unreachable target is one error
// line rather than a report full of identical errors.
static bool preflight(const load_cfg *cfg, uint64_t timeout_ns, char *err, size_t errlen) {
    int fd = socket(cfg->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { snprintf(err, errlen, "socket: %s", strerror(errno)); return false; }
    int rc = connect(fd, (const struct sockaddr *)&cfg->addr, cfg->addrlen);
    int soerr = rc ? errno : 0;
    if (rc && errno == EINPROGRESS) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        int ms = timeout_ns && timeout_ns < 5000000000ull ? (int)(timeout_ns / 1000000) : 5000;
        int k = poll(&pf, 1, ms);
        socklen_t sl = sizeof soerr;
        if (k == 0) soerr = ETIMEDOUT;
        else if (k < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl)) soerr = errno;
    }
    close(fd);
    if (soerr) snprintf(err, errlen, "%s", strerror(soerr));
    return !soerr;
}

// --- reports ----------------------------------------------------------------

static const double PCTS[] = {10, 25, 50, 75, 90, 95, 99, 99.9};
#define NPCT (sizeof PCTS / sizeof PCTS[0])

static double sec(uint64_t ns) { return (double)ns / 1e9; }
static double ms(double ns) { return ns / 1e6; }

static void print_latency(const hdr_hist *h) {
    for (size_t i = 0; i < NPCT; i++) {
        if (PCTS[i] == 99.9) printf("  99.9%% in %.4f secs\n", sec(hdr_percentile(h, PCTS[i])));
        else printf("  %d%% in %.4f secs\n", (int)PCTS[i], sec(hdr_percentile(h, PCTS[i])));
    }
}

static void print_histogram(const hdr_hist *h) {
    // hey: 10 equal buckets from fastest to slowest, each counting the values
    // up to its mark, bars scaled to 40 characters.
    double lo = sec(hdr_min(h)), hi = sec(hdr_max(h)), bs = (hi - lo) / 10;
    uint64_t counts[11], prev = 0, max = 0;
    double marks[11];
    for (int i = 0; i <= 10; i++) {
        marks[i] = i < 10 ? lo + bs * i : hi;
        uint64_t le = i < 10 ? hdr_count_le(h, (uint64_t)(marks[i] * 1e9 + 0.5)) : hdr_count(h);
        counts[i] = le - prev;
        prev = le;
        if (counts[i] > max) max = counts[i];
    }
    for (int i = 0; i <= 10; i++) {
        int bar = max ? (int)((counts[i] * 40 + max / 2) / max) : 0;
        printf("  %4.3f [%llu]\t|", marks[i], (unsigned long long)counts[i]);
        for (int k = 0; k < bar; k++) fputs("\xe2\x96\xa0", stdout);   // U+25A0, as hey draws it
        putchar('\n');
    }
}

static void print_detail(const char *name, const load_stat *s) {
    printf("  %s\t%.4f secs, %.4f secs, %.4f secs\n", name, s->n ? sec((uint64_t)(s->sum / (double)s->n)) : 0.0,
           sec(s->min), sec(s->max));
}

static int cmp_err(const void *a, const void *b) {
    return strcmp(((const char *)a), ((const char *)b));
}

static void print_llm_dist(const char *title, const char *abbr, const hdr_hist *h) {
    int pad = (50 - (int)strlen(title)) / 2;
    printf("%.*s%s%.*s\n", pad, "--------------------------------------------------", title,
           50 - pad - (int)strlen(title), "--------------------------------------------------");
    char k[64];
    snprintf(k, sizeof k, "Mean %s (ms):", abbr);   printf("%-40s %-10.2f\n", k, ms(hdr_mean(h)));
    snprintf(k, sizeof k, "Median %s (ms):", abbr); printf("%-40s %-10.2f\n", k, ms((double)hdr_percentile(h, 50)));
    snprintf(k, sizeof k, "P90 %s (ms):", abbr);    printf("%-40s %-10.2f\n", k, ms((double)hdr_percentile(h, 90)));
    snprintf(k, sizeof k, "P99 %s (ms):", abbr);    printf("%-40s %-10.2f\n", k, ms((double)hdr_percentile(h, 99)));
}

static void print_text(const opts *o, const load_cfg *cfg, load_result *r) {
    double total = sec(r->total_ns);
    const hdr_hist *h = r->lat;
    printf("\nSummary:\n");
    printf("  Total:\t%.4f secs\n", total);
    printf("  Slowest:\t%.4f secs\n", sec(hdr_max(h)));
    printf("  Fastest:\t%.4f secs\n", sec(hdr_min(h)));
    printf("  Average:\t%.4f secs\n", hdr_mean(h) / 1e9);
    printf("  Requests/sec:\t%.4f\n", total > 0 ? (double)r->n_resp / total : 0.0);
    printf("  \n");
    if (r->bytes > 0) {
        printf("  Total data:\t%llu bytes\n", (unsigned long long)r->bytes);
        printf("  Size/request:\t%llu bytes\n", (unsigned long long)(r->n_resp ? r->bytes / r->n_resp : 0));
    }
    printf("\nResponse time histogram:\n");
    print_histogram(h);
    printf("\n\nLatency distribution:\n");
    print_latency(h);
    if (cfg->rate > 0) {
        printf("\nOpen loop: %.4g arrivals/s (%s); the latencies above count from each request's intended\n"
               "send time. Counted from the actual send time (what a closed loop would report):\n",
               cfg->rate, cfg->poisson ? "poisson" : "constant");
        print_latency(r->lat_sent);
    }
    printf("\nDetails (average, fastest, slowest):\n");
    print_detail("DNS+dialup:", &r->conn);
    load_stat zero = {0};
    print_detail("DNS-lookup:", &zero);
    print_detail("req write:", &r->write);
    print_detail("resp wait:", &r->wait);
    print_detail("resp read:", &r->read);
    printf("\nStatus code distribution:\n");
    for (int s = 0; s < 1000; s++)
        if (r->status[s]) printf("  [%d]\t%llu responses\n", s, (unsigned long long)r->status[s]);
    if (r->n_err_kinds || r->err_other) {
        qsort(r->err, (size_t)r->n_err_kinds, sizeof r->err[0], cmp_err);
        printf("\nError distribution:\n");
        for (int i = 0; i < r->n_err_kinds; i++) printf("  [%llu]\t%s\n", (unsigned long long)r->err[i].n, r->err[i].msg);
        if (r->err_other) printf("  [%llu]\tother errors\n", (unsigned long long)r->err_other);
    }
    if (r->interrupted) printf("\nInterrupted: %llu arrivals never sent.\n", (unsigned long long)r->n_unsent);
    if (cfg->stream) {
        printf("\n============ Serving Benchmark Result ============\n");
        printf("%-40s %-10llu\n", "Successful requests:", (unsigned long long)r->llm_ok);
        printf("%-40s %-10llu\n", "Failed requests:", (unsigned long long)r->llm_fail);
        printf("%-40s %-10.2f\n", "Benchmark duration (s):", total);
        printf("%-40s %-10llu\n", "Total generated tokens:", (unsigned long long)r->out_tokens);
        printf("%-40s %-10.2f\n", "Request throughput (req/s):", total > 0 ? (double)r->llm_ok / total : 0.0);
        if (o->slo_ttft > 0 || o->slo_tpot > 0 || o->slo_e2e > 0)
            printf("%-40s %-10.2f\n", "Request goodput (req/s):", total > 0 ? (double)r->llm_good / total : 0.0);
        printf("%-40s %-10.2f\n", "Output token throughput (tok/s):", total > 0 ? (double)r->out_tokens / total : 0.0);
        print_llm_dist("Time to First Token", "TTFT", r->ttft);
        print_llm_dist("Time per Output Token (excl. 1st token)", "TPOT", r->tpot);
        print_llm_dist("Inter-token Latency", "ITL", r->itl);
        print_llm_dist("End-to-end Latency", "E2EL", r->e2e);
        printf("==================================================\n");
    }
}

static void print_csv(load_result *r) {
    printf("response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset\n");
    for (uint64_t i = 0; i < r->n_rec; i++) {
        const load_record *x = &r->rec[i];
        printf("%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%d,%.4f\n", x->total, x->conn, 0.0, x->write, x->wait, x->read,
               x->status, x->offset);
    }
}

static json_t *jnum(double v) { return json_real(isfinite(v) ? v : 0.0); }

// A distribution in milliseconds.
static json_t *dist_json(const hdr_hist *h) {
    json_t *d = json_object();
    json_object_set_new(d, "count", json_integer((json_int_t)hdr_count(h)));
    json_object_set_new(d, "mean", jnum(ms(hdr_mean(h))));
    json_object_set_new(d, "std", jnum(ms(hdr_stddev(h))));
    json_object_set_new(d, "min", jnum(ms((double)hdr_min(h))));
    json_object_set_new(d, "max", jnum(ms((double)hdr_max(h))));
    static const char *names[] = {"p10", "p25", "p50", "p75", "p90", "p95", "p99", "p99_9"};
    for (size_t i = 0; i < NPCT; i++) json_object_set_new(d, names[i], jnum(ms((double)hdr_percentile(h, PCTS[i]))));
    return d;
}

static json_t *stat_json(const load_stat *s) {
    json_t *d = json_object();
    json_object_set_new(d, "mean", jnum(s->n ? ms(s->sum / (double)s->n) : 0.0));
    json_object_set_new(d, "min", jnum(ms((double)s->min)));
    json_object_set_new(d, "max", jnum(ms((double)s->max)));
    return d;
}

static void print_json(const opts *o, const load_cfg *cfg, load_result *r) {
    double total = sec(r->total_ns);
    json_t *j = json_object();
    json_object_set_new(j, "tool", json_string("llmscope load"));
    json_object_set_new(j, "schema", json_integer(1));
    json_t *c = json_object();
    json_object_set_new(c, "url", json_string(o->url));
    json_object_set_new(c, "method", json_string(o->method));
    json_object_set_new(c, "requests", json_integer(cfg->n));
    json_object_set_new(c, "concurrency", json_integer(cfg->c));
    json_object_set_new(c, "qps_per_worker", jnum(cfg->qps));
    json_object_set_new(c, "duration_s", jnum(sec(cfg->duration_ns)));
    json_object_set_new(c, "timeout_s", jnum(sec(cfg->timeout_ns)));
    json_object_set_new(c, "keepalive", json_boolean(cfg->keepalive));
    json_object_set_new(c, "mode", json_string(cfg->rate > 0 ? "open" : "closed"));
    json_object_set_new(c, "rate", jnum(cfg->rate));
    json_object_set_new(c, "arrival", cfg->rate > 0 ? json_string(cfg->poisson ? "poisson" : "constant") : json_null());
    json_object_set_new(c, "stream", json_boolean(cfg->stream));
    json_object_set_new(c, "openai", o->openai ? json_string(o->openai) : json_null());
    json_object_set_new(c, "max_tokens", o->openai ? json_integer(o->max_tokens) : json_null());
    json_object_set_new(c, "prompts", o->prompts ? json_string(o->prompts) : json_null());
    json_object_set_new(j, "config", c);

    json_t *s = json_object();
    json_object_set_new(s, "total_s", jnum(total));
    json_object_set_new(s, "slowest_s", jnum(sec(hdr_max(r->lat))));
    json_object_set_new(s, "fastest_s", jnum(sec(hdr_min(r->lat))));
    json_object_set_new(s, "average_s", jnum(hdr_mean(r->lat) / 1e9));
    json_object_set_new(s, "requests_per_sec", jnum(total > 0 ? (double)r->n_resp / total : 0));
    json_object_set_new(s, "responses", json_integer((json_int_t)r->n_resp));
    json_object_set_new(s, "errors", json_integer((json_int_t)r->n_err));
    json_object_set_new(s, "total_bytes", json_integer((json_int_t)r->bytes));
    json_object_set_new(s, "bytes_per_request", json_integer((json_int_t)(r->n_resp ? r->bytes / r->n_resp : 0)));
    json_object_set_new(s, "interrupted", json_boolean(r->interrupted));
    json_object_set_new(s, "unsent", json_integer((json_int_t)r->n_unsent));
    json_object_set_new(j, "summary", s);

    json_t *hist = json_array();
    double lo = sec(hdr_min(r->lat)), hi = sec(hdr_max(r->lat)), bs = (hi - lo) / 10;
    uint64_t prev = 0;
    for (int i = 0; i <= 10; i++) {
        double mark = i < 10 ? lo + bs * i : hi;
        uint64_t le = i < 10 ? hdr_count_le(r->lat, (uint64_t)(mark * 1e9 + 0.5)) : hdr_count(r->lat);
        json_t *b = json_object();
        json_object_set_new(b, "mark_s", jnum(mark));
        json_object_set_new(b, "count", json_integer((json_int_t)(le - prev)));
        json_array_append_new(hist, b);
        prev = le;
    }
    json_object_set_new(j, "histogram", hist);
    json_object_set_new(j, "latency_ms", dist_json(r->lat));
    json_object_set_new(j, "latency_uncorrected_ms", cfg->rate > 0 ? dist_json(r->lat_sent) : json_null());
    json_t *d = json_object();
    json_object_set_new(d, "dialup", stat_json(&r->conn));
    json_object_set_new(d, "req_write", stat_json(&r->write));
    json_object_set_new(d, "resp_wait", stat_json(&r->wait));
    json_object_set_new(d, "resp_read", stat_json(&r->read));
    json_object_set_new(j, "details_ms", d);
    json_t *st = json_object();
    for (int k = 0; k < 1000; k++)
        if (r->status[k]) {
            char key[16];
            snprintf(key, sizeof key, "%d", k);
            json_object_set_new(st, key, json_integer((json_int_t)r->status[k]));
        }
    json_object_set_new(j, "status_codes", st);
    json_t *er = json_object();
    for (int k = 0; k < r->n_err_kinds; k++) json_object_set_new(er, r->err[k].msg, json_integer((json_int_t)r->err[k].n));
    if (r->err_other) json_object_set_new(er, "other errors", json_integer((json_int_t)r->err_other));
    json_object_set_new(j, "errors", er);

    if (cfg->stream) {
        json_t *l = json_object();
        json_object_set_new(l, "completed", json_integer((json_int_t)r->llm_ok));
        json_object_set_new(l, "failed", json_integer((json_int_t)r->llm_fail));
        json_object_set_new(l, "duration_s", jnum(total));
        json_object_set_new(l, "output_tokens", json_integer((json_int_t)r->out_tokens));
        json_object_set_new(l, "request_throughput", jnum(total > 0 ? (double)r->llm_ok / total : 0));
        json_object_set_new(l, "output_throughput", jnum(total > 0 ? (double)r->out_tokens / total : 0));
        bool slo = o->slo_ttft > 0 || o->slo_tpot > 0 || o->slo_e2e > 0;
        json_object_set_new(l, "goodput", slo ? jnum(total > 0 ? (double)r->llm_good / total : 0) : json_null());
        json_object_set_new(l, "good_requests", slo ? json_integer((json_int_t)r->llm_good) : json_null());
        json_t *sl = json_object();
        json_object_set_new(sl, "ttft_ms", o->slo_ttft > 0 ? jnum(o->slo_ttft) : json_null());
        json_object_set_new(sl, "tpot_ms", o->slo_tpot > 0 ? jnum(o->slo_tpot) : json_null());
        json_object_set_new(sl, "e2e_ms", o->slo_e2e > 0 ? jnum(o->slo_e2e) : json_null());
        json_object_set_new(l, "slo", sl);
        json_object_set_new(l, "ttft_ms", dist_json(r->ttft));
        json_object_set_new(l, "tpot_ms", dist_json(r->tpot));
        json_object_set_new(l, "itl_ms", dist_json(r->itl));
        json_object_set_new(l, "e2el_ms", dist_json(r->e2e));
        json_object_set_new(j, "llm", l);
    } else {
        json_object_set_new(j, "llm", json_null());
    }
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(j);
}

// --- the command ------------------------------------------------------------

static int cmd_load_run(opts *op, url_parts *up);

static int usage_err(const char *fmt, const char *a) {
    fprintf(stderr, "llmscope load: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n(see 'llmscope load --help')\n");
    return 2;
}

int cmd_load(int argc, char **argv) {
    opts o = {.n = 200, .c = 50, .t_ns = 20000000000ull, .ctype = NULL, .keepalive = true,
              .seed = 1, .max_tokens = 128, .model = "default"};
    for (int i = 1; i < argc; i++) {
        const char *v = NULL, *a = argv[i];
        bool miss = false;
        if (!strcmp(a, "-h") || !strcmp(a, "--help") || !strcmp(a, "-help")) { load_usage(stdout); return 0; }
        if (a[0] != '-' || !a[1]) {
            if (o.url) return usage_err("more than one URL given ('%s')", a);
            o.url = a;
            continue;
        }
        if (flag(argc, argv, &i, "n", &v, &miss)) {
            if (!miss && !util_parse_i64(v, 1, INT64_C(1) << 40, &o.n)) return usage_err("bad value '%s' for -n (a number of requests >= 1)", v);
            o.n_given = true;
        } else if (flag(argc, argv, &i, "c", &v, &miss)) {
            if (!miss && !util_parse_i64(v, 1, 10000, &o.c)) return usage_err("bad value '%s' for -c (1..10000 workers)", v);
        } else if (flag(argc, argv, &i, "q", &v, &miss)) {
            if (!miss && !util_parse_f64(v, 0, 1e7, &o.q)) return usage_err("bad value '%s' for -q (requests/s per worker)", v);
        } else if (flag(argc, argv, &i, "z", &v, &miss)) {
            if (!miss && (!parse_duration(v, &o.z_ns) || !o.z_ns)) return usage_err("bad value '%s' for -z (a duration like 10s, 1m, 500ms)", v);
        } else if (flag(argc, argv, &i, "t", &v, &miss)) {
            double t;
            if (!miss && !util_parse_f64(v, 0, 86400, &t)) return usage_err("bad value '%s' for -t (seconds)", v);
            if (!miss) o.t_ns = (uint64_t)(t * 1e9);
        } else if (flag(argc, argv, &i, "m", &v, &miss)) o.method = v;
        else if (flag(argc, argv, &i, "H", &v, &miss)) {
            if (miss) return usage_err("%s needs a value", a);
            if (o.n_headers >= HEADERS_MAX) return usage_err("too many -H headers (at most %s)", "64");
            const char *colon = strchr(v, ':');
            if (!colon || colon == v || has_ctl(v) || strcspn(v, " \t") < (size_t)(colon - v))
                return usage_err("bad header '%s' (want 'Name: value')", v);
            o.headers[o.n_headers++] = v;
        }
        else if (flag(argc, argv, &i, "d", &v, &miss)) o.body = v;
        else if (flag(argc, argv, &i, "D", &v, &miss)) o.body_file = v;
        else if (flag(argc, argv, &i, "T", &v, &miss)) o.ctype = v;
        else if (flag(argc, argv, &i, "A", &v, &miss)) o.accept = v;
        else if (flag(argc, argv, &i, "a", &v, &miss)) {
            if (!miss && !strchr(v, ':')) return usage_err("bad value '%s' for -a (want user:password)", v);
            o.auth = v;
        }
        else if (flag(argc, argv, &i, "U", &v, &miss)) o.ua = v;
        else if (flag(argc, argv, &i, "host", &v, &miss)) o.host_hdr = v;
        else if (flag(argc, argv, &i, "o", &v, &miss)) {
            if (!miss && strcmp(v, "csv")) return usage_err("bad value '%s' for -o (only csv is supported)", v);
            o.output = v;
        }
        else if (flag(argc, argv, &i, "cpus", &v, &miss)) { /* one thread does the work */ }
        else if (flag(argc, argv, &i, "disable-keepalive", NULL, NULL)) o.keepalive = false;
        else if (flag(argc, argv, &i, "disable-compression", NULL, NULL) || flag(argc, argv, &i, "disable-redirects", NULL, NULL)) { }
        else if (flag(argc, argv, &i, "h2", NULL, NULL)) return usage_err("%s: HTTP/2 is not supported (HTTP/1.1 only)", a);
        else if (flag(argc, argv, &i, "x", &v, &miss)) return usage_err("%s: proxies are not supported", a);
        else if (flag(argc, argv, &i, "rate", &v, &miss)) {
            if (!miss && (!util_parse_f64(v, 0, 1e7, &o.rate) || !(o.rate > 0))) return usage_err("bad value '%s' for --rate (arrivals/s > 0)", v);
        } else if (flag(argc, argv, &i, "arrival", &v, &miss)) {
            if (miss) return usage_err("%s needs a value", a);
            if (!strcmp(v, "poisson")) o.poisson = true;
            else if (strcmp(v, "constant")) return usage_err("bad value '%s' for --arrival (constant or poisson)", v);
        } else if (flag(argc, argv, &i, "seed", &v, &miss)) {
            if (!miss && !util_parse_i64(v, 0, INT64_MAX, &o.seed)) return usage_err("bad value '%s' for --seed", v);
        } else if (flag(argc, argv, &i, "stream", NULL, NULL)) o.stream = true;
        else if (flag(argc, argv, &i, "json", NULL, NULL)) o.json = true;
        else if (flag(argc, argv, &i, "openai", &v, &miss)) {
            if (!miss && strcmp(v, "completions") && strcmp(v, "chat")) return usage_err("bad value '%s' for --openai (completions or chat)", v);
            o.openai = v;
        } else if (flag(argc, argv, &i, "model", &v, &miss)) o.model = v;
        else if (flag(argc, argv, &i, "max-tokens", &v, &miss)) {
            if (!miss && !util_parse_i64(v, 1, 1 << 24, &o.max_tokens)) return usage_err("bad value '%s' for --max-tokens", v);
        } else if (flag(argc, argv, &i, "prompts", &v, &miss)) o.prompts = v;
        else if (flag(argc, argv, &i, "slo-ttft", &v, &miss)) {
            if (!miss && (!util_parse_f64(v, 0, 1e9, &o.slo_ttft) || !(o.slo_ttft > 0))) return usage_err("bad value '%s' for --slo-ttft (ms > 0)", v);
        } else if (flag(argc, argv, &i, "slo-tpot", &v, &miss)) {
            if (!miss && (!util_parse_f64(v, 0, 1e9, &o.slo_tpot) || !(o.slo_tpot > 0))) return usage_err("bad value '%s' for --slo-tpot (ms > 0)", v);
        } else if (flag(argc, argv, &i, "slo-e2e", &v, &miss)) {
            if (!miss && (!util_parse_f64(v, 0, 1e9, &o.slo_e2e) || !(o.slo_e2e > 0))) return usage_err("bad value '%s' for --slo-e2e (ms > 0)", v);
        } else {
            return usage_err("unknown flag '%s'", a);
        }
        if (miss) return usage_err("%s needs a value", a);
    }
    if (!o.url) { load_usage(stderr); return 2; }
    url_parts u;
    const char *why = NULL;
    if (!parse_url(o.url, &u, &why)) return usage_err("%s", why);
    int rc = cmd_load_run(&o, &u);
    free(u.path);
    return rc;
}

// The part of cmd_load after the URL is parsed (u->path is freed by the caller).
static int cmd_load_run(opts *op, url_parts *up) {
    opts o = *op;
    url_parts u = *up;
    const char *why = NULL;
    if (o.openai) o.stream = true;
    if (!o.method) o.method = o.openai ? "POST" : "GET";
    static char method[32];                          // as hey: the method is upper-cased
    size_t ml = strlen(o.method);
    if (!ml || ml >= sizeof method) return usage_err("bad method '%s'", o.method);
    for (size_t k = 0; k <= ml; k++) {
        char ch = o.method[k];
        if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 32);
        if (k < ml && !(ch >= 'A' && ch <= 'Z')) return usage_err("bad method '%s' (letters only, e.g. GET, POST)", o.method);
        method[k] = ch;
    }
    o.method = method;
    if (!o.ctype) o.ctype = o.openai ? "application/json" : "text/html";
    if (has_ctl(o.ctype) || (o.accept && has_ctl(o.accept)) || (o.ua && has_ctl(o.ua)) || (o.host_hdr && has_ctl(o.host_hdr)) ||
        (o.auth && strlen(o.auth) > 1000))
        return usage_err("%s", "a header value contains control characters or is too long");
    if (o.body && o.body_file) return usage_err("%s", "-d and -D are exclusive");
    if (o.prompts && (o.body || o.body_file)) return usage_err("%s", "--prompts and -d/-D are exclusive");
    if (o.q > 0 && o.rate > 0) return usage_err("%s", "-q (closed loop) and --rate (open loop) are exclusive");
    if (!o.z_ns && o.rate <= 0 && o.n < o.c) return usage_err("%s", "-n cannot be less than -c");
    if (o.output && o.json) return usage_err("%s", "-o csv and --json are exclusive");
    if ((o.slo_ttft > 0 || o.slo_tpot > 0 || o.slo_e2e > 0) && !o.stream) return usage_err("%s", "--slo-* need --stream");
    if (o.poisson && o.rate <= 0) return usage_err("%s", "--arrival needs --rate");

    // OpenAI endpoints when the URL names none.
    char *path = u.path;
    if (o.openai && (!strcmp(path, "/") || !strncmp(path, "/?", 2))) {
        const char *ep = !strcmp(o.openai, "chat") ? "/v1/chat/completions" : "/v1/completions";
        size_t k = strlen(ep) + strlen(path) + 1;
        char *np = malloc(k);
        if (!np) { free(path); fprintf(stderr, "llmscope load: out of memory\n"); return 1; }
        snprintf(np, k, "%s%s", ep, path + 1);
        free(path);
        path = u.path = up->path = np;
    }

    load_cfg cfg = {0};
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(u.host, u.port, &hints, &ai);
    if (gai || !ai) { fprintf(stderr, "llmscope load: %s: %s\n", u.host, gai_strerror(gai)); return 1; }
    memcpy(&cfg.addr, ai->ai_addr, ai->ai_addrlen);
    cfg.addrlen = ai->ai_addrlen;
    freeaddrinfo(ai);

    // The requests.
    load_req *reqs = NULL;
    int64_t n_reqs = 0;
    char err[512];
    if (o.prompts) {
        n_reqs = load_prompts(&o, &u, path, &reqs, err, sizeof err);
        if (n_reqs < 0) { fprintf(stderr, "llmscope load: %s\n", err); return 1; }
    } else {
        char *body = NULL;
        size_t blen = 0;
        if (o.body_file) {
            body = read_file(o.body_file, &blen, &why);
            if (!body) { fprintf(stderr, "llmscope load: %s: %s\n", o.body_file, why); return 1; }
        } else if (o.openai) {
            json_t *p = json_string(o.body ? o.body : "Once upon a time");
            if (!p) { fprintf(stderr, "llmscope load: -d is not valid UTF-8 text\n"); return 1; }
            body = openai_body(&o, p, NULL);
            json_decref(p);
            blen = body ? strlen(body) : 0;
        } else if (o.body) {
            body = strdup(o.body);
            blen = strlen(o.body);
        }
        reqs = calloc(1, sizeof *reqs);
        if (!reqs || ((o.body || o.body_file || o.openai) && !body) || !build_request(&o, &u, path, body ? body : "", blen, reqs)) {
            fprintf(stderr, "llmscope load: out of memory\n");
            free(body); free(reqs);
            return 1;
        }
        free(body);
        n_reqs = 1;
    }
    cfg.reqs = reqs;
    cfg.n_reqs = (size_t)n_reqs;
    cfg.head = !strcmp(o.method, "HEAD");
    cfg.n = o.z_ns ? 0 : o.n;
    cfg.c = (int)o.c;
    cfg.qps = o.q;
    cfg.duration_ns = o.z_ns;
    cfg.rate = o.rate;
    cfg.poisson = o.poisson;
    cfg.seed = (uint64_t)o.seed;
    cfg.timeout_ns = o.t_ns;
    cfg.keepalive = o.keepalive;
    cfg.stream = o.stream;
    cfg.slo_ttft_ms = o.slo_ttft;
    cfg.slo_tpot_ms = o.slo_tpot;
    cfg.slo_e2e_ms = o.slo_e2e;
    cfg.records = o.output != NULL;
    cfg.progress = isatty(2);

    int rc = 1;
    load_result r;
    if (!load_result_init(&r)) { fprintf(stderr, "llmscope load: out of memory\n"); goto done; }
    if (!preflight(&cfg, o.t_ns, err, sizeof err)) {
        fprintf(stderr, "llmscope load: cannot connect to %s:%s: %s\n", u.host, u.port, err);
        load_result_free(&r);
        goto done;
    }
    if (load_run(&cfg, &r, err, sizeof err)) {
        fprintf(stderr, "llmscope load: %s\n", err);
        load_result_free(&r);
        goto done;
    }
    if (o.json) print_json(&o, &cfg, &r);
    else if (o.output) print_csv(&r);
    else print_text(&o, &cfg, &r);
    fflush(stdout);
    rc = 0;                                         // as hey: errors are in the report
    load_result_free(&r);
done:
    for (int64_t i = 0; i < n_reqs; i++) free(reqs[i].buf);
    free(reqs);
    return rc;
}
