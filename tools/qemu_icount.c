/* Instruction counts of an AArch64 program under qemu user mode, per function (no ARM machine is reachable here, and
 * the static qemu has no plugins): qemu logs each translated block's instructions (in_asm) and each execution of a
 * block (exec, with nochain so that chained blocks are logged too); this sums, per execution, the instructions of
 * the block that starts at its guest address. Prints the total, then the functions with the most.
 *   gcc -O2 tools/qemu_icount.c -o /tmp/qemu_icount
 *   aarch64-linux-gnu-gcc -O2 -static -Iruntime tools/bench_gemm.c build-arm/libternlm.a -lm -o /tmp/bg-arm
 *   qemu-aarch64-static -cpu max -d in_asm,exec,nochain -D /tmp/q.log /tmp/bg-arm neon 4 1 16
 *   /tmp/qemu_icount 20 < /tmp/q.log */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK_SLOTS (1u << 22) /* translated blocks: guest address -> instruction count */
#define FUNC_SLOTS (1u << 16)

static uint64_t block_pc[BLOCK_SLOTS];
static uint32_t block_len[BLOCK_SLOTS];
static char *func_name[FUNC_SLOTS];
static uint64_t func_count[FUNC_SLOTS];

static uint32_t *block_slot(uint64_t pc) {
    uint32_t h = (uint32_t)((pc * 0x9E3779B97F4A7C15ull) >> 42) & (BLOCK_SLOTS - 1);
    while (block_pc[h] && block_pc[h] != pc) h = (h + 1) & (BLOCK_SLOTS - 1);
    block_pc[h] = pc;
    return &block_len[h];
}

static void add_to_func(const char *name, uint64_t n) {
    uint32_t h = 5381;
    for (const char *p = name; *p; p++) h = h * 33 + (uint8_t)*p;
    h &= FUNC_SLOTS - 1;
    while (func_name[h] && strcmp(func_name[h], name)) h = (h + 1) & (FUNC_SLOTS - 1);
    if (!func_name[h] && !(func_name[h] = strdup(name))) exit(2);
    func_count[h] += n;
}

/* "Trace 0: 0xHOST [flags/GUESTPC/...] name": the guest address and, after the bracket, the function name. */
static void count_execution(char *line, uint64_t *total) {
    char *open = strchr(line, '['), *slash = open ? strchr(open, '/') : NULL, *close = slash ? strchr(slash, ']') : NULL;
    if (!close) return;
    const uint32_t n = *block_slot(strtoull(slash + 1, NULL, 16));
    *total += n;
    char *name = close + 1;
    while (*name == ' ') name++;
    name[strcspn(name, "\r\n")] = 0;
    add_to_func(*name ? name : "?", n);
}

static int by_count(const void *a, const void *b) {
    const uint64_t x = func_count[*(const uint32_t *)a], y = func_count[*(const uint32_t *)b];
    return x < y ? 1 : x > y ? -1 : 0;
}

int main(int argc, char **argv) {
    static char line[4096];
    static uint32_t order[FUNC_SLOTS];
    uint64_t total = 0, start = 0;
    uint32_t len = 0;
    int in_block = 0;
    while (fgets(line, sizeof line, stdin)) {
        if (in_block && line[0] == '0' && line[1] == 'x') { /* one guest instruction of the block being listed */
            if (len++ == 0) start = strtoull(line, NULL, 16);
            continue;
        }
        if (in_block && len) *block_slot(start) = len;
        in_block = 0;
        if (!strncmp(line, "IN:", 3)) in_block = 1, len = 0;
        else if (!strncmp(line, "Trace", 5)) count_execution(line, &total);
    }
    printf("total %llu\n", (unsigned long long)total);
    uint32_t k = 0;
    for (uint32_t i = 0; i < FUNC_SLOTS; i++)
        if (func_name[i]) order[k++] = i;
    qsort(order, k, sizeof *order, by_count);
    const uint32_t top = argc > 1 ? (uint32_t)atoi(argv[1]) : 25;
    for (uint32_t i = 0; i < k && i < top; i++)
        printf("%14llu %s\n", (unsigned long long)func_count[order[i]], func_name[order[i]]);
    return 0;
}
