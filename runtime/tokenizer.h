/* Tokenizers: GPT-2 byte-level BPE with the llama3 / gpt2 / default pre-tokenizers, and SentencePiece
 * (../shared/specs/tokenizers.md). Everything is built from the GGUF's tokenizer.* keys. */
#ifndef TERNLM_TOKENIZER_H
#define TERNLM_TOKENIZER_H

#include "gguf.h"

typedef struct tl_tokenizer tl_tokenizer;

enum tl_tok_kind { TL_TOK_BPE, TL_TOK_SPM };
enum tl_pre { TL_PRE_LLAMA3, TL_PRE_GPT2, TL_PRE_DEFAULT, TL_PRE_QWEN2 /* llama3 with single digits */ };
enum tl_token_type { TL_TT_UNDEF = 0, TL_TT_NORMAL, TL_TT_UNKNOWN, TL_TT_CONTROL, TL_TT_USER, TL_TT_UNUSED, TL_TT_BYTE };

ternlm_status tl_tokenizer_load(tl_tokenizer **out, const gguf_file *g, const char *pre_override,
                                const tl_logger *log, ternlm_error *err);
void tl_tokenizer_free(tl_tokenizer *t);

uint32_t tl_tokenizer_n_vocab(const tl_tokenizer *t);
const char *tl_tokenizer_model_name(const tl_tokenizer *t);
const char *tl_tokenizer_pre_name(const tl_tokenizer *t);
int32_t tl_tokenizer_bos(const tl_tokenizer *t);
int32_t tl_tokenizer_eos(const tl_tokenizer *t);
int32_t tl_tokenizer_eot(const tl_tokenizer *t);
int tl_tokenizer_add_bos(const tl_tokenizer *t);
/* id of a token by its exact text, or -1 */
int32_t tl_tokenizer_find(const tl_tokenizer *t, const char *text, size_t len);

/* A growable list of ids. */
typedef struct tl_ids {
    int32_t *v;
    size_t n, cap;
    int oom;
    int too_dense; /* special-token matches beyond TL_SPECIAL_MATCHES_PER_BYTE (a hostile vocabulary) */
} tl_ids;
void tl_ids_push(tl_ids *ids, int32_t id);

/* The error for ids.too_dense. */
ternlm_status tl_tokenizer_too_dense(ternlm_error *err);
/* Encode text (no BOS/EOS handling) appending to ids. */
void tl_tokenizer_encode(const tl_tokenizer *t, const char *text, size_t len, int parse_special, tl_ids *ids);

/* ---- shared internals of the tokenizer files ---- */

/* string -> id hash map over the vocabulary */
typedef struct tl_strmap {
    int32_t *slots;
    uint64_t cap;
} tl_strmap;

typedef struct tl_piece {
    const char *p;
    uint32_t len;
} tl_piece;

struct tl_tokenizer {
    enum tl_tok_kind kind;
    enum tl_pre pre;
    uint32_t n_vocab;
    tl_piece *text;          /* token texts (point into the GGUF buffer) */
    float *scores;
    uint8_t *type;
    tl_strmap map;
    int32_t bos, eos, eot, eom, unk;
    int32_t eog_extra[3]; /* Qwen's <|fim_pad|>, <|repo_name|>, <|file_sep|> end generation too (llama.cpp), else -1 */
    int add_bos, add_eos, add_space_prefix, ignore_merges;
    /* BPE: merges as a hash of (left id, right id) -> rank and merged id */
    uint64_t *merge_keys;
    uint32_t *merge_rank;
    int32_t *merge_id;
    uint64_t merge_cap;
    uint16_t byte_cp[256];     /* BPE byte -> code point of its mapped character */
    int16_t cp_byte[0x144];    /* and back (-1: not in the map) */
    int32_t byte_token[256];   /* BPE: token of each byte's mapped character; SPM: <0xXX> */
    /* special tokens sorted longest first (then by id), and a matcher over their texts (special.c) */
    int32_t *special;
    uint32_t n_special;
    struct tl_special_matcher *specials;
    char *decoded;             /* BPE: token texts mapped back to bytes, concatenated */
    uint32_t *decoded_off;     /* n_vocab + 1 offsets into decoded */
};

int32_t tl_strmap_get(const tl_tokenizer *t, const char *s, size_t len);

/* BPE helpers (bpe.c) */
ternlm_status tl_bpe_init(tl_tokenizer *t, const gguf_file *g, ternlm_error *err);
void tl_bpe_encode_word(const tl_tokenizer *t, const uint8_t *w, size_t n, tl_ids *ids);
/* Pre-tokenize one raw fragment: calls emit for each piece (byte offsets). */
typedef void (*tl_piece_fn)(void *ctx, size_t start, size_t end);
void tl_pretokenize(enum tl_pre pre, const uint8_t *s, size_t n, tl_piece_fn emit, void *ctx);
/* Special-token splitting (special.c): one Aho-Corasick pass instead of one pass per special token. */
typedef struct tl_special_matcher tl_special_matcher;
tl_special_matcher *tl_special_matcher_new(const tl_tokenizer *t); /* over t->special; NULL when out of memory */
void tl_special_matcher_free(tl_special_matcher *am);
/* Calls emit for each fragment of s in order: [start, end) with token = the special id, or -1 for raw text.
 * USER-type tokens are split always, the others only with parse_special. Returns 1, 0 when out of memory, or -1
 * (and emits nothing) when special tokens match more than TL_SPECIAL_MATCHES_PER_BYTE times per byte: only a
 * vocabulary built to nest specials (a, aa, aaa, ...) does that, and the match list would not fit in memory. */
#define TL_SPECIAL_MATCHES_PER_BYTE 64
typedef void (*tl_special_fn)(void *ctx, size_t start, size_t end, int32_t token);
int tl_special_split(const tl_tokenizer *t, const uint8_t *s, size_t n, int parse_special, tl_special_fn emit, void *ctx);
/* SentencePiece (spm.c) */
void tl_spm_encode(const tl_tokenizer *t, const uint8_t *s, size_t n, tl_ids *ids);

#endif
