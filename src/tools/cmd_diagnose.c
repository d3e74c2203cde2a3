// cmd_diagnose.c — `llmscope diagnose`: collect + report in one command. With
// --model it first starts an llm-server of its own (on a free loopback port
// unless --url names one) and stops it afterwards; otherwise it diagnoses the
// server at --url. Arguments it does not know are `llmscope load` flags.
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "diagnose.h"
#include "opt.h"
#include "tools.h"
#include "util/util.h"

static void diagnose_usage(FILE *f) {
    fprintf(f,
"usage: llmscope diagnose [--url http://HOST:PORT] [--seconds N] [--model FILE [--server-flags \"FLAGS\"]]\n"
"                         [--format text|md|html] [--report FILE] [-o DIR] [--perf] [LOAD FLAGS...]\n"
"\n"
"Loads the server, captures its evidence for N seconds (default 10) and prints\n"
"the cross-checked report: `llmscope collect` then `llmscope report`.\n"
"  --model FILE          start llm-server with this model first (on a free port unless --url is given)\n"
"  --server-flags FLAGS  more llm-server flags for the server it starts\n"
"  -o DIR                where the capture goes (default diagnose-YYYYmmdd-HHMMSS)\n"
"  --report FILE         write the report there instead of stdout\n"
"  LOAD FLAGS            `llmscope load` flags for the load during the window (default:\n"
"                        -c 8 --openai completions --max-tokens 32); -z is added to cover the window\n");
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &l) == 0) port = ntohs(a.sin_port);
    close(fd);
    return port;
}

// The llm-server next to this binary, else the one on PATH.
static void server_binary(char *out, size_t n) {
    char self[2048];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k > 0 && n > sizeof self + 16) {
        self[k] = 0;
        char *s = strrchr(self, '/');
        if (s) {
            *s = 0;
            snprintf(out, n, "%s/llm-server", self);
            if (access(out, X_OK) == 0) return;
        }
    }
    snprintf(out, n, "llm-server");
}

static int split(const char *s, char **v, int max) {
    int n = 0;
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s", s ? s : "");
    for (char *t = strtok(buf, " \t"); t && n < max; t = strtok(NULL, " \t")) v[n++] = t;
    return n;
}

// Polls /health until it answers 200 (the model is loaded) or the child exits.
static bool wait_ready(pid_t pid, int port, double timeout_s) {
    uint64_t end = util_now_ns() + (uint64_t)(timeout_s * 1e9);
    while (util_now_ns() < end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return false;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            const char *req = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            char buf[64] = "";
            if (send(fd, req, strlen(req), MSG_NOSIGNAL) > 0 && recv(fd, buf, sizeof buf - 1, 0) > 12 && !strncmp(buf + 9, "200", 3)) {
                close(fd);
                return true;
            }
        }
        if (fd >= 0) close(fd);
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

int cmd_diagnose(int argc, char **argv) {
    const char *url = NULL, *model = NULL, *sflags = NULL, *dir = NULL, *report_path = NULL;
    double seconds = 10;
    bool perf = false;
    report_format fmt = REPORT_TEXT;
    char load[8192] = "";
    size_t ll = 0;
    bool has_dur = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        bool missing = false;
#define OPTV(s, l) (opt_value(argc, argv, &i, s, l, &v, &missing) && !missing)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { diagnose_usage(stdout); return 0; }
        if (OPTV(NULL, "--url")) url = v;
        else if (OPTV(NULL, "--seconds")) { if (!opt_f64("diagnose", "--seconds", v, 1, 60, &seconds)) return 2; }
        else if (OPTV(NULL, "--model")) model = v;
        else if (OPTV(NULL, "--server-flags")) sflags = v;
        else if (OPTV("-o", "--output")) dir = v;
        else if (OPTV(NULL, "--report")) report_path = v;
        else if (OPTV(NULL, "--format")) {
            if (!strcmp(v, "text")) fmt = REPORT_TEXT;
            else if (!strcmp(v, "md")) fmt = REPORT_MD;
            else if (!strcmp(v, "html")) fmt = REPORT_HTML;
            else { fprintf(stderr, "llmscope diagnose: --format must be text, md or html\n"); return 2; }
        } else if (OPTV(NULL, "--load")) {
            ll += (size_t)snprintf(load + ll, ll < sizeof load ? sizeof load - ll : 0, " %s", v);
        } else if (!strcmp(argv[i], "--perf")) perf = true;
        else if (!missing) {
            // A load flag: quote it so the load sees it as one argument.
            if (!strcmp(argv[i], "-z") || !strncmp(argv[i], "-z=", 3) || !strcmp(argv[i], "-n")) has_dur = true;
            bool quote = strpbrk(argv[i], " \t\"") != NULL;
            ll += (size_t)snprintf(load + ll, ll < sizeof load ? sizeof load - ll : 0, quote ? " '%s'" : " %s", argv[i]);
        }
#undef OPTV
        if (missing) { fprintf(stderr, "llmscope diagnose: %s needs a value\n", argv[i]); return 2; }
        if (ll >= sizeof load) { fprintf(stderr, "llmscope diagnose: load flags too long\n"); return 2; }
    }
    if (strstr(load, " -z") || strstr(load, " -n ")) has_dur = true;
    if (!url && !model) { fprintf(stderr, "llmscope diagnose: give --url of a running server, or --model to start one\n"); diagnose_usage(stderr); return 2; }
    if (!ll) ll = (size_t)snprintf(load, sizeof load, " -c 8 --openai completions --max-tokens 32");
    if (!has_dur) snprintf(load + ll, sizeof load - ll, " -z %.0fs", seconds + 2);
    char dbuf[64];
    if (!dir) {
        time_t now = time(NULL);
        strftime(dbuf, sizeof dbuf, "diagnose-%Y%m%d-%H%M%S", localtime(&now));
        dir = dbuf;
    }
    char urlbuf[128];
    pid_t srv = 0;
    if (model) {
        int port = -1;
        if (url) {
            const char *c = strrchr(url + 7, ':');
            port = c ? atoi(c + 1) : 80;
        } else {
            port = free_port();
            snprintf(urlbuf, sizeof urlbuf, "http://127.0.0.1:%d", port);
            url = urlbuf;
        }
        if (port <= 0) { fprintf(stderr, "llmscope diagnose: no free port\n"); return 1; }
        char bin[4096], addr[64], logp[4200];
        server_binary(bin, sizeof bin);
        snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
        mkdir(dir, 0755);
        snprintf(logp, sizeof logp, "%s/server.log", dir);
        char *av[64];
        int n = 0;
        av[n++] = bin;
        av[n++] = "--model";
        av[n++] = (char *)model;
        av[n++] = "--http-addr";
        av[n++] = addr;
        n += split(sflags, av + n, 56);
        av[n] = NULL;
        srv = fork();
        if (srv == 0) {
            FILE *lf = freopen(logp, "w", stdout);
            if (lf) dup2(fileno(stdout), 2);
            execvp(bin, av);
            fprintf(stderr, "llmscope diagnose: cannot run %s: %s\n", bin, strerror(errno));
            _exit(127);
        }
        if (srv < 0) { fprintf(stderr, "llmscope diagnose: fork: %s\n", strerror(errno)); return 1; }
        if (!wait_ready(srv, port, 60)) {
            fprintf(stderr, "llmscope diagnose: the server did not become ready (see %s)\n", logp);
            kill(srv, SIGKILL);
            waitpid(srv, NULL, 0);
            return 1;
        }
    }
    collect_opts co = {.url = url, .seconds = seconds, .load = load, .perf = perf, .pid = srv, .dir = dir};
    int rc = collect_run(&co);
    if (srv > 0) {
        kill(srv, SIGTERM);
        int st;
        for (int k = 0; k < 200 && waitpid(srv, &st, WNOHANG) == 0; k++) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        if (waitpid(srv, &st, WNOHANG) == 0) { kill(srv, SIGKILL); waitpid(srv, &st, 0); }
    }
    if (rc) return rc;
    return report_run(dir, fmt, report_path);
}
