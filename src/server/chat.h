// chat.h — chat prompts: renders OpenAI-style messages with the model's chat
// template. The family is chosen from the GGUF key tokenizer.chat_template
// (by the markers the Jinja text contains) — llama-2 ([INST]), llama-3
// (<|start_header_id|>), chatml (<|im_start|>), zephyr (<|user|>) — and falls
// back to chatml, as llama.cpp does, when the file has no template or an
// unrecognised one. Thread-safe (pure functions).
#ifndef LLMSCOPE_CHAT_H
#define LLMSCOPE_CHAT_H

#include <stddef.h>

typedef enum chat_tmpl { CHAT_CHATML, CHAT_LLAMA2, CHAT_LLAMA3, CHAT_ZEPHYR } chat_tmpl;

typedef struct chat_msg {
    const char *role;      // "system", "user", "assistant" (others pass through)
    const char *content;
} chat_msg;

// Picks the family from a template text (NULL or unknown: chatml).
chat_tmpl chat_detect(const char *tmpl, size_t len);
const char *chat_tmpl_name(chat_tmpl t);
// Renders the messages and the opening of the assistant's turn; malloc'd,
// NUL-terminated. NULL on OOM.
char *chat_render(chat_tmpl t, const chat_msg *msgs, int n);

#endif
