// tokenizer.h — text <-> token ids for the vocabularies GGUF files carry:
// SentencePiece-style (tokenizer.ggml.model = "llama": score-driven bigram
// merges, U+2581 for spaces, <0xXX> byte fallback) and byte-level BPE
// ("gpt2": ranked merges over the GPT-2 byte-to-unicode alphabet, after a
// pre-tokenizer split named by tokenizer.ggml.pre). Special (control) tokens
// in text are recognised when asked, BOS/EOS follow the file's metadata, and
// the streaming detokenizer only ever emits complete UTF-8.
// Thread safety: a tok_vocab is immutable after tok_load_gguf(); encode and
// decode may run on any number of threads at once.
#ifndef LLMSCOPE_TOKENIZER_H
#define LLMSCOPE_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "gguf.h"

typedef struct tok_vocab tok_vocab;

enum tok_kind { TOK_KIND_SPM = 1, TOK_KIND_BPE = 2 };

// Builds the vocabulary from tokenizer.ggml.* metadata (the strings are
// copied, so the gguf_ctx may be closed afterwards). NULL with a one-line
// message in err when the metadata is missing or inconsistent.
tok_vocab *tok_load_gguf(const gguf_ctx *g, char *err, size_t errlen);
void tok_free(tok_vocab *v);

enum tok_kind tok_kind(const tok_vocab *v);
const char *tok_pre_name(const tok_vocab *v);   // pre-tokenizer in use ("default", "llama3", …)
int32_t tok_n_vocab(const tok_vocab *v);
int32_t tok_bos(const tok_vocab *v);             // -1 when none
int32_t tok_eos(const tok_vocab *v);             // -1 when none
bool tok_add_bos(const tok_vocab *v);            // encode(add_special) prepends BOS
bool tok_add_eos(const tok_vocab *v);            // encode(add_special) appends EOS
// End of generation: EOS, EOT or another end-of-generation control token.
bool tok_is_eog(const tok_vocab *v, int32_t id);
bool tok_is_control(const tok_vocab *v, int32_t id);
// The token's text as stored in the file (NUL-terminated; "" when out of range).
const char *tok_text(const tok_vocab *v, int32_t id);
// Finds a token by its exact stored text; -1 when absent.
int32_t tok_find(const tok_vocab *v, const char *text, size_t len);

// Encodes len bytes of text. add_special: add BOS/EOS as the metadata says.
// parse_special: control/user-defined token texts in the input (e.g. "<s>")
// become those tokens instead of being split as text.
// Writes at most cap ids to out and returns the number of ids the full
// encoding has (call again with a larger buffer when it exceeds cap), or -1
// on failure (allocation) with errno set. Invalid UTF-8 is encoded byte-wise
// through byte fallback, never refused here (the server validates first).
int64_t tok_encode(const tok_vocab *v, const char *text, size_t len,
                   bool add_special, bool parse_special, int32_t *out, int64_t cap);

// The bytes a token stands for (U+2581 -> ' ', <0xXX> -> the byte, GPT-2
// byte alphabet reversed; control tokens give "" unless render_special).
// Writes at most cap bytes and returns the piece's full length.
int tok_piece(const tok_vocab *v, int32_t id, bool render_special, char *buf, int cap);

// Streaming detokenizer: feeds ids one at a time and emits only complete
// UTF-8 sequences, holding back a partial character until its remaining
// bytes arrive. With strip_leading_space (SentencePiece after BOS), the
// first emitted space is dropped, as llama.cpp and llama2.c print it.
#define TOK_PIECE_MAX 4096                        // bytes of one token's text (load refuses longer)
#define TOK_STREAM_MAX (3 * (TOK_PIECE_MAX + 8))   // output of one tok_stream_push or flush

typedef struct tok_stream {
    char pending[8];    // bytes of an incomplete UTF-8 character
    int n_pending;
    bool strip_leading_space;
    bool started;       // something has been emitted
} tok_stream;

void tok_stream_init(tok_stream *s, const tok_vocab *v, bool strip_leading_space);
// Appends the completed text for token id to out and returns the number of
// bytes written. A token's text is at most TOK_PIECE_MAX bytes and each
// invalid byte becomes U+FFFD (3 bytes), so a buffer of TOK_STREAM_MAX
// always holds one push; a shorter one drops whole characters, never part of
// one, so what is written is always valid UTF-8.
int tok_stream_push(const tok_vocab *v, tok_stream *s, int32_t id, char *out, int cap);
// Emits what is still held back (an incomplete character becomes U+FFFD).
int tok_stream_flush(tok_stream *s, char *out, int cap);

// Whole-sequence decode into a NUL-terminated string (malloc'd; NULL on OOM).
char *tok_decode(const tok_vocab *v, const int32_t *ids, int64_t n, bool render_special);

#endif
