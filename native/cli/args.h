/* Table-driven command-line parsing shared by every subcommand. Exit codes: 0 ok, 1 runtime or model
 * error, 2 usage error (unknown flag, bad value). */
#ifndef TERNLM_CLI_ARGS_H
#define TERNLM_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { OPT_FLAG, OPT_INT, OPT_FLOAT, OPT_STR, OPT_U64, OPT_IGNORED } opt_kind;

typedef struct opt {
    const char *name;   /* "--temp" */
    const char *alias;  /* "-s" or NULL */
    opt_kind kind;
    void *ptr;          /* int*, int*, float*, const char**, uint64_t*, or NULL for OPT_IGNORED (takes a value) */
    const char *help;
} opt;

typedef struct cmd_spec {
    const char *name, *synopsis, *about;
    const opt *opts;
    int max_pos;        /* positional arguments allowed */
} cmd_spec;

enum { ARGS_OK = 0, ARGS_HELP = -1, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* Parses argv[1..]; positional arguments go to pos (at most spec->max_pos). */
int args_parse(const cmd_spec *spec, int argc, char **argv, const char **pos, int *n_pos);
void args_usage(const cmd_spec *spec);

/* Shared helpers for subcommands. */
struct ternlm_model;
int cli_open_model(const char *path, const char *pre, int head_q8, const char *activation, int verbose,
                   struct ternlm_model **out);
int cli_parse_ids(const char *s, int32_t **ids, int *n);
/* The whole of a file, or of stdin for "-", NUL-terminated (the length excludes the NUL). NULL on failure. */
char *cli_read_all(const char *path, size_t *n);

#endif
