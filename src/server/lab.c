// lab.c — the injected pathologies (see lab.h). Each is written the way it
// is found in real code, under a realistic function name, so profiles show
// what a user would see.
#include "lab.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compute/threadpool.h"
#include "prof/sync.h"

lab_kind lab_case = LAB_OFF;

static const char *const names[] = {
    [LAB_ALLOC_CHURN] = "alloc-churn", [LAB_SINGLE_TOKENIZER] = "single-tokenizer",
    [LAB_YIELD_PER_TOKEN] = "yield-per-token", [LAB_FALSE_SHARING] = "false-sharing",
    [LAB_GLOBAL_LOCK] = "global-lock", [LAB_SLOW_CLIENTS] = "slow-clients", [LAB_HEAP_GROWTH] = "heap-growth",
};

bool lab_parse(const char *name, lab_kind *out) {
    for (int i = 1; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(name, names[i])) { *out = (lab_kind)i; return true; }
    return false;
}

const char *lab_names(void) {
    return "alloc-churn, single-tokenizer, yield-per-token, false-sharing, global-lock, slow-clients, heap-growth";
}

// ---- alloc-churn ---------------------------------------------------------------

typedef struct piece { char *text; struct piece *next; } piece;

// Splits into one heap string per byte, then joins them back by growing a
// string one piece at a time: the anti-pattern pooled buffers replace.
__attribute__((noinline)) static char *prompt_split_and_join(const char *p, size_t n) {
    piece *head = NULL, **tail = &head;
    for (size_t i = 0; i < n; i++) {
        piece *pc = malloc(sizeof *pc);
        if (!pc) break;
        pc->text = strndup(p + i, 1);
        pc->next = NULL;
        *tail = pc;
        tail = &pc->next;
    }
    char *s = NULL;
    size_t len = 0;
    for (piece *pc = head; pc;) {
        size_t l = pc->text ? strlen(pc->text) : 0;
        char *ns = realloc(s, len + l + 1);
        if (ns) { s = ns; memcpy(s + len, pc->text, l); len += l; s[len] = 0; }
        piece *next = pc->next;
        free(pc->text);
        free(pc);
        pc = next;
    }
    return s;
}

__attribute__((noinline)) void prompt_preprocess(const char *prompt, size_t len) {
    // Several normalisation passes, each a fresh split-and-join.
    for (int pass = 0; pass < 160; pass++) {
        char *s = prompt_split_and_join(prompt, len);
        free(s);
    }
}

int tokenize_passes(void) { return lab_case == LAB_SINGLE_TOKENIZER ? 24 : 1; }

// ---- yield-per-token -------------------------------------------------------------

__attribute__((noinline)) void decode_yield(void) {
    sched_yield();
    struct timespec ts = {0, 200 * 1000};
    nanosleep(&ts, NULL);
}

// ---- false-sharing ---------------------------------------------------------------

// One counter per thread, all in one cache line.
static struct { _Atomic uint64_t steps; } step_stats[8];

__attribute__((noinline)) static void stats_count_work(int ith, int nth) {
    (void)nth;
    _Atomic uint64_t *c = &step_stats[ith & 7].steps;
    for (int i = 0; i < 200000; i++) atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

void lab_install(void) {
    if (lab_case == LAB_FALSE_SHARING) tp_lab_hook = stats_count_work;
}

// ---- global-lock -----------------------------------------------------------------

static prof_mutex global_lock;
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void) { prof_mutex_init(&global_lock, "global"); }

// A blocking "check" (2 ms) done synchronously while holding one lock for
// every request.
__attribute__((noinline)) void auth_check(void) {
    pthread_once(&global_once, global_init);
    prof_mutex_lock(&global_lock);
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
    prof_mutex_unlock(&global_lock);
}

// ---- heap-growth -----------------------------------------------------------------

typedef struct session { struct session *next; char *prompt, *output; char *scratch; } session;
static session *sessions;
static pthread_mutex_t sessions_mu = PTHREAD_MUTEX_INITIALIZER;

__attribute__((noinline)) void session_retain(const char *prompt, size_t plen, const char *out, size_t olen) {
    session *s = calloc(1, sizeof *s);
    if (!s) return;
    s->prompt = strndup(prompt, plen);
    s->output = strndup(out ? out : "", olen);
    s->scratch = malloc(64 * 1024);   // a per-request buffer kept "for reuse" and never reused
    if (s->scratch) memset(s->scratch, 1, 64 * 1024);
    pthread_mutex_lock(&sessions_mu);
    s->next = sessions;
    sessions = s;
    pthread_mutex_unlock(&sessions_mu);
}
