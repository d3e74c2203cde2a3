// unwind.c — the validating frame-pointer walker (see unwind.h). Reads only
// memory it has checked: within the known stack, or copied by the kernel.
#include "unwind.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

// Copies the two words at fp (saved fp, return address) into w; false when
// they are not readable. With known bounds the check is arithmetic; without,
// the kernel copies them (EFAULT instead of SIGSEGV).
__attribute__((no_sanitize("address", "undefined")))
static bool read_frame(uintptr_t fp, uintptr_t lo, uintptr_t hi, uintptr_t w[2]) {
    if (lo || hi) {
        if (fp < lo || fp > hi - 2 * sizeof(uintptr_t)) return false;
        const volatile uintptr_t *p = (const volatile uintptr_t *)fp;
        w[0] = p[0];
        w[1] = p[1];
        return true;
    }
    if (fp < 4096) return false;
    struct iovec local = {w, 2 * sizeof(uintptr_t)};
    struct iovec remote = {(void *)fp, 2 * sizeof(uintptr_t)};
    int saved = errno;
    long n = syscall(SYS_process_vm_readv, (long)getpid(), &local, 1L, &remote, 1L, 0L);
    errno = saved;
    return n == (long)(2 * sizeof(uintptr_t));
}

// Executable mappings, double-buffered: a handler reads the table `cur`
// points at; a reload fills the other and then switches. A handler that took
// its pointer two reloads ago can still be reading the table being refilled,
// so every field is a (relaxed, lock-free) atomic: such a reader sees each
// entry old or new, never a torn word, and the count is zeroed before the
// entries change and published after them.
#define MAX_TEXT 64
typedef struct text_table { _Atomic int n; _Atomic uintptr_t lo[MAX_TEXT], hi[MAX_TEXT]; } text_table;
static text_table texts[2];
static _Atomic(text_table *) cur_text;
static pthread_mutex_t text_mu = PTHREAD_MUTEX_INITIALIZER;

void prof_unwind_load_text(void) {
    pthread_mutex_lock(&text_mu);
    text_table *t = atomic_load(&cur_text) == &texts[0] ? &texts[1] : &texts[0];
    atomic_store_explicit(&t->n, 0, memory_order_release);
    int n = 0;
    FILE *f = fopen("/proc/self/maps", "r");
    if (f) {
        char line[512];
        while (n < MAX_TEXT && fgets(line, sizeof line, f)) {
            uintptr_t lo, hi;
            char perm[8], path[8] = "";
            if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %*s %*s %*s %7s", &lo, &hi, perm, path) < 3) continue;
            if (perm[2] != 'x' || path[0] != '/') continue;   // file-backed code only (never unmapped under us but by dlclose)
            atomic_store_explicit(&t->lo[n], lo, memory_order_relaxed);
            atomic_store_explicit(&t->hi[n], hi, memory_order_relaxed);
            n++;
        }
        fclose(f);
    }
    atomic_store_explicit(&t->n, n, memory_order_release);
    atomic_store(&cur_text, t);
    pthread_mutex_unlock(&text_mu);
}

// True when [a - 7, a) lies in one known code mapping.
static bool in_text(const text_table *t, uintptr_t a) {
    const int n = t ? atomic_load_explicit(&t->n, memory_order_acquire) : 0;
    for (int i = 0; i < n; i++)
        if (a >= atomic_load_explicit(&t->lo[i], memory_order_relaxed) + 7 &&
            a <= atomic_load_explicit(&t->hi[i], memory_order_relaxed))
            return true;   // no wrap-around for small a
    return false;
}

// Does the code before `ret` end with a call (E8 rel32, or FF /2)?
__attribute__((no_sanitize("address", "undefined")))
static bool after_call(uintptr_t ret) {
#if defined(__x86_64__)
    const volatile uint8_t *b = (const volatile uint8_t *)ret;
    if (b[-5] == 0xE8) return true;
    for (int k = 2; k <= 7; k++)
        if (b[-k] == 0xFF && ((b[-k + 1] >> 3) & 7) == 2) return true;
    return false;
#elif defined(__aarch64__)
    const volatile uint32_t *w = (const volatile uint32_t *)(ret & ~(uintptr_t)3);
    uint32_t insn = w[-1];
    return (insn & 0xFC000000u) == 0x94000000u || (insn & 0xFFFFFC1Fu) == 0xD63F0000u;   // BL, BLR
#else
    (void)ret; return false;
#endif
}

int prof_unwind_fp(uintptr_t fp, uintptr_t lo, uintptr_t hi, uintptr_t *out, int max) {
    int n = 0;
    while (n < max) {
        if (fp == 0 || (fp & (sizeof(uintptr_t) - 1))) break;
        uintptr_t w[2];
        if (!read_frame(fp, lo, hi, w)) break;
        uintptr_t next = w[0], ret = w[1];
        if (ret == 0) break;
        out[n++] = ret;
        // The caller's frame is strictly above this one, and not far above.
        if (next <= fp || next - fp > PROF_UNWIND_MAX_FRAME) break;
        fp = next;
    }
    return n;
}

int prof_unwind_context(const void *ucontext, uintptr_t lo, uintptr_t hi, uintptr_t *out, int max) {
    if (!ucontext || max <= 0) return 0;
    const ucontext_t *uc = ucontext;
    uintptr_t pc, fp;
#if defined(__x86_64__)
    pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
#elif defined(__aarch64__)
    pc = (uintptr_t)uc->uc_mcontext.pc;
    fp = (uintptr_t)uc->uc_mcontext.regs[29];
#else
    (void)uc; return 0;
#endif
    out[0] = pc;
    int n = 1;
    if (max < 2) return n;
    // The frameless-leaf check (see unwind.h).
    uintptr_t cand = 0, first = 0, w[2];
#if defined(__x86_64__)
    uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    if (!(sp & 7) && read_frame(sp, lo, hi, w)) cand = w[0];
#elif defined(__aarch64__)
    cand = (uintptr_t)uc->uc_mcontext.regs[30];
#endif
    if (!(fp & 7) && read_frame(fp, lo, hi, w)) first = w[1];
    const text_table *t = atomic_load_explicit(&cur_text, memory_order_acquire);
    if (cand && cand != first && cand != pc && in_text(t, cand) && after_call(cand)) out[n++] = cand;
    return n + prof_unwind_fp(fp, lo, hi, out + n, max - n);
}
