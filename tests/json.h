/* A minimal JSON reader for test fixtures (ref.json, golden jsonl). Not part of the runtime. */
#ifndef TERNLM_TEST_JSON_H
#define TERNLM_TEST_JSON_H

#include <stddef.h>

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
    jtype type;
    double num;
    char *str;          /* J_STR: UTF-8 bytes, str_len of them (may contain NUL) */
    size_t str_len;
    struct jval *items; /* J_ARR / J_OBJ values */
    char **keys;        /* J_OBJ keys */
    size_t n;
} jval;

/* Parse text; returns NULL on a syntax error. */
jval *json_parse(const char *text, size_t len);
void json_free(jval *v);
const jval *json_get(const jval *obj, const char *key); /* NULL if absent */
char *read_whole_file(const char *path, size_t *len);   /* NUL-terminated; NULL on failure */

#endif
