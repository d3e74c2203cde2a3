// chat.c — chat templates for the common families (see chat.h). The
// renderings follow the families' reference templates; BOS is not written
// here (the tokenizer adds it as the model's metadata says).
#include "chat.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

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

char *chat_render(chat_tmpl t, const chat_msg *m, int n) {
    util_buf b = {0};
    util_buf_printf(&b, "%s", "");
    switch (t) {
    case CHAT_LLAMA2: {
        // [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] …
        const char *sys = NULL;
        bool open = false;
        for (int i = 0; i < n; i++) {
            if (!strcmp(m[i].role, "system")) { sys = m[i].content; continue; }
            if (!strcmp(m[i].role, "assistant")) {
                util_buf_printf(&b, " %s </s><s>", m[i].content);
                open = false;
                continue;
            }
            if (sys) { util_buf_printf(&b, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", sys, m[i].content); sys = NULL; }
            else util_buf_printf(&b, "[INST] %s [/INST]", m[i].content);
            open = true;
        }
        if (!open && sys) util_buf_printf(&b, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n [/INST]", sys);
        break;
    }
    case CHAT_LLAMA3:
        for (int i = 0; i < n; i++)
            util_buf_printf(&b, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", m[i].role, m[i].content);
        util_buf_printf(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case CHAT_ZEPHYR:
        for (int i = 0; i < n; i++) util_buf_printf(&b, "<|%s|>\n%s</s>\n", m[i].role, m[i].content);
        util_buf_printf(&b, "<|assistant|>\n");
        break;
    default:
        for (int i = 0; i < n; i++) util_buf_printf(&b, "<|im_start|>%s\n%s<|im_end|>\n", m[i].role, m[i].content);
        util_buf_printf(&b, "<|im_start|>assistant\n");
        break;
    }
    if (b.oom) { free(b.s); return NULL; }
    return b.s;
}
