/* Model downloads (cmd_pull.c): hf://OWNER/REPO/FILE and http(s):// URLs into a cache folder, with a progress bar,
 * resume after a cut (HTTP Range) and sha256 verification. Built with libcurl when CMake finds it. */
#ifndef TERNLM_CLI_FETCH_H
#define TERNLM_CLI_FETCH_H

/* 1 for hf://, http:// and https:// sources. */
int fetch_is_remote(const char *src);
/* Downloads src into the cache (or finds it there) and returns its local path in *local (malloc'd).
 * sha256_hex: the expected digest (64 hex digits) or NULL (then Hugging Face's X-Linked-ETag / ETag is used
 * when it is a sha256). Returns 0 or an exit code (1 download/verify error, 2 a bad source or digest). */
int fetch_model(const char *src, const char *sha256_hex, char **local);

#endif
