// cmd_bench.c — `llmscope bench`: prompt processing (pp) and text generation
// (tg) speed in tokens/s, as llama-bench reports them (mean ± sd over -r
// repetitions after one warm-up), plus the machine's memory read bandwidth
// measured in the same run and the decode's weight traffic as a fraction of it,
// and, after every pp run, the threads' rate at the vector multiply-add that
// prefill's products are made of, with prefill's own rate as a fraction of it.
// With --parallel N the tg test also runs as N sequences decoded together
// (one token of each per step, logits for all, as a server's batch does),
// paired round by round with the single-sequence run. With --n-depth D the
// tg test also runs on an empty context (positions from 0) right after each
// run at depth, and the median of the paired ratios says how much of its
// speed decode keeps at depth D.
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute/cpu.h"
#include "compute/matmul.h"
#include "compute/threadpool.h"
#include "model/llama.h"
#include "opt.h"
#include "tools.h"
#include "util/util.h"

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: llmscope bench -m FILE [-p N] [-n N] [-d N] [-np N] [-t N] [-r N] [--mmap] [--json]\n"
            "  -p, --n-prompt N   prompt tokens for the pp test (default 128; 0 skips it)\n"
            "  -n, --n-gen N      generated tokens for the tg test (default 64; 0 skips it)\n"
            "  -d, --n-depth N    tokens already in the context when each test starts (default 0);\n"
            "                     tg also runs from position 0, paired, for the speed kept at depth\n"
            "  -np, --parallel N  also run tg as N sequences decoded together, paired with the\n"
            "                     single-sequence run in every repetition (default 1: off)\n"
            "  -t, --threads N    compute threads (default: all CPUs)\n"
            "  --cpu-affinity LIST    pin compute thread i to the i-th CPU of LIST (e.g. 0-3,6)\n"
            "  --numa MODE            off (default), distribute (threads over nodes) or isolate\n"
            "  --kv-type f16|f32      KV cache elements (default f16)\n"
            "  --mmap             map the model file (4 KiB pages) instead of reading it into\n"
            "                     2 MiB transparent huge pages\n"
            "  -r, --repetitions  runs per test after one warm-up (default 3)\n"
            "  --no-bw            skip the memory bandwidth measurement\n"
            "  --json             one JSON object on stdout instead of the table\n");
}

#define BENCH_MAX_PAR 256   // most sequences --parallel takes (a batch holds 512 tokens)

typedef struct stat_s { double mean, sd; } stat_s;

// Weight multiply-adds of one prompt token in the layers' products (the
// classifier runs for the last token only; attention is not counted).
static double layer_macs(const llama_model *m) {
    double s = 0;
    for (int l = 0; l < m->hp.n_layer; l++) {
        const llama_layer *L = &m->layers[l];
        const mm_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) s += (double)ws[i]->K * (double)ws[i]->N;
    }
    return s;
}

static stat_s stats(const double *x, int n) {
    stat_s s = {0, 0};
    for (int i = 0; i < n; i++) s.mean += x[i];
    s.mean /= n;
    for (int i = 0; i < n; i++) s.sd += (x[i] - s.mean) * (x[i] - s.mean);
    s.sd = n > 1 ? sqrt(s.sd / (n - 1)) : 0.0;
    return s;
}

// One pp run: the whole prompt in batches from position d (the depth:
// positions below it hold earlier tokens). Returns seconds, < 0 on error.
static double run_pp(llama_ctx *c, const int32_t *toks, int32_t n, int32_t d, int32_t *pos, int32_t *seq) {
    char err[256];
    int32_t nb = llama_ctx_n_batch(c);
    uint64_t t0 = util_now_ns();
    for (int32_t at = 0; at < n; at += nb) {
        int32_t k = n - at < nb ? n - at : nb;
        for (int32_t i = 0; i < k; i++) pos[i] = d + at + i;
        llama_batch b = {.n_tokens = k, .token = toks + at, .pos = pos, .seq = seq, .want_logits = NULL};
        if (llama_decode(c, &b, err, sizeof err)) { fprintf(stderr, "llmscope bench: %s\n", err); return -1; }
    }
    return (double)(util_now_ns() - t0) / 1e9;
}

// One tg run: n steps from position d (as llama-bench's tg test), each with
// one token of each of the ns sequences 0..ns-1 and the logits of all of
// them. Returns seconds, < 0 on error.
static double run_tg(llama_ctx *c, const int32_t *toks, int32_t n, int32_t d, int32_t ns) {
    char err[256];
    int32_t tok[BENCH_MAX_PAR], pos[BENCH_MAX_PAR], seq[BENCH_MAX_PAR];
    int8_t want[BENCH_MAX_PAR];
    uint64_t t0 = util_now_ns();
    for (int32_t i = 0; i < n; i++) {
        for (int32_t j = 0; j < ns; j++) {
            tok[j] = toks[(i + 7 * j) % n];   // sequences differ, as a server's do
            pos[j] = d + i;
            seq[j] = j;
            want[j] = 1;
        }
        llama_batch b = {.n_tokens = ns, .token = tok, .pos = pos, .seq = seq, .want_logits = want};
        if (llama_decode(c, &b, err, sizeof err)) { fprintf(stderr, "llmscope bench: %s\n", err); return -1; }
    }
    return (double)(util_now_ns() - t0) / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *x, int n) {   // sorts x
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

int cmd_bench(int argc, char **argv) {
    const char *cpu_affinity = NULL, *numa = NULL, *model_path = NULL;
    int64_t n_prompt = 128, n_gen = 64, n_depth = 0, n_threads = 0, reps = 3, n_par = 1;
    bool json = false, no_bw = false, use_mmap = false;
    enum llama_kv_type kv_type = LLAMA_KV_F16;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        bool miss = false, ok = true;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { bench_usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "--no-bw")) no_bw = true;
        else if (!strcmp(argv[i], "--mmap")) use_mmap = true;
        else if (opt_value(argc, argv, &i, "-m", "--model", &v, &miss)) model_path = v;
        else if (opt_value(argc, argv, &i, "-p", "--n-prompt", &v, &miss)) ok = miss || opt_i64("bench", "-p", v, 0, 1 << 16, &n_prompt);
        else if (opt_value(argc, argv, &i, "-n", "--n-gen", &v, &miss)) ok = miss || opt_i64("bench", "-n", v, 0, 1 << 16, &n_gen);
        else if (opt_value(argc, argv, &i, "-d", "--n-depth", &v, &miss)) ok = miss || opt_i64("bench", "-d", v, 0, 1 << 20, &n_depth);
        else if (opt_value(argc, argv, &i, "-np", "--parallel", &v, &miss)) ok = miss || opt_i64("bench", "--parallel", v, 1, BENCH_MAX_PAR, &n_par);
        else if (opt_value(argc, argv, &i, "-t", "--threads", &v, &miss)) ok = miss || opt_i64("bench", "-t", v, 1, 1024, &n_threads);
        else if (opt_value(argc, argv, &i, NULL, "--cpu-affinity", &v, &miss)) cpu_affinity = v;
        else if (opt_value(argc, argv, &i, NULL, "--numa", &v, &miss)) numa = v;
        else if (opt_value(argc, argv, &i, NULL, "--kv-type", &v, &miss)) {
            if (!miss && !(ok = llama_kv_type_parse(v, &kv_type))) fprintf(stderr, "llmscope bench: --kv-type: '%s' is not f16 or f32\n", v);
        }
        else if (opt_value(argc, argv, &i, "-r", "--repetitions", &v, &miss)) ok = miss || opt_i64("bench", "-r", v, 1, 1000, &reps);
        else {
            fprintf(stderr, "llmscope bench: unknown argument '%s'\n", argv[i]);
            bench_usage(stderr);
            return 2;
        }
        if (miss) { fprintf(stderr, "llmscope bench: %s needs a value\n", argv[i]); return 2; }
        if (!ok) return 2;
    }
    if (!model_path) { bench_usage(stderr); return 2; }

    char err[512];
    llama_model *m = llama_load_with(model_path, &(llama_load_params){.mmap = use_mmap}, err, sizeof err);
    if (!m) { fprintf(stderr, "llmscope bench: %s\n", err); return 1; }
    int32_t need = (int32_t)(n_prompt > n_gen ? n_prompt : n_gen);
    const int32_t depth = (int32_t)n_depth;
    if ((int64_t)need + n_depth > m->hp.n_ctx_train && m->hp.n_ctx_train > 0)
        fprintf(stderr, "llmscope bench: note: depth %d + %d tokens is past the model's training context of %d\n", depth,
                need, m->hp.n_ctx_train);
    const int32_t npar = n_gen > 0 ? (int32_t)n_par : 1;
    llama_ctx_params cp = {.n_ctx = need + depth > 16 ? need + depth : 16, .n_seq = npar, .n_batch = 512, .n_threads = (int32_t)n_threads,
                          .cpu_affinity = cpu_affinity, .numa = numa, .kv_type = kv_type};
    llama_ctx *c = llama_ctx_new(m, &cp, err, sizeof err);
    if (!c) { fprintf(stderr, "llmscope bench: %s\n", err); llama_free(m); return 1; }
    int nth = llama_ctx_n_threads(c);

    // Deterministic token ids (speed does not depend on them).
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)((need > depth ? need : depth) + 1));
    int32_t *pos = malloc(sizeof(int32_t) * 512), *seq = calloc(512, sizeof(int32_t));
    double *pp = calloc((size_t)reps, sizeof(double)), *tg = calloc((size_t)reps, sizeof(double));
    double *tgp = calloc((size_t)reps, sizeof(double)), *ratio = calloc((size_t)reps, sizeof(double));
    double *tg0 = calloc((size_t)reps, sizeof(double)), *kept = calloc((size_t)reps, sizeof(double));
    double *peak = calloc((size_t)reps, sizeof(double)), *pfrac = calloc((size_t)reps, sizeof(double));
    double *bws = calloc((size_t)reps, sizeof(double)), *bfrac = calloc((size_t)reps, sizeof(double));
    tp_pool *probe = NULL, *bw_pool = NULL;
    int n_peak = 0, n_bw = 0, rc = 0;
    if (!toks || !pos || !seq || !pp || !tg || !tgp || !ratio || !tg0 || !kept || !peak || !pfrac || !bws || !bfrac) {
        fprintf(stderr, "llmscope bench: out of memory\n");
        rc = 1;
        goto done;
    }
    uint64_t r = 12345;
    for (int32_t i = 0; i <= (need > depth ? need : depth); i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((r >> 33) % (uint64_t)m->hp.n_vocab);
    }
    // The context the tests start from: depth tokens at positions 0..d-1,
    // written once (each test writes only above them, so they stay).
    // With --parallel every sequence gets that context.
    for (int32_t j = 0; j < npar && depth > 0; j++) {
        for (int32_t i = 0; i < 512; i++) seq[i] = j;
        if (run_pp(c, toks, depth, 0, pos, seq) < 0) { rc = 1; goto done; }
    }
    for (int32_t i = 0; i < 512; i++) seq[i] = 0;
    if (n_prompt > 0) {
        if (run_pp(c, toks, (int32_t)n_prompt, depth, pos, seq) < 0) { rc = 1; goto done; }   // warm-up
        probe = cpu_level() >= CPU_LEVEL_AVX2 ? tp_create(nth, "probe") : NULL;
        const double macs = (double)n_prompt * layer_macs(m) + (double)m->output.K * (double)m->output.N;
        for (int i = 0; i < reps; i++) {
            double s = run_pp(c, toks, (int32_t)n_prompt, depth, pos, seq);
            if (s < 0) { rc = 1; goto done; }
            pp[i] = n_prompt / s;
            // The machine's multiply-add rate right after the run: on a shared
            // host it moves by up to 2x within minutes, and prefill with it.
            double pk = probe ? mm_measure_madd_peak(probe) : 0.0;
            if (pk > 0) { peak[n_peak] = pk; pfrac[n_peak++] = macs / s / pk; }
        }
    }
    if (n_gen > 0) {
        if (run_tg(c, toks, (int32_t)(n_gen < 8 ? n_gen : 8), depth, npar) < 0) { rc = 1; goto done; }
        if (!no_bw) bw_pool = tp_create(nth, "bw");
        for (int i = 0; i < reps; i++) {
            double s = run_tg(c, toks, (int32_t)n_gen, depth, 1);
            if (s < 0) { rc = 1; goto done; }
            tg[i] = n_gen / s;
            // The memory read bandwidth right after the run: this host's memory
            // moves between two speeds (about 35 and 60 GB/s) from one minute to
            // the next, and one probe for all rounds paired decodes from one
            // speed with a probe from the other.
            const double b = bw_pool ? mm_measure_read_bw(bw_pool, (size_t)1 << 30, 3) : 0.0;
            if (b > 0) { bws[n_bw] = b; bfrac[n_bw++] = (double)m->weight_bytes * tg[i] / b; }
            if (npar > 1) {   // the same round, right after: a paired ratio
                s = run_tg(c, toks, (int32_t)n_gen, depth, npar);
                if (s < 0) { rc = 1; goto done; }
                tgp[i] = (double)npar * n_gen / s;
                ratio[i] = tgp[i] / tg[i];
            }
            if (depth > 0) {   // the same round on an empty context: positions 0.. (their
                               // cache entries are rewritten; speed does not depend on them)
                s = run_tg(c, toks, (int32_t)n_gen, 0, 1);
                if (s < 0) { rc = 1; goto done; }
                tg0[i] = n_gen / s;
                kept[i] = tg[i] / tg0[i];
            }
        }
    }
    if (!no_bw && n_gen == 0) {   // no decode runs to pair it with: one probe
        bw_pool = tp_create(nth, "bw");
        const double b = bw_pool ? mm_measure_read_bw(bw_pool, (size_t)1 << 30, 3) : 0.0;
        if (b > 0) bws[n_bw++] = b;
    }
    const double bw = n_bw ? median(bws, n_bw) : 0.0;   // sorted: bws[0] .. bws[n_bw - 1]
    stat_s sp = n_prompt > 0 ? stats(pp, (int)reps) : (stat_s){0, 0};
    stat_s sg = n_gen > 0 ? stats(tg, (int)reps) : (stat_s){0, 0};
    stat_s sgp = npar > 1 ? stats(tgp, (int)reps) : (stat_s){0, 0};
    stat_s sg0 = depth > 0 && n_gen > 0 ? stats(tg0, (int)reps) : (stat_s){0, 0};
    const double kept_med = depth > 0 && n_gen > 0 ? median(kept, (int)reps) : 0.0;   // sorted: kept[0] .. kept[reps - 1]
    // The speed-up: the median of the paired per-round ratios, and their range.
    const double x_med = median(ratio, (int)reps);   // sorted: ratio[0] and ratio[reps - 1] are the range
    const double peak_med = n_peak ? median(peak, n_peak) : 0.0, pfrac_med = n_peak ? median(pfrac, n_peak) : 0.0;
    double dec_bytes = (double)m->weight_bytes * sg.mean;   // bytes/s of weights streamed while decoding
    // The share: the median of the rounds' ratios, each decode against the probe right after it.
    const int n_frac = n_gen > 0 ? n_bw : 0;
    double frac = n_frac ? median(bfrac, n_frac) : 0.0;   // sorted: bfrac[0] .. bfrac[n_frac - 1]
    const char *tname = ggml_type_name(m->ftype);
    char cpu[256], wmem[160];
    cpu_describe(cpu, sizeof cpu);
    llama_weights_memory(m, wmem, sizeof wmem);

    if (json) {
        // Built with jansson so names from the (untrusted) file are escaped.
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:i, s:s, s:I, s:I, s:{s:I, s:f, s:f}, s:{s:I, s:f, s:f}, s:f, s:f, s:f}",
                              "model", m->name, "type", tname, "params", (json_int_t)m->n_params,
                              "weight_bytes", (json_int_t)m->weight_bytes, "threads", nth, "cpu", cpu,
                              "repetitions", (json_int_t)reps, "n_depth", (json_int_t)n_depth,
                              "pp", "n_prompt", (json_int_t)n_prompt, "avg_ts", sp.mean, "stddev_ts", sp.sd,
                              "tg", "n_gen", (json_int_t)n_gen, "avg_ts", sg.mean, "stddev_ts", sg.sd,
                              "mem_read_bw_bytes_per_s", bw, "decode_weight_bytes_per_s", dec_bytes,
                              "decode_bw_fraction", frac);
        if (o) json_object_set_new(o, "kv_type", json_string(llama_ctx_kv_type(c)));
        if (o) {
            double pr;
            int npairs, nsw;
            const bool on = llama_ctx_decode_prefetch(c, &pr, &npairs, &nsw);
            json_object_set_new(o, "decode_prefetch", json_pack("{s:b, s:f, s:i, s:i}", "on", on, "other_time_ratio", pr,
                                                                "pairs", npairs, "switches", nsw));
        }
        if (o) json_object_set_new(o, "weights_memory", json_string(wmem));
        if (o) json_object_set_new(o, "weights_huge_page_bytes", json_integer(llama_weights_huge_bytes(m)));
        if (o && n_bw) json_object_set_new(o, "mem_read_bw_probes", json_integer(n_bw));
        if (o && n_peak) {
            json_object_set_new(o, "madd_peak_per_s", json_real(peak_med));
            json_object_set_new(o, "madd_probe", json_string(mm_madd_probe_name()));
            json_object_set_new(o, "pp_madd_fraction", json_real(pfrac_med));
        }
        if (o && npar > 1)
            json_object_set_new(o, "tg_parallel",
                                json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:f}", "n_seq", (json_int_t)npar,
                                          "n_gen", (json_int_t)n_gen, "avg_ts", sgp.mean, "stddev_ts", sgp.sd,
                                          "speedup", x_med, "speedup_min", ratio[0], "speedup_max", ratio[reps - 1]));
        if (o && depth > 0 && n_gen > 0)
            json_object_set_new(o, "tg_empty",
                                json_pack("{s:f, s:f, s:f, s:f, s:f}", "avg_ts", sg0.mean, "stddev_ts", sg0.sd, "kept",
                                          kept_med, "kept_min", kept[0], "kept_max", kept[reps - 1]));
        char *txt = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (txt) printf("%s\n", txt);
        else { fprintf(stderr, "llmscope bench: cannot format JSON\n"); rc = 1; }
        free(txt);
        json_decref(o);
    } else {
        printf("| model | type | size | params | threads | test | t/s |\n");
        printf("| --- | --- | ---: | ---: | ---: | --- | ---: |\n");
        double mib = (double)gguf_file_size(m->gguf) / (1 << 20), mp = (double)m->n_params / 1e6;
        char at[32] = "";   // llama-bench's label for a test at depth: "tg64 @ d2048"
        if (depth > 0) snprintf(at, sizeof at, " @ d%d", depth);
        if (n_prompt > 0)
            printf("| %s | %s | %.2f MiB | %.2f M | %d | pp%lld%s | %.2f ± %.2f |\n", m->name, tname, mib, mp, nth,
                   (long long)n_prompt, at, sp.mean, sp.sd);
        if (n_gen > 0)
            printf("| %s | %s | %.2f MiB | %.2f M | %d | tg%lld%s | %.2f ± %.2f |\n", m->name, tname, mib, mp, nth,
                   (long long)n_gen, at, sg.mean, sg.sd);
        if (npar > 1)
            printf("| %s | %s | %.2f MiB | %.2f M | %d | tg%lld%s x%d | %.2f ± %.2f |\n", m->name, tname, mib, mp, nth,
                   (long long)n_gen, at, npar, sgp.mean, sgp.sd);
        if (depth > 0 && n_gen > 0)
            printf("| %s | %s | %.2f MiB | %.2f M | %d | tg%lld | %.2f ± %.2f |\n", m->name, tname, mib, mp, nth,
                   (long long)n_gen, sg0.mean, sg0.sd);
        printf("\ncpu: %s\nplacement: %s\nkv cache: %s\nweights: %s\n", cpu, llama_ctx_placement(c), llama_ctx_kv_type(c),
               wmem);
        {
            double pr;
            int npairs, nsw;
            const bool on = llama_ctx_decode_prefetch(c, &pr, &npairs, &nsw);
            if (npairs > 0)
                printf("decode prefetch: %s (strip kernels, one token; chosen by %d pairs of steps, %d switches; "
                       "the other choice took %.2fx the time, median of the last pairs)\n",
                       on ? "on" : "off", npairs, nsw, pr);
        }
        if (npar > 1)
            printf("parallel decode: %d sequences give %.2fx the tokens/s of one (median of %lld paired rounds; "
                   "%.2f-%.2f)\n", npar, x_med, (long long)reps, ratio[0], ratio[reps - 1]);
        if (depth > 0 && n_gen > 0)
            printf("depth: decode at %d tokens of context keeps %.0f%% of its speed on an empty one (median of %lld "
                   "paired rounds; %.0f-%.0f%%)\n", depth, 100 * kept_med, (long long)reps, 100 * kept[0],
                   100 * kept[reps - 1]);
        if (n_peak)
            printf("vector multiply-add rate: %.1f G/s (%d threads; %s, median of %d probes after the pp "
                   "runs); prefill's products ran at %.0f%% of it (median of the paired ratios)\n",
                   peak_med / 1e9, nth, mm_madd_probe_name(), n_peak, 100 * pfrac_med);
        if (bw > 0 && n_frac)
            printf("memory read bandwidth: %.1f GB/s (%d threads; median of %d probes, %.1f-%.1f, each right after "
                   "a tg run); decode streams %.1f MB of weights per token = %.1f GB/s, %.0f%% of it (median of "
                   "the rounds' ratios; %.0f-%.0f%%)\n",
                   bw / 1e9, nth, n_bw, bws[0] / 1e9, bws[n_bw - 1] / 1e9, m->weight_bytes / 1e6, dec_bytes / 1e9,
                   100 * frac, 100 * bfrac[0], 100 * bfrac[n_frac - 1]);
        else if (bw > 0)
            printf("memory read bandwidth: %.1f GB/s (%d threads)\n", bw / 1e9, nth);
    }
done:
    free(toks); free(pos); free(seq); free(pp); free(tg); free(tgp); free(ratio); free(tg0); free(kept); free(peak);
    free(pfrac); free(bws); free(bfrac);
    if (probe) tp_free(probe);
    if (bw_pool) tp_free(bw_pool);
    llama_ctx_free(c);
    llama_free(m);
    return rc;
}
