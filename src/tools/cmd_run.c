// cmd_run.c — `llmscope run`: one-shot generation. Prints the prompt, streams
// the generated text as it is sampled, and ends with a timing line on stderr.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/llama.h"
#include "model/sampler.h"
#include "opt.h"
#include "tools.h"
#include "util/util.h"

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: llmscope run -m FILE [-p PROMPT] [-n N] [options]\n"
            "  -m, --model FILE       GGUF model\n"
            "  -p, --prompt TEXT      prompt (default: empty, generation starts from BOS)\n"
            "  -n, --n-predict N      tokens to generate (default 128)\n"
            "  -t, --threads N        compute threads (default: all CPUs)\n"
            "  --cpu-affinity LIST    pin compute thread i to the i-th CPU of LIST (e.g. 0-3,6)\n"
            "  --numa MODE            off (default), distribute (threads over nodes) or isolate\n"
            "  -c, --ctx N            context length (default: the model's, at most 4096)\n"
            "  --kv-type f16|f32      KV cache elements (default f16)\n"
            "  --mmap                 map the model file (4 KiB pages) instead of reading it into\n"
            "                         2 MiB transparent huge pages\n"
            "  --temp T               temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K              (default 40)     --top-p P (default 0.95)\n"
            "  --min-p P              (default 0.05)   --repeat-penalty R (default 1.0)\n"
            "  -s, --seed N           sampling seed (default 0)\n"
            "  --no-bos               do not add BOS even when the model asks for it\n"
            "  --ids                  also print the generated token ids\n");
}

int cmd_run(int argc, char **argv) {
    const char *cpu_affinity = NULL, *numa = NULL, *model_path = NULL, *prompt = "";
    int64_t n_predict = 128, n_threads = 0, n_ctx = 0, top_k = 40, seed = 0;
    double temp = 0.8, top_p = 0.95, min_p = 0.05, rep = 1.0;
    bool no_bos = false, print_ids = false, use_mmap = false;
    enum llama_kv_type kv_type = LLAMA_KV_F16;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        bool miss = false, ok = true;
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { run_usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--no-bos")) no_bos = true;
        else if (!strcmp(argv[i], "--ids")) print_ids = true;
        else if (!strcmp(argv[i], "--mmap")) use_mmap = true;
        else if (opt_value(argc, argv, &i, "-m", "--model", &v, &miss)) model_path = v;
        else if (opt_value(argc, argv, &i, "-p", "--prompt", &v, &miss)) prompt = v;
        else if (opt_value(argc, argv, &i, "-n", "--n-predict", &v, &miss)) ok = miss || opt_i64("run", "-n", v, 0, 1 << 20, &n_predict);
        else if (opt_value(argc, argv, &i, "-t", "--threads", &v, &miss)) ok = miss || opt_i64("run", "-t", v, 1, 1024, &n_threads);
        else if (opt_value(argc, argv, &i, NULL, "--cpu-affinity", &v, &miss)) cpu_affinity = v;
        else if (opt_value(argc, argv, &i, NULL, "--numa", &v, &miss)) numa = v;
        else if (opt_value(argc, argv, &i, "-c", "--ctx", &v, &miss)) ok = miss || opt_i64("run", "--ctx", v, 1, 1 << 20, &n_ctx);
        else if (opt_value(argc, argv, &i, NULL, "--kv-type", &v, &miss)) {
            if (!miss && !(ok = llama_kv_type_parse(v, &kv_type))) fprintf(stderr, "llmscope run: --kv-type: '%s' is not f16 or f32\n", v);
        }
        else if (opt_value(argc, argv, &i, NULL, "--temp", &v, &miss)) ok = miss || opt_f64("run", "--temp", v, 0, 100, &temp);
        else if (opt_value(argc, argv, &i, NULL, "--top-k", &v, &miss)) ok = miss || opt_i64("run", "--top-k", v, 0, 1 << 30, &top_k);
        else if (opt_value(argc, argv, &i, NULL, "--top-p", &v, &miss)) ok = miss || opt_f64("run", "--top-p", v, 0, 1, &top_p);
        else if (opt_value(argc, argv, &i, NULL, "--min-p", &v, &miss)) ok = miss || opt_f64("run", "--min-p", v, 0, 1, &min_p);
        else if (opt_value(argc, argv, &i, NULL, "--repeat-penalty", &v, &miss)) ok = miss || opt_f64("run", "--repeat-penalty", v, 0.01, 100, &rep);
        else if (opt_value(argc, argv, &i, "-s", "--seed", &v, &miss)) ok = miss || opt_i64("run", "--seed", v, 0, INT64_MAX, &seed);
        else {
            fprintf(stderr, "llmscope run: unknown argument '%s'\n", argv[i]);
            run_usage(stderr);
            return 2;
        }
        if (miss) { fprintf(stderr, "llmscope run: %s needs a value\n", argv[i]); return 2; }
        if (!ok) return 2;
    }
    if (!model_path) { run_usage(stderr); return 2; }

    char err[512];
    llama_model *m = llama_load_with(model_path, &(llama_load_params){.mmap = use_mmap}, err, sizeof err);
    if (!m) { fprintf(stderr, "llmscope run: %s\n", err); return 1; }
    const tok_vocab *voc = m->vocab;
    size_t plen = strlen(prompt);
    int64_t cap = (int64_t)plen + 8;
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(cap + n_predict));
    int64_t n_prompt = toks ? tok_encode(voc, prompt, plen, !no_bos, true, toks, cap) : -1;
    if (n_prompt < 0 || n_prompt > cap) {
        fprintf(stderr, "llmscope run: %s\n", n_prompt < 0 ? "out of memory while tokenizing the prompt" : "cannot tokenize the prompt");
        free(toks);
        llama_free(m);
        return 1;
    }
    if (n_prompt == 0) {   // nothing to start from: begin at BOS
        if (tok_bos(voc) < 0) { fprintf(stderr, "llmscope run: empty prompt and the model has no BOS token\n"); free(toks); llama_free(m); return 1; }
        toks[n_prompt++] = tok_bos(voc);
    }
    llama_ctx_params cp = {.n_ctx = (int32_t)n_ctx, .n_seq = 1, .n_batch = 512, .n_threads = (int32_t)n_threads,
                          .cpu_affinity = cpu_affinity, .numa = numa, .kv_type = kv_type};
    llama_ctx *ctx = llama_ctx_new(m, &cp, err, sizeof err);
    if (!ctx) { fprintf(stderr, "llmscope run: %s\n", err); free(toks); llama_free(m); return 1; }
    const int32_t ctx_len = llama_ctx_n_ctx(ctx);
    if (n_prompt >= ctx_len) {
        fprintf(stderr, "llmscope run: the prompt has %lld tokens but the context holds %d\n", (long long)n_prompt, ctx_len);
        llama_ctx_free(ctx); free(toks); llama_free(m);
        return 1;
    }
    if (n_prompt + n_predict > ctx_len) n_predict = ctx_len - n_prompt;

    sampler_params sp = {.temperature = (float)temp, .top_k = (int32_t)top_k, .top_p = (float)top_p,
                         .min_p = (float)min_p, .repeat_penalty = (float)rep, .repeat_last_n = 64,
                         .seed = (uint64_t)seed};
    sampler *smp = sampler_new(&sp, m->hp.n_vocab);
    int32_t *pos = malloc(sizeof(int32_t) * 512), *seq = calloc(512, sizeof(int32_t));
    if (!smp || !pos || !seq) { fprintf(stderr, "llmscope run: out of memory\n"); return 1; }

    fputs(prompt, stdout);
    fflush(stdout);
    int rc = 0;
    // Prefill in chunks of the batch size; logits only after the last token.
    uint64_t t0 = util_now_ns();
    for (int64_t at = 0; at < n_prompt; at += 512) {
        int32_t n = (int32_t)(n_prompt - at < 512 ? n_prompt - at : 512);
        for (int32_t i = 0; i < n; i++) pos[i] = (int32_t)(at + i);
        llama_batch b = {.n_tokens = n, .token = toks + at, .pos = pos, .seq = seq, .want_logits = NULL};
        if (llama_decode(ctx, &b, err, sizeof err)) { fprintf(stderr, "llmscope run: %s\n", err); rc = 1; goto done; }
    }
    uint64_t t1 = util_now_ns();
    tok_stream st;
    tok_stream_init(&st, voc, plen == 0 && tok_kind(voc) == TOK_KIND_SPM);
    char piece[TOK_STREAM_MAX];
    int64_t n_gen = 0, n_tok = n_prompt;
    while (n_gen < n_predict) {
        int32_t next = sampler_sample(smp, llama_logits(ctx, 0), toks, (int32_t)n_tok);
        if (tok_is_eog(voc, next) || next == tok_bos(voc)) break;
        toks[n_tok++] = next;
        n_gen++;
        int w = tok_stream_push(voc, &st, next, piece, sizeof piece);
        fwrite(piece, 1, (size_t)w, stdout);
        fflush(stdout);
        if (n_gen == n_predict) break;
        int32_t p = (int32_t)(n_tok - 1);
        llama_batch b = {.n_tokens = 1, .token = &next, .pos = &p, .seq = seq, .want_logits = NULL};
        if (llama_decode(ctx, &b, err, sizeof err)) { fprintf(stderr, "\nllmscope run: %s\n", err); rc = 1; goto done; }
    }
    {
        int w = tok_stream_flush(&st, piece, sizeof piece);
        fwrite(piece, 1, (size_t)w, stdout);
    }
    uint64_t t2 = util_now_ns();
    fputc('\n', stdout);
    if (print_ids) {
        printf("ids:");
        for (int64_t i = 0; i < n_tok; i++) printf(" %d", toks[i]);
        printf("\n");
    }
    {
        double pms = (double)(t1 - t0) / 1e6, gms = (double)(t2 - t1) / 1e6;
        fprintf(stderr, "prompt: %lld tokens in %.1f ms (%.1f tok/s); generation: %lld tokens in %.1f ms (%.1f tok/s); %d threads\n",
                (long long)n_prompt, pms, pms > 0 ? n_prompt * 1e3 / pms : 0.0, (long long)n_gen, gms,
                gms > 0 ? n_gen * 1e3 / gms : 0.0, llama_ctx_n_threads(ctx));
    }
done:
    free(pos);
    free(seq);
    sampler_free(smp);
    llama_ctx_free(ctx);
    free(toks);
    llama_free(m);
    return rc;
}
