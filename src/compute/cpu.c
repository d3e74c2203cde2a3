// cpu.c — run-time CPU feature detection (see cpu.h). A feature counts only
// when cpuid advertises it and XCR0 shows the OS saves its register state;
// AMX also needs the kernel to grant tile data (arch_prctl), checked, never used.
#include "cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static cpu_features g_feat;
static enum cpu_level g_best, g_level;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect(void) {
    unsigned a, b, c, d;
    cpu_features *f = &g_feat;
    if (!__get_cpuid(1, &a, &b, &c, &d)) goto done;
    bool osxsave = c & (1u << 27), avx = c & (1u << 28);
    bool fma = c & (1u << 12), f16c = c & (1u << 29);
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    bool ymm_os = (xcr0 & 0x6) == 0x6;            // SSE + AVX state
    bool zmm_os = (xcr0 & 0xe6) == 0xe6;          // + opmask, ZMM_Hi256, Hi16_ZMM
    bool amx_os = (xcr0 & (3ull << 17)) == (3ull << 17);
    unsigned b7 = 0, c7 = 0, d7 = 0, a71 = 0;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b7, c7, d7);
        __cpuid_count(7, 1, a71, b, c, d);
    }
    if (avx && ymm_os) {
        f->avx2 = b7 & (1u << 5);
        f->fma = fma;
        f->f16c = f16c;
        f->avx_vnni = a71 & (1u << 4);
    }
    if (zmm_os) {
        f->avx512f = b7 & (1u << 16);
        f->avx512dq = b7 & (1u << 17);
        f->avx512bw = b7 & (1u << 30);
        f->avx512vl = b7 & (1u << 31);
        f->avx512_vnni = c7 & (1u << 11);
        f->avx512_bf16 = a71 & (1u << 5);
    }
    bool amx_cpu = (d7 & (1u << 24)) && (d7 & (1u << 25));
    if (amx_cpu && amx_os) {
        // ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18
        f->amx_usable = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    }
done:
    g_best = CPU_LEVEL_SCALAR;
    if (f->avx2 && f->fma && f->f16c) g_best = CPU_LEVEL_AVX2;
    if (g_best == CPU_LEVEL_AVX2 && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq) g_best = CPU_LEVEL_AVX512;
    g_level = g_best;
    const char *env = getenv("LLMSCOPE_CPU");
    if (env) {
        if (!strcmp(env, "scalar")) g_level = CPU_LEVEL_SCALAR;
        else if (!strcmp(env, "avx2") && g_best >= CPU_LEVEL_AVX2) g_level = CPU_LEVEL_AVX2;
    }
}

const cpu_features *cpu_get_features(void) {
    pthread_once(&g_once, detect);
    return &g_feat;
}

enum cpu_level cpu_level(void) {
    pthread_once(&g_once, detect);
    return g_level;
}

void cpu_set_level(enum cpu_level level) {
    pthread_once(&g_once, detect);
    g_level = level > g_best ? g_best : level;
}

const char *cpu_level_name(enum cpu_level level) {
    switch (level) {
    case CPU_LEVEL_AVX512: return "avx512";
    case CPU_LEVEL_AVX2: return "avx2";
    default: return "scalar";
    }
}

void cpu_describe(char *buf, unsigned long len) {
    const cpu_features *f = cpu_get_features();
    snprintf(buf, len, "%s (%s%s%s%s%s%s%s%s%s; amx: %s)", cpu_level_name(cpu_level()),
             f->avx2 ? "avx2 " : "", f->fma ? "fma " : "", f->f16c ? "f16c " : "",
             f->avx512f ? "avx512f " : "", f->avx512bw ? "avx512bw " : "", f->avx512_vnni ? "avx512_vnni " : "",
             f->avx_vnni ? "avx_vnni " : "", f->avx512_bf16 ? "avx512_bf16 " : "",
             f->avx2 ? "" : "no simd", f->amx_usable ? "granted (unused)" : "not granted");
}
