// chat.c — chat templates for the common families (see chat.h). The
// renderings follow the families' reference templates; BOS is not written
// here (the tokenizer adds it as the model's metadata says).
#include "chat.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

chat_tmpl chat_detect(const char *t, size_t len) {
    if (!t) return CHAT_CHATML;
    if (memmem(t, len, "<|start_header_id|>", 19)) return CHAT_LLAMA3;
    if (memmem(t, len, "<|im_start|>", 12)) return CHAT_CHATML;
    if (memmem(t, len, "[INST]", 6)) return CHAT_LLAMA2;
    if (memmem(t, len, "<|user|>", 8)) return CHAT_ZEPHYR;
    return CHAT_CHATML;
}

const char *chat_tmpl_name(chat_tmpl t) {
    switch (t) {
    case CHAT_LLAMA2: return "llama-2";
    case CHAT_LLAMA3: return "llama-3";
    case CHAT_ZEPHYR: return "zephyr";
    default: return "chatml";
    }
}

typedef struct sb { char *p; size_t n, cap; bool oom; } sb;

static void put(sb *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) { b->oom = true; return; }
        if (b->p && (size_t)w < b->cap - b->n) { b->n += (size_t)w; return; }
        size_t nc = (b->cap + (size_t)w + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = nc;
    }
}

char *chat_render(chat_tmpl t, const chat_msg *m, int n) {
    sb b = {0};
    put(&b, "%s", "");
    switch (t) {
    case CHAT_LLAMA2: {
        // [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] …
        const char *sys = NULL;
        bool open = false;
        for (int i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) { sys = m[i].content; continue; }
            if (!strcmp(m[i].role, "assistant")) {
                put(&b, " %s </s><s>", m[i].content);
                open = false;
                continue;
            }
            if (sys) { put(&b, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", sys, m[i].content); sys = NULL; }
            else put(&b, "[INST] %s [/INST]", m[i].content);
            open = true;
        }
        if (!open && sys) put(&b, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n [/INST]", sys);
        break;
    }
    case CHAT_LLAMA3:
        for (int i = 0; i < n; i++)
            put(&b, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", m[i].role, m[i].content);
        put(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_ZEPHYR:
        for (int i = 0; i < n; i++) put(&b, "<|%s|>\n%s</s>\n", m[i].role, m[i].content);
        put(&b, "<|assistant|>\n");
        break;
    default:
        for (int i = 0; i < n; i++) put(&b, "<|im_start|>%s\n%s<|im_end|>\n", m[i].role, m[i].content);
        put(&b, "<|im_start|>assistant\n");
        break;
    }
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}
