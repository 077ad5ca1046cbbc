/* ternlm: the desktop command line. Each subcommand lives in its own file. */
#include <stdio.h>
#include <string.h>

#include "ternlm.h"

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
void cli_print_version(void);
int cmd_serve(int argc, char **argv);

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *about;
} k_cmds[] = {
    {"run", cmd_run, "generate text from a prompt (streams tokens)"},
    {"chat", cmd_chat, "interactive multi-turn chat"},
    {"inspect", cmd_inspect, "print a GGUF file's metadata, tensors and validation result"},
    {"logits", cmd_logits, "evaluate token ids and print or save the logits"},
    {"tokenize", cmd_tokenize, "turn text into token ids"},
    {"bench", cmd_bench, "measure prompt and generation speed"},
    {"synth", cmd_synth, "write a random-weight GGUF with a real model's shapes"},
    {"pull", cmd_pull, "download a model (URL or hf://OWNER/REPO/FILE) into the cache"},
    {"perplexity", cmd_perplexity, "perplexity of a text, and KL divergence against llama-perplexity base logits"},
};

static void usage(FILE *f) {
    fprintf(f, "ternlm %s: a runtime for ternary (BitNet b1.58) and llama GGUF models\n\n"
               "usage: ternlm COMMAND [options]     (ternlm COMMAND --help for details)\n\ncommands:\n",
            TERNLM_VERSION);
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++) fprintf(f, "  %-10s %s\n", k_cmds[i].name, k_cmds[i].about);
    fprintf(f, "\nllama-cli / bitnet.cpp style calls (ternlm -m FILE -p TEXT ...) run `ternlm run`.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *c = argv[1];
    if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(c, "--version") || !strcmp(c, "-v") || !strcmp(c, "version")) {
        cli_print_version();
        return 0;
    }
#ifdef TERNLM_HAVE_SERVE
    if (!strcmp(c, "serve")) return cmd_serve(argc - 1, argv + 1); /* native/server/serve.c runs ternlm-server */
#endif
    if (c[0] == '-') return cmd_run(argc, argv); /* llama-cli spelling: flags straight after the program name */
    for (size_t i = 0; i < sizeof k_cmds / sizeof k_cmds[0]; i++)
        if (!strcmp(c, k_cmds[i].name)) return k_cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ternlm: unknown command '%s'\n\n", c);
    usage(stderr);
    return 2;
}
