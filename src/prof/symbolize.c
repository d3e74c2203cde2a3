// symbolize.c — addresses to function/file/line with libdw (see symbolize.h).
// The process is reported to libdw from /proc/self/maps, so the main binary,
// shared libraries and their separate debug files (if installed) are found
// the way debuggers find them.
#include "symbolize.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_MAPPINGS 512

struct prof_symbolizer {
    Dwfl *dwfl;                        // NULL when libdw could not report the process
    prof_mapping maps[MAX_MAPPINGS];
    char *paths[MAX_MAPPINGS];         // owned copies of the file names
    int nmaps;
};

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_linux_proc_find_elf,
    .find_debuginfo = dwfl_standard_find_debuginfo,
};

static void hex(char *dst, const unsigned char *b, int n) {
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < n; i++) { dst[2 * i] = d[b[i] >> 4]; dst[2 * i + 1] = d[b[i] & 15]; }
    dst[2 * n] = 0;
}

static void read_maps(prof_symbolizer *s) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    char line[4096];
    while (s->nmaps < MAX_MAPPINGS && fgets(line, sizeof line, f)) {
        uintptr_t lo, hi, off;
        char perm[8];
        int pos = 0;
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %" SCNxPTR " %*s %*s %n", &lo, &hi, perm, &off, &pos) < 4) continue;
        if (perm[2] != 'x' || pos <= 0) continue;
        char *path = line + pos;
        path[strcspn(path, "\n")] = 0;
        if (path[0] != '/') continue;           // [vdso], anonymous JIT code …
        prof_mapping *m = &s->maps[s->nmaps];
        m->start = lo; m->limit = hi; m->offset = off;
        s->paths[s->nmaps] = strdup(path);
        if (!s->paths[s->nmaps]) break;
        m->file = s->paths[s->nmaps];
        m->build_id[0] = 0;
        if (s->dwfl) {
            Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, lo);
            const unsigned char *bits;
            GElf_Addr vaddr, bias;
            if (mod) dwfl_module_getelf(mod, &bias);   // loads the file, and with it its notes
            int nb = mod ? dwfl_module_build_id(mod, &bits, &vaddr) : -1;
            if (nb > 0 && nb <= 40) hex(m->build_id, bits, nb);
        }
        s->nmaps++;
    }
    fclose(f);
}

prof_symbolizer *prof_sym_new(void) {
    prof_symbolizer *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->dwfl = dwfl_begin(&callbacks);
    if (s->dwfl) {
        dwfl_report_begin(s->dwfl);
        if (dwfl_linux_proc_report(s->dwfl, getpid()) != 0 || dwfl_report_end(s->dwfl, NULL, NULL) != 0) {
            dwfl_end(s->dwfl);
            s->dwfl = NULL;
        }
    }
    read_maps(s);
    return s;
}

void prof_sym_free(prof_symbolizer *s) {
    if (!s) return;
    if (s->dwfl) dwfl_end(s->dwfl);
    for (int i = 0; i < s->nmaps; i++) free(s->paths[i]);
    free(s);
#ifdef __GLIBC__
    // libdw's tables for one symbolizer are 15-20 MB, allocated and freed on
    // the capturing thread. glibc keeps freed memory in that thread's arena,
    // and captures served by ever new connection threads land in up to 8
    // arenas per core, so without this RSS grew by that much per capture
    // until every arena held a copy (scripts/soak.sh, docs/soak.md).
    malloc_trim(0);
#endif
}

const prof_mapping *prof_sym_mappings(prof_symbolizer *s, int *n) {
    *n = s->nmaps;
    return s->maps;
}

int prof_sym_mapping_of(prof_symbolizer *s, uintptr_t pc) {
    for (int i = 0; i < s->nmaps; i++)
        if (pc >= s->maps[i].start && pc < s->maps[i].limit) return i;
    return -1;
}

static int attr_int(Dwarf_Die *die, int name) {
    Dwarf_Attribute a;
    Dwarf_Word w;
    if (!dwarf_attr_integrate(die, name, &a) || dwarf_formudata(&a, &w) != 0) return 0;
    return (int)w;
}

int prof_sym_lookup(prof_symbolizer *s, uintptr_t pc, prof_frame *out, int max) {
    if (!s || !s->dwfl || max <= 0) return 0;
    Dwfl_Module *mod = dwfl_addrmodule(s->dwfl, pc);
    if (!mod) return 0;
    GElf_Off symoff = 0;
    GElf_Sym sym;
    const char *symname = dwfl_module_addrinfo(mod, pc, &symoff, &sym, NULL, NULL, NULL);

    // The line of pc itself (innermost frame).
    const char *file = NULL;
    int line = 0;
    Dwfl_Line *dl = dwfl_module_getsrc(mod, pc);
    if (dl) file = dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL);

    // Inlined frames, innermost first: the innermost function scope around
    // pc, then the concrete scopes that contain it (dwarf_getscopes_die; the
    // scopes dwarf_getscopes lists after an inlined instance are those of its
    // abstract definition, not of the function it was inlined into).
    int n = 0;
    Dwarf_Addr bias = 0;
    Dwarf_Die *cu = dwfl_module_addrdie(mod, pc, &bias);
    Dwarf_Die *scopes = NULL, *chain = NULL;
    int ns = cu ? dwarf_getscopes(cu, pc - bias, &scopes) : 0;
    int first = -1;
    for (int i = 0; i < ns && first < 0; i++) {
        int tag = dwarf_tag(&scopes[i]);
        if (tag == DW_TAG_inlined_subroutine || tag == DW_TAG_subprogram) first = i;
    }
    int nc = first >= 0 ? dwarf_getscopes_die(&scopes[first], &chain) : 0;
    Dwarf_Files *files = NULL;
    size_t nfiles = 0;
    if (cu && dwarf_getsrcfiles(cu, &files, &nfiles) != 0) files = NULL;
    for (int i = 0; i < nc && n < max; i++) {
        int tag = dwarf_tag(&chain[i]);
        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram) continue;
        out[n].func = dwarf_diename(&chain[i]);
        out[n].file = file;
        out[n].line = line;
        out[n].start_line = attr_int(&chain[i], DW_AT_decl_line);
        out[n].offset = 0;
        n++;
        if (tag == DW_TAG_subprogram) break;
        // The caller's position is the inlined call site.
        line = attr_int(&chain[i], DW_AT_call_line);
        Dwarf_Attribute a;
        Dwarf_Word fi;
        const char *cf = NULL;
        if (files && dwarf_attr(&chain[i], DW_AT_call_file, &a) && dwarf_formudata(&a, &fi) == 0 && fi < nfiles)
            cf = dwarf_filesrc(files, (size_t)fi, NULL, NULL);
        if (cf) file = cf;
    }
    free(chain);
    free(scopes);
    if (n == 0) {   // no DWARF: the ELF symbol alone
        if (!symname && !file) return 0;
        out[0].func = symname;
        out[0].file = file;
        out[0].line = line;
        out[0].start_line = 0;
        n = 1;
    }
    // The physical frame carries the ELF symbol's name when DWARF had none.
    if (!out[n - 1].func) out[n - 1].func = symname;
    out[n - 1].offset = symoff;
    return n;
}
