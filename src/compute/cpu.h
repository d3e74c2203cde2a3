// cpu.h — run-time CPU feature detection. Features count only when both
// cpuid advertises them and the OS has enabled the register state (xgetbv);
// AMX additionally needs the kernel's permission (arch_prctl), and is never
// assumed from cpuid alone.
#ifndef LLMSCOPE_CPU_H
#define LLMSCOPE_CPU_H

#include <stdbool.h>

typedef struct cpu_features {
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512_vnni, avx512_bf16;
    bool avx_vnni;
    bool amx_usable;      // cpuid says AMX and the kernel granted tile state
} cpu_features;

// Detected once (thread-safe, idempotent).
const cpu_features *cpu_get_features(void);

// Kernel level actually used by the compute code.
enum cpu_level { CPU_LEVEL_SCALAR = 0, CPU_LEVEL_AVX2 = 1, CPU_LEVEL_AVX512 = 2 };
// The best level the machine supports, lowered by the LLMSCOPE_CPU environment
// variable ("scalar", "avx2", "avx512") so tests can compare paths.
enum cpu_level cpu_level(void);
// Forces a level (tests); clamps to what the machine supports. Not thread-safe
// against concurrent kernels: call before starting work.
void cpu_set_level(enum cpu_level level);
const char *cpu_level_name(enum cpu_level level);
// Whether the AVX-512 VNNI kernels run: the level is AVX-512 and the CPU
// has VNNI (the q8_0/q4_0 and K-quant strips and the VNNI tiles).
static inline bool cpu_vnni512(void) { return cpu_level() >= CPU_LEVEL_AVX512 && cpu_get_features()->avx512_vnni; }
// One line such as "avx512 (avx2 fma f16c avx512f avx512bw avx512_vnni; amx: not granted)".
void cpu_describe(char *buf, unsigned long len);

#endif
