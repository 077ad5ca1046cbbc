/* `ternlm serve ...`: runs ternlm-server from the directory of the ternlm binary (else from PATH) with the
 * same arguments, so both spellings start the same server. Linked into the CLI when the server is built. */
#define _DEFAULT_SOURCE
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int cmd_serve(int argc, char **argv) {
    (void)argc;
    char path[PATH_MAX];
    const ssize_t n = readlink("/proc/self/exe", path, sizeof path - 32);
    if (n > 0) {
        path[n] = 0;
        char *slash = strrchr(path, '/');
        if (slash) {
            strcpy(slash + 1, "ternlm-server");
            argv[0] = path;
            if (access(path, X_OK) == 0) execv(path, argv);
        }
    }
    argv[0] = "ternlm-server";
    execvp("ternlm-server", argv);
    perror("ternlm serve: cannot run ternlm-server");
    return 1;
}
