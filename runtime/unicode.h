/* Unicode facts the tokenizers need: UTF-8 decoding and character classes. */
#ifndef TERNLM_UNICODE_H
#define TERNLM_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum tl_ucls { TL_UC_O = 0, TL_UC_L = 1, TL_UC_N = 2, TL_UC_P = 3 };

typedef struct tl_unicode_range {
    uint32_t first, last;
    uint8_t cls;
} tl_unicode_range;

extern const tl_unicode_range tl_unicode_ranges[];
extern const unsigned tl_unicode_n_ranges;

/* Category class of a code point (L, N, P or O). */
int tl_unicode_class(uint32_t cp);
/* The White_Space property. */
int tl_unicode_is_space(uint32_t cp);

/* Decode one UTF-8 character at s[0..n). Returns its byte length (>= 1). An invalid or truncated sequence
 * yields length 1 and *cp = 0x110000 + byte, a value outside Unicode that is class O and not a space. */
size_t tl_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);
/* Encode a code point; returns the byte count (1..4). */
int tl_utf8_encode(uint32_t cp, char *out);
/* Length of the longest prefix of s[0..n) that is complete UTF-8 (an incomplete tail is not counted). */
size_t tl_utf8_complete_prefix(const uint8_t *s, size_t n);

#endif
