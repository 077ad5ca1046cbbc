#include "unicode.h"

int tl_unicode_class(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return TL_UC_L;
        if (cp >= '0' && cp <= '9') return TL_UC_N;
        /* ASCII punctuation in \p{P}: !"#%&'()*,-./:;?@[\]_{} */
        static const char punct[] = "!\"#%&'()*,-./:;?@[\\]_{}";
        for (const char *p = punct; *p; p++)
            if ((uint32_t)*p == cp) return TL_UC_P;
        return TL_UC_O;
    }
    unsigned lo = 0, hi = tl_unicode_n_ranges;
    while (lo < hi) {
        const unsigned mid = (lo + hi) / 2;
        if (cp < tl_unicode_ranges[mid].first) hi = mid;
        else if (cp > tl_unicode_ranges[mid].last) lo = mid + 1;
        else return tl_unicode_ranges[mid].cls;
    }
    return TL_UC_O;
}

int tl_unicode_is_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

size_t tl_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    const uint8_t b = s[0];
    size_t len;
    uint32_t v;
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    if ((b & 0xE0) == 0xC0) { len = 2; v = b & 0x1F; }
    else if ((b & 0xF0) == 0xE0) { len = 3; v = b & 0x0F; }
    else if ((b & 0xF8) == 0xF0) { len = 4; v = b & 0x07; }
    else goto invalid;
    if (len > n) goto invalid;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) goto invalid;
        v = v << 6 | (s[i] & 0x3F);
    }
    if ((len == 2 && v < 0x80) || (len == 3 && v < 0x800) || (len == 4 && v < 0x10000) || v > 0x10FFFF ||
        (v >= 0xD800 && v <= 0xDFFF))
        goto invalid;
    *cp = v;
    return len;
invalid:
    *cp = 0x110000u + b;
    return 1;
}

int tl_utf8_encode(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t tl_utf8_complete_prefix(const uint8_t *s, size_t n) {
    /* look back at most 3 bytes for a lead byte whose sequence is not finished */
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        const uint8_t b = s[n - back];
        if ((b & 0xC0) == 0x80) continue;     /* continuation: keep looking */
        size_t need = (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 1;
        return need > back ? n - back : n;
    }
    return n;
}
