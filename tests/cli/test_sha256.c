/* The CLI's SHA-256 against FIPS 180-4 / NIST test vectors, fed in one piece and in awkward chunks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

static int fails;

static void expect(const char *label, const void *data, size_t n, size_t chunk, const char *want) {
    sha256_ctx c;
    sha256_init(&c);
    const unsigned char *p = data;
    for (size_t off = 0; off < n; off += chunk) sha256_update(&c, p + off, n - off < chunk ? n - off : chunk);
    unsigned char d[32];
    char hex[65];
    sha256_final(&c, d);
    sha256_hex(d, hex);
    if (strcmp(hex, want)) {
        fprintf(stderr, "FAIL: %s (chunks of %zu): %s, want %s\n", label, chunk, hex, want);
        fails++;
    }
}

int main(void) {
    static const struct { const char *label, *text, *want; } v[] = {
        {"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"448 bits", "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"896 bits",
         "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
        {"55 bytes (one block with the length)", "1234567890123456789012345678901234567890123456789012345",
         "03c3a70e99ed5eeccd80f73771fcf1ece643d939d9ecc76f25544b0233f708e9"},
        {"56 bytes (the length spills into a second block)", "12345678901234567890123456789012345678901234567890123456",
         "0be66ce72c2467e793202906000672306661791622e0ca9adf4a8955b2ed189c"},
    };
    const size_t chunks[] = {1, 3, 63, 64, 65, 1000};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++)
            expect(v[i].label, v[i].text, strlen(v[i].text), chunks[c], v[i].want);
    char *million = malloc(1000000);
    if (!million) return 1;
    memset(million, 'a', 1000000);
    expect("a million a's", million, 1000000, 4096, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    expect("a million a's", million, 1000000, 999, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
    printf("sha256: %d failed\n", fails);
    return fails != 0;
}
