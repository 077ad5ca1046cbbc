/* Table-driven command-line parsing shared by every subcommand. Exit codes: 0 ok, 1 runtime or model
 * error, 2 usage error (unknown flag, bad value). */
#ifndef TERNLM_CLI_ARGS_H
#define TERNLM_CLI_ARGS_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

typedef enum {
    OPT_FLAG,
    OPT_INT,
    OPT_FLOAT,
    OPT_STR,
    OPT_U64,
    OPT_SEED,   /* uint64_t*; -1 means a random seed (llama-cli's spelling) */
    OPT_STRS,   /* str_list*; repeatable */
    OPT_NOTE,   /* takes a value that ternlm does not use: says so on stderr (help: the reason) */
    OPT_IGNORED /* takes a value, silently (kept for other subcommands' tables) */
} opt_kind;

enum { STR_LIST_MAX = 16 };
typedef struct str_list {
    const char *v[STR_LIST_MAX];
    int n;
} str_list;

typedef struct opt {
    const char *name;   /* "--temp" */
    const char *alias;  /* "-s" or NULL */
    opt_kind kind;
    void *ptr;          /* int*, int*, float*, const char**, uint64_t*, str_list*, or NULL for OPT_NOTE/OPT_IGNORED */
    const char *help;   /* NULL: not listed by --help (another spelling of the option above it) */
} opt;

typedef struct cmd_spec {
    const char *name, *synopsis, *about;
    const opt *opts;
    int max_pos;        /* positional arguments allowed */
} cmd_spec;

enum { ARGS_OK = 0, ARGS_HELP = -1, EXIT_RUNTIME = 1, EXIT_USAGE = 2, EXIT_INTERRUPTED = 130 };

/* Parses argv[1..]; positional arguments go to pos (at most spec->max_pos). -v / --version print the
 * version and return ARGS_HELP, as -h does. */
int args_parse(const cmd_spec *spec, int argc, char **argv, const char **pos, int *n_pos);
void args_usage(const cmd_spec *spec);
void cli_print_version(void);

/* Shared helpers for subcommands. */
struct ternlm_model;
/* Opens a GGUF file, or the embedded model for NULL. An hf://OWNER/REPO/FILE or http(s):// path is fetched into
 * the download cache first (cmd_pull.c). */
/* --i2s-layout 64: the I2_S layout of bitnet.cpp's NEON quantizer (ternlm_model_params.i2s_layout), for later opens. */
void cli_set_i2s_layout(int layout);
/* head_q8: 0 the file's head, 1 Q8_0, 2 int8 rows (head_quant_i8), 3 int4 rows (head_quant_i4). */
#define CLI_HEAD_QUANT_NAMES "q8_0, i8 or i4"
/* --head-quant's value to that number: NULL gives 0, an unknown name -1. */
int cli_head_quant(const char *name);
int cli_open_model(const char *path, const char *pre, int head_q8, const char *activation, int verbose,
                   struct ternlm_model **out);
int cli_parse_ids(const char *s, int32_t **ids, int *n);
/* The whole of a file, or of stdin for "-", NUL-terminated (the length excludes the NUL). NULL on failure,
 * with a message naming the problem (a directory, a missing file, a read error) printed to stderr. */
char *cli_read_all(const char *path, size_t *n);
/* TERNLM_KERNELS names a path this CPU and build run (or is unset): 0; otherwise prints why and returns
 * EXIT_USAGE. Every subcommand that computes or reports kernels checks it the same way. */
int cli_check_kernels_env(void);
/* Writes n bytes of text from a model file so that nothing in it can act on the terminal: control characters
 * (ESC, so ANSI/OSC sequences; C1 controls; DEL), bidirectional overrides and invalid UTF-8 are written as escapes
 * (\x1b, \u202e, \n). json: inside a JSON string (also escapes " and \; invalid bytes become \ufffd). */
void cli_put_escaped(FILE *f, const char *text, size_t n, int json);

#endif
