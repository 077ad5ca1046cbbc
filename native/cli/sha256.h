/* SHA-256 (FIPS 180-4), for verifying downloads. */
#ifndef TERNLM_CLI_SHA256_H
#define TERNLM_CLI_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct sha256_ctx {
    uint32_t h[8];
    uint64_t n_bytes;
    unsigned char block[64];
    size_t n_block;
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t n);
void sha256_final(sha256_ctx *c, unsigned char digest[32]);
/* digest as 64 lowercase hex digits plus a NUL */
void sha256_hex(const unsigned char digest[32], char out[65]);
/* The digest of a whole file as hex. 0 on success, -1 if it cannot be read. */
int sha256_file(const char *path, char out[65]);

#endif
