// cmd_collect.c — `llmscope collect`: captures a running server's evidence
// over one window while it is under load — CPU profile, heap profiles at the
// start and end, the threads dump midway, block and mutex deltas, the trace,
// the counters delta, /metrics before and after, the load's results, the
// process's threads, memory and connections from /proc, and a `perf record`
// when asked — and writes DIR/manifest.json saying what was captured, what was
// unavailable and why, and the server's configuration.
//
// Each capture is one blocking HTTP/1.1 GET on its own thread, so all of them
// cover the same window; responses are parsed by util/http_resp.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "diagnose.h"
#include "opt.h"
#include "tools.h"
#include "util/http_resp.h"
#include "util/util.h"

#define GET_MAX_BODY ((size_t)1 << 30)   // largest response kept (bytes)

// ---- a small blocking HTTP GET client ---------------------------------------------

typedef struct target {
    char host[256];
    char port[16];
} target;

static bool parse_url(const char *url, target *t) {
    if (strncmp(url, "http://", 7)) return false;
    const char *h = url + 7, *e = h;
    while (*e && *e != '/' && *e != ':') e++;
    if (e == h || (size_t)(e - h) >= sizeof t->host) return false;
    memcpy(t->host, h, (size_t)(e - h));
    t->host[e - h] = 0;
    snprintf(t->port, sizeof t->port, "80");
    if (*e == ':') {
        const char *p = ++e;
        while (*e >= '0' && *e <= '9') e++;
        if (e == p || e - p > 5) return false;
        memcpy(t->port, p, (size_t)(e - p));
        t->port[e - p] = 0;
    }
    return *e == 0 || *e == '/';
}

typedef struct body {
    char *p;
    size_t n, cap;
    bool too_big;
} body;

static bool body_add(void *ud, const char *p, size_t n) {
    body *b = ud;
    if (b->n + n > GET_MAX_BODY) { b->too_big = true; return false; }
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 65536;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = realloc(b->p, nc);
        if (!np) return false;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

// GETs path; returns the status (0 with a message in err on a transport
// failure) and the body in *out (malloc'd, NUL-terminated).
static int http_get(const target *t, const char *path, double timeout_s, body *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gr = getaddrinfo(t->host, t->port, &hints, &ai);
    if (gr) { snprintf(err, errlen, "cannot resolve %.200s: %s", t->host, gai_strerror(gr)); return 0; }
    int fd = -1;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0) { snprintf(err, errlen, "cannot connect to %.200s:%s: %s", t->host, t->port, strerror(errno)); return 0; }
    struct timeval tv = {(time_t)timeout_s, (suseconds_t)((timeout_s - (double)(time_t)timeout_s) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char req[1024];
    int rn = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: llmscope-collect/1\r\nConnection: close\r\n\r\n",
                      path, t->host, t->port);
    if (rn < 0 || (size_t)rn >= sizeof req) { close(fd); snprintf(err, errlen, "request too long"); return 0; }
    for (int off = 0; off < rn;) {
        ssize_t w = send(fd, req + off, (size_t)(rn - off), MSG_NOSIGNAL);
        if (w <= 0) { snprintf(err, errlen, "send: %s", strerror(errno)); close(fd); return 0; }
        off += (int)w;
    }
    http_resp *r = malloc(sizeof *r);
    if (!r) { close(fd); snprintf(err, errlen, "out of memory"); return 0; }
    http_resp_init(r, false);
    char buf[65536];
    int status = 0;
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) { snprintf(err, errlen, "%s", errno == EAGAIN ? "timed out" : strerror(errno)); break; }
        if (k == 0) {
            if (http_resp_eof(r)) status = r->status;
            else snprintf(err, errlen, "connection closed before the response ended");
            break;
        }
        if (http_resp_feed(r, buf, (size_t)k, body_add, out) < 0) {
            snprintf(err, errlen, "%s", out->too_big ? "response too large" : http_resp_error(r) ? http_resp_error(r) : "bad response");
            break;
        }
        if (http_resp_done(r)) { status = r->status; break; }
    }
    free(r);
    close(fd);
    if (!status) { free(out->p); memset(out, 0, sizeof *out); }
    else if (!out->p) body_add(out, "", 0);
    return status;
}

// ---- the capture ---------------------------------------------------------------------

typedef struct capture {
    const char *name;       // manifest key
    const char *file;       // file in DIR
    char path[256];         // URL path with query
    double delay_s;         // start this long after the window opens
    double timeout_s;
    // results
    int status;
    size_t bytes;
    double ms;
    char why[512];          // unavailable: why
    pthread_t th;
    const target *t;
    const char *dir;
} capture;

static bool write_file(const char *dir, const char *file, const void *p, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(p, 1, n, f) == n;
    ok = fclose(f) == 0 && ok;
    return ok;
}

static void sleep_s(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

// An error body's message: {"error":{"message":...}} or the first line of text.
static void error_message(const body *b, int status, char *why, size_t n) {
    json_t *j = b->p ? json_loadb(b->p, b->n, 0, NULL) : NULL;
    const char *m = j ? json_string_value(json_object_get(json_object_get(j, "error"), "message")) : NULL;
    if (m) snprintf(why, n, "HTTP %d: %s", status, m);
    else if (b->p && b->n) {
        size_t k = strcspn(b->p, "\r\n");
        snprintf(why, n, "HTTP %d: %.*s", status, (int)(k > 200 ? 200 : k), b->p);
    } else snprintf(why, n, "HTTP %d", status);
    json_decref(j);
}

static void *capture_main(void *p) {
    capture *c = p;
    sleep_s(c->delay_s);
    uint64_t t0 = util_now_ns();
    body b;
    char err[256] = "";
    // The server runs a few debug requests at a time (429 beyond): wait for a slot.
    for (int tries = 0;; tries++) {
        c->status = http_get(c->t, c->path, c->timeout_s, &b, err, sizeof err);
        if (c->status != 429 || tries >= 40) break;
        free(b.p);
        sleep_s(0.1 + 0.05 * tries);
    }
    c->ms = (double)(util_now_ns() - t0) / 1e6;
    if (c->status == 0) snprintf(c->why, sizeof c->why, "%s", err);
    else if (c->status == 404) snprintf(c->why, sizeof c->why, "not served by this server (HTTP 404 for %s)", c->path);
    else if (c->status != 200) error_message(&b, c->status, c->why, sizeof c->why);
    else if (!write_file(c->dir, c->file, b.p, b.n)) snprintf(c->why, sizeof c->why, "cannot write %s: %s", c->file, strerror(errno));
    else c->bytes = b.n;
    free(b.p);
    return NULL;
}

static void start(capture *c) {
    if (pthread_create(&c->th, NULL, capture_main, c) != 0) {
        snprintf(c->why, sizeof c->why, "cannot start a thread");
        c->th = 0;
    }
}

static void finish(capture *c) {
    if (c->th) pthread_join(c->th, NULL);
}

// ---- /proc: the server's pid, threads, memory and connections -------------------------

// The inode of the socket listening on `port` (IPv4 or IPv6), 0 when none.
static unsigned long listen_inode(int port) {
    const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(files[k], "r");
        if (!f) continue;
        char line[512];
        while (fgets(line, sizeof line, f)) {
            char local[128], rem[128];
            unsigned st;
            unsigned long inode;
            if (sscanf(line, " %*d: %127s %127s %x %*s %*s %*s %*s %*s %lu", local, rem, &st, &inode) != 4) continue;
            char *c = strrchr(local, ':');
            if (!c || st != 0x0A) continue;
            if ((int)strtol(c + 1, NULL, 16) == port) { fclose(f); return inode; }
        }
        fclose(f);
    }
    return 0;
}

static pid_t find_pid(int port) {
    unsigned long ino = listen_inode(port);
    if (!ino) return 0;
    char want[64];
    snprintf(want, sizeof want, "socket:[%lu]", ino);
    DIR *d = opendir("/proc");
    if (!d) return 0;
    struct dirent *e;
    pid_t found = 0;
    while (!found && (e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        char fdp[300];
        snprintf(fdp, sizeof fdp, "/proc/%s/fd", e->d_name);
        DIR *fd = opendir(fdp);
        if (!fd) continue;
        struct dirent *fe;
        while ((fe = readdir(fd))) {
            char lp[600], tgt[128];
            snprintf(lp, sizeof lp, "%s/%s", fdp, fe->d_name);
            ssize_t n = readlink(lp, tgt, sizeof tgt - 1);
            if (n <= 0) continue;
            tgt[n] = 0;
            if (!strcmp(tgt, want)) { found = (pid_t)atoi(e->d_name); break; }
        }
        closedir(fd);
    }
    closedir(d);
    return found;
}

// One snapshot of the process: threads, RSS, open fds, and the server's
// established connections (by the client's address:port).
static json_t *proc_snapshot(pid_t pid, int port, double t_s) {
    json_t *o = json_object();
    json_object_set_new(o, "t_s", json_real(t_s));
    char p[128], line[512];
    snprintf(p, sizeof p, "/proc/%d/status", (int)pid);
    FILE *f = fopen(p, "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            long v;
            if (sscanf(line, "Threads: %ld", &v) == 1) json_object_set_new(o, "threads", json_integer(v));
            else if (sscanf(line, "VmRSS: %ld kB", &v) == 1) json_object_set_new(o, "rss_kb", json_integer(v));
            else if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1) json_object_set_new(o, "voluntary_ctxt_switches", json_integer(v));
            else if (sscanf(line, "nonvoluntary_ctxt_switches: %ld", &v) == 1) json_object_set_new(o, "nonvoluntary_ctxt_switches", json_integer(v));
        }
        fclose(f);
    }
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    f = fopen(p, "r");
    if (f) {
        char st[1024];
        if (fgets(st, sizeof st, f)) {
            char *rp = strrchr(st, ')');
            unsigned long ut, stt;
            if (rp && sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) == 2) {
                long hz = sysconf(_SC_CLK_TCK);
                json_object_set_new(o, "cpu_s", json_real((double)(ut + stt) / (double)(hz > 0 ? hz : 100)));
            }
        }
        fclose(f);
    }
    snprintf(p, sizeof p, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(p);
    if (d) {
        long n = 0;
        struct dirent *e;
        while ((e = readdir(d))) if (e->d_name[0] != '.') n++;
        closedir(d);
        json_object_set_new(o, "fds", json_integer(n));
    }
    json_t *conns = json_array();
    const char *files[] = {"/proc/net/tcp", "/proc/net/tcp6"};
    for (int k = 0; k < 2; k++) {
        f = fopen(files[k], "r");
        if (!f) continue;
        while (fgets(line, sizeof line, f)) {
            char local[128], rem[128];
            unsigned st;
            if (sscanf(line, " %*d: %127s %127s %x", local, rem, &st) != 3 || st != 0x01) continue;
            char *c = strrchr(local, ':');
            if (!c || (int)strtol(c + 1, NULL, 16) != port) continue;
            json_array_append_new(conns, json_string(rem));
        }
        fclose(f);
    }
    json_object_set_new(o, "connections", conns);
    return o;
}

// ---- the load and perf children ---------------------------------------------------------

// Splits a flag string on blanks, honouring '...' and "..." quotes.
static int split_args(const char *s, char ***out) {
    size_t cap = 8, n = 0;
    char **v = malloc(cap * sizeof *v);
    char *buf = malloc(strlen(s) + 1);
    if (!v || !buf) { free(v); free(buf); return -1; }
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        size_t k = 0;
        char q = 0;
        for (; *p && (q || (*p != ' ' && *p != '\t' && *p != '\n')); p++) {
            if (!q && (*p == '\'' || *p == '"')) { q = *p; continue; }
            if (q && *p == q) { q = 0; continue; }
            if (*p == '\\' && q != '\'' && p[1]) p++;
            buf[k++] = *p;
        }
        if (n + 2 > cap) {
            cap *= 2;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv) break;
            v = nv;
        }
        v[n++] = strndup(buf, k);
    }
    free(buf);
    v[n] = NULL;
    *out = v;
    return (int)n;
}

// Starts `llmscope load ARGS --json URL` with stdout to DIR/load.json.
static pid_t start_load(const collect_opts *o, char *why, size_t wn) {
    char **a;
    int na = split_args(o->load, &a);
    if (na < 0) { snprintf(why, wn, "out of memory"); return -1; }
    bool has_url = false, has_json = false;
    for (int i = 0; i < na; i++) {
        if (!strncmp(a[i], "http://", 7) || !strncmp(a[i], "https://", 8)) has_url = true;
        if (!strcmp(a[i], "--json") || !strcmp(a[i], "-json")) has_json = true;
    }
    char **argv = calloc((size_t)na + 5, sizeof *argv);
    char self[4096];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    if (!argv || sn <= 0) { snprintf(why, wn, "cannot find the llmscope binary"); free(argv); return -1; }
    self[sn] = 0;
    int k = 0;
    argv[k++] = self;
    argv[k++] = "load";
    for (int i = 0; i < na; i++) argv[k++] = a[i];
    if (!has_json) argv[k++] = "--json";
    if (!has_url) argv[k++] = (char *)o->url;
    argv[k] = NULL;
    char out[4096], errp[4096];
    snprintf(out, sizeof out, "%s/load.json", o->dir);
    snprintf(errp, sizeof errp, "%s/load.err", o->dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0) _exit(127);
        dup2(fo, 1);
        dup2(fe, 2);
        execv(self, argv);
        _exit(127);
    }
    for (int i = 0; i < na; i++) free(a[i]);
    free(a);
    free(argv);
    if (pid < 0) snprintf(why, wn, "fork: %s", strerror(errno));
    return pid;
}

static pid_t start_perf(const collect_opts *o, pid_t target_pid, char *why, size_t wn) {
    char pidbuf[32], secs[32], out[4096], errp[4096];
    snprintf(pidbuf, sizeof pidbuf, "%d", (int)target_pid);
    snprintf(secs, sizeof secs, "%.3f", o->seconds);
    snprintf(out, sizeof out, "%s/perf.data", o->dir);
    snprintf(errp, sizeof errp, "%s/perf.err", o->dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int fn = open("/dev/null", O_RDWR);
        if (fe >= 0) { dup2(fe, 2); }
        if (fn >= 0) { dup2(fn, 0); dup2(fn, 1); }
        execlp("perf", "perf", "record", "-g", "-F", "499", "-p", pidbuf, "-o", out, "--", "sleep", secs, (char *)NULL);
        _exit(127);
    }
    if (pid < 0) snprintf(why, wn, "fork: %s", strerror(errno));
    return pid;
}

// Waits for a child up to timeout_s, then SIGINTs it (then SIGKILLs it).
// Returns its exit status, -1 when it had to be killed.
static int wait_child(pid_t pid, double timeout_s) {
    uint64_t end = util_now_ns() + (uint64_t)(timeout_s * 1e9);
    int st = 0;
    int sig = SIGINT;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (r < 0) return -1;
        if (util_now_ns() > end) {
            kill(pid, sig);
            sig = SIGKILL;
            end = util_now_ns() + 5000000000ull;
        }
        sleep_s(0.02);
    }
}

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 65536, len = 0;
    char *p = malloc(cap);
    while (p) {
        if (len + 4096 > cap) {
            char *np = cap < ((size_t)1 << 30) ? realloc(p, cap * 2) : NULL;
            if (!np) { free(p); p = NULL; break; }
            p = np;
            cap *= 2;
        }
        size_t k = fread(p + len, 1, cap - len - 1, f);
        len += k;
        if (k == 0) break;
    }
    fclose(f);
    if (p) { p[len] = 0; if (n) *n = len; }
    return p;
}

// ---- collect -----------------------------------------------------------------------------

int collect_run(const collect_opts *o) {
    target t;
    if (!parse_url(o->url, &t)) { fprintf(stderr, "llmscope collect: --url must be http://HOST[:PORT]\n"); return 1; }
    if (mkdir(o->dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "llmscope collect: cannot create %s: %s\n", o->dir, strerror(errno));
        return 1;
    }
    json_t *man = json_object(), *captured = json_object(), *unavail = json_object();
    json_object_set_new(man, "tool", json_string("llmscope collect"));
    json_object_set_new(man, "schema", json_integer(1));
    json_object_set_new(man, "url", json_string(o->url));
    json_object_set_new(man, "seconds", json_real(o->seconds));
    json_object_set_new(man, "load", o->load ? json_string(o->load) : json_null());
    time_t now = time(NULL);
    char stamp[64];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_set_new(man, "started", json_string(stamp));
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    json_object_set_new(man, "host_cpus", json_integer(ncpu > 0 ? ncpu : 1));

    // The server's configuration, and that it answers at all.
    body b;
    char err[256];
    int st = http_get(&t, "/v1/models", 10, &b, err, sizeof err);
    if (st == 0) {
        fprintf(stderr, "llmscope collect: %s\n", err);
        json_decref(man); json_decref(captured); json_decref(unavail);
        return 1;
    }
    json_t *cfg = json_object();
    json_t *models = st == 200 ? json_loadb(b.p, b.n, 0, NULL) : NULL;
    json_t *m0 = json_array_get(json_object_get(models, "data"), 0);
    if (m0) {
        json_object_set(cfg, "model", json_object_get(m0, "id"));
        json_t *meta = json_object_get(m0, "meta");
        if (meta) json_object_update(cfg, meta);
    }
    json_decref(models);
    free(b.p);
    st = http_get(&t, "/health", 10, &b, err, sizeof err);
    json_object_set_new(cfg, "health", json_integer(st));
    free(b.p);
    int port = atoi(t.port);
    pid_t pid = o->pid ? o->pid : find_pid(port);
    json_object_set_new(man, "pid", pid > 0 ? json_integer(pid) : json_null());
    if (pid > 0) {
        char p[64], cmd[4096] = "";
        snprintf(p, sizeof p, "/proc/%d/comm", (int)pid);
        FILE *f = fopen(p, "r");
        if (f) { if (fgets(cmd, sizeof cmd, f)) cmd[strcspn(cmd, "\n")] = 0; fclose(f); }
        json_object_set_new(cfg, "process", json_string(cmd));
    }

    // Before the window: metrics and the first heap profile.

    json_t *procs = json_array();
    uint64_t t_open = util_now_ns();
    pid_t load_pid = 0;
    char load_why[256] = "";
    if (o->load) {
        load_pid = start_load(o, load_why, sizeof load_why);
        sleep_s(0.5);   // let the load reach its steady state
    }
    // At the window's start, under load: metrics, the heap profile (requests
    // in flight are then in both heap profiles, so only what stays counts as
    // growth) and the cumulative block and mutex profiles, which the report
    // subtracts from the end ones. (The server serves only a few debug
    // requests at a time, so only the captures that must span the window
    // hold one open.)
    capture pre[] = {
        {.name = "metrics_before", .file = "metrics_before.txt", .path = "/metrics", .timeout_s = 10},
        {.name = "heap_start", .file = "heap_start.pb.gz", .path = "/debug/pprof/heap", .timeout_s = 30},
        {.name = "block_start", .file = "block_start.pb.gz", .path = "/debug/pprof/block", .timeout_s = 30},
        {.name = "mutex_start", .file = "mutex_start.pb.gz", .path = "/debug/pprof/mutex", .timeout_s = 30},
    };
    size_t npre = sizeof pre / sizeof pre[0];
    for (size_t i = 0; i < npre; i++) { pre[i].t = &t; pre[i].dir = o->dir; capture_main(&pre[i]); }
    if (pid > 0) json_array_append_new(procs, proc_snapshot(pid, port, 0));
    pid_t perf_pid = 0;
    char perf_why[256] = "";
    if (o->perf) {
        if (pid <= 0) snprintf(perf_why, sizeof perf_why, "the server's pid is unknown (it does not listen on this machine?)");
        else perf_pid = start_perf(o, pid, perf_why, sizeof perf_why);
    }
    if (!o->quiet) fprintf(stderr, "llmscope collect: capturing %.0f s from %s into %s\n", o->seconds, o->url, o->dir);
    int secs = (int)(o->seconds + 0.5);
    if (secs < 1) secs = 1;
    double tw = secs + 30;
    capture win[] = {
        {.name = "cpu", .file = "cpu.pb.gz", .timeout_s = tw},
        {.name = "trace", .file = "trace.json", .timeout_s = tw},
        {.name = "counters", .file = "counters.json", .timeout_s = tw},
        {.name = "threads", .file = "threads.txt", .path = "/debug/pprof/threads?debug=2", .delay_s = secs / 2.0, .timeout_s = 30},
    };
    snprintf(win[0].path, sizeof win[0].path, "/debug/pprof/profile?seconds=%d", secs);
    snprintf(win[1].path, sizeof win[1].path, "/debug/trace?seconds=%d", secs);
    snprintf(win[2].path, sizeof win[2].path, "/debug/counters?seconds=%d", secs);
    size_t nwin = sizeof win / sizeof win[0];
    for (size_t i = 0; i < nwin; i++) { win[i].t = &t; win[i].dir = o->dir; start(&win[i]); }
    if (pid > 0) {
        sleep_s(secs / 2.0);
        json_array_append_new(procs, proc_snapshot(pid, port, (double)(util_now_ns() - t_open) / 1e9));
        sleep_s(secs / 2.0);
        json_array_append_new(procs, proc_snapshot(pid, port, (double)(util_now_ns() - t_open) / 1e9));
    }
    for (size_t i = 0; i < nwin; i++) finish(&win[i]);

    // After the window.
    capture post[] = {
        {.name = "block_end", .file = "block_end.pb.gz", .path = "/debug/pprof/block", .timeout_s = 30},
        {.name = "mutex_end", .file = "mutex_end.pb.gz", .path = "/debug/pprof/mutex", .timeout_s = 30},
        {.name = "heap_end", .file = "heap_end.pb.gz", .path = "/debug/pprof/heap", .timeout_s = 30},
        {.name = "metrics_after", .file = "metrics_after.txt", .path = "/metrics", .timeout_s = 10},
    };
    size_t npost = sizeof post / sizeof post[0];
    for (size_t i = 0; i < npost; i++) { post[i].t = &t; post[i].dir = o->dir; capture_main(&post[i]); }

    int load_rc = 0;
    if (load_pid > 0) load_rc = wait_child(load_pid, 120);
    int perf_rc = 0;
    if (perf_pid > 0) perf_rc = wait_child(perf_pid, 30);

    // The manifest.
    capture *all[sizeof pre / sizeof pre[0] + sizeof win / sizeof win[0] + sizeof post / sizeof post[0]];
    size_t na = 0;
    for (size_t i = 0; i < npre; i++) all[na++] = &pre[i];
    for (size_t i = 0; i < nwin; i++) all[na++] = &win[i];
    for (size_t i = 0; i < npost; i++) all[na++] = &post[i];
    for (size_t i = 0; i < na; i++) {
        capture *c = all[i];
        if (c->bytes || (!c->why[0] && c->status == 200)) {
            json_object_set_new(captured, c->name, json_pack("{s:s,s:I,s:f}", "file", c->file, "bytes", (json_int_t)c->bytes, "ms", c->ms));
        } else {
            json_object_set_new(unavail, c->name, json_string(c->why[0] ? c->why : "empty response"));
        }
    }
    // Counters that answered but could not count hardware events.
    if (win[2].bytes) {
        char p[4096];
        snprintf(p, sizeof p, "%s/counters.json", o->dir);
        json_t *cj = json_load_file(p, 0, NULL);
        const char *hw = json_string_value(json_object_get(cj, "hardware"));
        if (hw && strcmp(hw, "available") && strcmp(hw, "on")) {
            const char *why = json_string_value(json_object_get(cj, "reason"));
            char w[600];
            snprintf(w, sizeof w, "hardware counters %s: %s", hw, why ? why : "no reason given");
            json_object_set_new(unavail, "hardware_counters", json_string(w));
        }
        json_decref(cj);
    }
    if (o->load) {
        char p[4096];
        snprintf(p, sizeof p, "%s/load.json", o->dir);
        size_t n = 0;
        char *lj = slurp(p, &n);
        json_t *j = lj ? json_loadb(lj, n, 0, NULL) : NULL;
        if (load_pid > 0 && j) json_object_set_new(captured, "load", json_pack("{s:s,s:I,s:i}", "file", "load.json", "bytes", (json_int_t)n, "exit", load_rc));
        else {
            char ep[4096];
            snprintf(ep, sizeof ep, "%s/load.err", o->dir);
            char *le = slurp(ep, NULL);
            char w[600];
            snprintf(w, sizeof w, "%s%s", load_why[0] ? load_why : "the load run failed: ", load_why[0] ? "" : (le && *le ? le : "no output"));
            w[strcspn(w, "\n")] = 0;
            json_object_set_new(unavail, "load", json_string(w));
            free(le);
        }
        json_decref(j);
        free(lj);
    } else {
        json_object_set_new(unavail, "load", json_string("no --load given: the server's own traffic was captured"));
    }
    if (pid > 0) {
        char p[4096];
        snprintf(p, sizeof p, "%s/proc.json", o->dir);
        if (json_dump_file(procs, p, JSON_INDENT(1)) == 0)
            json_object_set_new(captured, "proc", json_pack("{s:s,s:I}", "file", "proc.json", "snapshots", (json_int_t)json_array_size(procs)));
    } else {
        json_object_set_new(unavail, "proc", json_string("the server's pid was not found on this machine (no listener on the URL's port here)"));
    }
    json_decref(procs);
    if (o->perf) {
        char p[4096];
        snprintf(p, sizeof p, "%s/perf.data", o->dir);
        struct stat sb;
        if (perf_pid > 0 && perf_rc == 0 && stat(p, &sb) == 0 && sb.st_size > 0) {
            json_object_set_new(captured, "perf", json_pack("{s:s,s:I}", "file", "perf.data", "bytes", (json_int_t)sb.st_size));
            // perf script, for the report's own reading of the stacks.
            char cmd[8300];
            snprintf(cmd, sizeof cmd, "perf script -i '%s/perf.data' > '%s/perf.script' 2>/dev/null", o->dir, o->dir);
            if (system(cmd) == 0) json_object_set_new(captured, "perf_script", json_pack("{s:s}", "file", "perf.script"));
        } else {
            char ep[4096];
            snprintf(ep, sizeof ep, "%s/perf.err", o->dir);
            char *pe = slurp(ep, NULL);
            char w[600];
            if (perf_why[0]) snprintf(w, sizeof w, "%s", perf_why);
            else if (perf_rc == 127) snprintf(w, sizeof w, "perf is not installed");
            else snprintf(w, sizeof w, "perf record failed: %s", pe && *pe ? pe : "no message");
            for (char *q = w; *q; q++) if (*q == '\n') *q = ' ';
            json_object_set_new(unavail, "perf", json_string(w));
            free(pe);
        }
    } else {
        json_object_set_new(unavail, "perf", json_string("not asked for (--perf)"));
    }
    json_object_set_new(man, "server", cfg);
    json_object_set_new(man, "captured", captured);
    json_object_set_new(man, "unavailable", unavail);
    char mp[4096];
    snprintf(mp, sizeof mp, "%s/manifest.json", o->dir);
    int rc = json_dump_file(man, mp, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 ? 0 : 1;
    if (rc) fprintf(stderr, "llmscope collect: cannot write %s\n", mp);
    else if (!o->quiet) {
        fprintf(stderr, "llmscope collect: %zu captured, %zu unavailable (see %s)\n", json_object_size(captured),
                json_object_size(unavail), mp);
    }
    json_decref(man);
    return rc;
}

static void collect_usage(FILE *f) {
    fprintf(f,
"usage: llmscope collect --url http://HOST:PORT --seconds N [--load \"LOAD ARGS\"] [--perf] [--pid PID] -o DIR\n"
"\n"
"Captures a running llm-server's evidence over one window of N seconds:\n"
"CPU profile, heap, block and mutex profiles at the start and end (the report\n"
"takes their differences), the threads dump midway, the execution trace, the counters delta, /metrics\n"
"before and after, /proc figures of the process, and with --load the results of\n"
"`llmscope load LOAD ARGS --json` run against the server during the window.\n"
"--perf adds `perf record -g` of the server process. DIR/manifest.json lists\n"
"what was captured, what was unavailable and why, and the server's configuration.\n"
"Read the capture with `llmscope report DIR`.\n");
}

int cmd_collect(int argc, char **argv) {
    collect_opts o = {.seconds = 10};
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        bool missing = false;
        int64_t n;
#define OPTV(s, l) (opt_value(argc, argv, &i, s, l, &v, &missing) && !missing)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { collect_usage(stdout); return 0; }
        if (OPTV(NULL, "--url")) o.url = v;
        else if (OPTV("-s", "--seconds")) {
            if (!opt_f64("collect", "--seconds", v, 1, 60, &o.seconds)) return 2;
        } else if (OPTV(NULL, "--load")) o.load = v;
        else if (OPTV("-o", "--output")) o.dir = v;
        else if (OPTV(NULL, "--pid")) {
            if (!opt_i64("collect", "--pid", v, 1, 1 << 30, &n)) return 2;
            o.pid = (pid_t)n;
        } else if (!strcmp(argv[i], "--perf")) o.perf = true;
        else if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) o.quiet = true;
        else if (!missing) { fprintf(stderr, "llmscope collect: unknown flag '%s'\n", argv[i]); collect_usage(stderr); return 2; }
#undef OPTV
        if (missing) { fprintf(stderr, "llmscope collect: %s needs a value\n", argv[i]); return 2; }
    }
    if (!o.url || !o.dir) { fprintf(stderr, "llmscope collect: --url and -o are required\n"); collect_usage(stderr); return 2; }
    return collect_run(&o);
}
