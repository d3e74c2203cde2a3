// unwind.h — the frame-pointer unwinder every profiler in src/prof uses: it
// follows the saved-frame-pointer chain (x86-64 and AArch64: [fp] = caller's
// fp, [fp + 8] = return address) and validates every frame before reading it.
//
// Signal safety: prof_unwind_fp() and prof_unwind_context() are
// async-signal-safe (no allocation, no locks, no stdio, errno preserved): a
// SIGPROF handler calls them. They never fault on a corrupt chain: a frame is
// followed only if it is 8-byte aligned, strictly above the previous one,
// less than PROF_UNWIND_MAX_FRAME bytes above it, and inside the stack bounds
// [lo, hi) — or, when the bounds are unknown (lo == hi == 0), readable, which
// is tested by copying it with process_vm_readv(2) (a syscall that fails with
// EFAULT instead of faulting).
#ifndef LLMSCOPE_PROF_UNWIND_H
#define LLMSCOPE_PROF_UNWIND_H

#include <stdint.h>

#define PROF_MAX_DEPTH 64                        // frames kept per stack
#define PROF_UNWIND_MAX_FRAME ((uintptr_t)4 << 20)  // bytes between two frame pointers, at most

// Walks the chain starting at frame pointer `fp`: out[0] is the return
// address stored in that frame ([fp + 8]), out[1] the next one up, and so on.
// Stops at the first invalid frame, a zero return address, or `max` entries.
// Returns the number of addresses written.
int prof_unwind_fp(uintptr_t fp, uintptr_t lo, uintptr_t hi, uintptr_t *out, int max);

// For signal handlers: out[0] is the interrupted instruction pointer, then
// the chain from the interrupted frame pointer (ucontext is the handler's
// third argument). Returns the number of addresses written.
//
// A leaf function compiled without a frame (GCC omits it in leaves that use
// no stack, even with -mno-omit-leaf-frame-pointer), or interrupted before
// its prologue, leaves the frame pointer at its caller's frame: its caller
// would be missing. So the word at the stack pointer (x86-64) or the link
// register (AArch64) is added after out[0] when it is a code address of a
// loaded file just after a call instruction and differs from the first
// return address of the chain.
int prof_unwind_context(const void *ucontext, uintptr_t lo, uintptr_t hi, uintptr_t *out, int max);

// Loads the executable file mappings (/proc/self/maps) the leaf check above
// uses. Call outside signal context, before profiling (allocates).
void prof_unwind_load_text(void);

#endif
