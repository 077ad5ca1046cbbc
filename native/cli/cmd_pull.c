/* ternlm pull URL|hf://OWNER/REPO/FILE [--sha256 HEX], and -m hf://... for run and chat.
 *
 * Files land in $XDG_CACHE_HOME/ternlm (else ~/.cache/ternlm): hf/OWNER/REPO/FILE for Hugging Face, and
 * url/HASH-NAME for other URLs. A download goes to NAME.part first: after a cut it resumes with an HTTP Range
 * request (in the same run, and in a later one); a finished file is checked to be GGUF and its sha256 verified
 * (the given digest, else Hugging Face's X-Linked-ETag / ETag when that is a sha256) before it is renamed into
 * place. A wrong digest keeps NAME.part, so nothing downloaded is lost. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "args.h"
#include "fetch.h"
#include "gen.h"
#include "sha256.h"
#include "ternlm.h"

#if defined(TERNLM_HAVE_CURL)
#include <curl/curl.h>
#endif

int fetch_is_remote(const char *src) {
    return src && (!strncmp(src, "hf://", 5) || !strncmp(src, "http://", 7) || !strncmp(src, "https://", 8));
}

static int is_hex64(const char *s) {
    if (strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

static void lower(char *s) {
    for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

/* A path segment that is safe in a URL and as a file name: [A-Za-z0-9._-], not "." or "..". */
static int safe_segment(const char *s, size_t n) {
    if (!n || (n <= 2 && !strncmp(s, "..", n))) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i])) return 0;
    return 1;
}

/* hf://OWNER/REPO/FILE (FILE may have folders) -> its download URL and its path inside the cache. */
static int parse_hf(const char *src, char **url, char **rel) {
    const char *p = src + 5;
    int segments = 0;
    for (const char *s = p;; segments++) {
        const char *e = strchr(s, '/');
        const size_t n = e ? (size_t)(e - s) : strlen(s);
        if (!safe_segment(s, n)) return 0;
        if (!e) break;
        s = e + 1;
    }
    if (segments < 2) return 0; /* OWNER, REPO and at least a FILE */
    const char *repo_end = strchr(strchr(p, '/') + 1, '/');
    const char *base = getenv("HF_ENDPOINT");
    if (!base || !*base) base = "https://huggingface.co";
    const size_t bl = strlen(base) - (base[strlen(base) - 1] == '/');
    const size_t need = bl + strlen(p) + 32;
    *url = malloc(need);
    *rel = malloc(strlen(p) + 8);
    if (!*url || !*rel) return 0;
    snprintf(*url, need, "%.*s/%.*s/resolve/main/%s", (int)bl, base, (int)(repo_end - p), p, repo_end + 1);
    snprintf(*rel, strlen(p) + 8, "hf/%s", p);
    return 1;
}

/* Any other URL: url/<16 hex digits of its sha256>-<its last path segment, made safe>. */
static int parse_url(const char *src, char **url, char **rel) {
    const char *path = strstr(src, "://") + 3;
    const char *slash = strchr(path, '/');
    if (slash == path || !*path) return 0;
    size_t end = strcspn(src, "?#");
    const char *name = src + end;
    while (name > src && name[-1] != '/') name--;
    if (!slash || name <= slash) name = src + end; /* no path: an empty name */
    char safe[96];
    size_t n = 0;
    for (const char *c = name; c < src + end && n < sizeof safe - 1; c++)
        safe[n++] = isalnum((unsigned char)*c) || strchr("._-", *c) ? *c : '_';
    safe[n] = 0;
    if (!n || safe[0] == '.') snprintf(safe, sizeof safe, "model.gguf");
    sha256_ctx c;
    unsigned char d[32];
    char hex[65];
    sha256_init(&c);
    sha256_update(&c, src, strlen(src));
    sha256_final(&c, d);
    sha256_hex(d, hex);
    *url = malloc(strlen(src) + 1);
    *rel = malloc(strlen(safe) + 32);
    if (!*url || !*rel) return 0;
    strcpy(*url, src);
    snprintf(*rel, strlen(safe) + 32, "url/%.16s-%s", hex, safe);
    return 1;
}

static char *cache_root(void) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char *r = NULL;
    if (xdg && *xdg == '/') {
        if ((r = malloc(strlen(xdg) + 16))) sprintf(r, "%s/ternlm", xdg);
    } else if (home && *home) {
        if ((r = malloc(strlen(home) + 24))) sprintf(r, "%s/.cache/ternlm", home);
    }
    return r;
}

/* mkdir -p for the folders above path. */
static int make_parents(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        const int bad = mkdir(path, 0755) && errno != EEXIST;
        *p = '/';
        if (bad) return 0;
    }
    return 1;
}

static long long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) ? -1 : S_ISREG(sb.st_mode) ? (long long)sb.st_size : -2;
}

/* base + suffix, malloc'd (NULL when out of memory). */
static char *path_with(const char *base, const char *suffix) {
    const size_t n = strlen(base) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s", base, suffix);
    return p;
}

static int read_sidecar(const char *final, char out[65]) {
    char *side = path_with(final, ".sha256");
    FILE *f = side ? fopen(side, "r") : NULL;
    free(side);
    if (!f) return 0;
    const int ok = fscanf(f, "%64s", out) == 1 && is_hex64(out);
    fclose(f);
    return ok;
}

#if defined(TERNLM_HAVE_CURL)

static void write_sidecar(const char *path, const char *sha) {
    char *side = path_with(path, ".sha256");
    FILE *f = side ? fopen(side, "w") : NULL;
    if (f) fprintf(f, "%s\n", sha), fclose(f);
    free(side);
}

static int starts_with_gguf(const char *path, char head[5]) {
    FILE *f = fopen(path, "rb");
    memset(head, 0, 5);
    if (!f) return 0;
    const size_t n = fread(head, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(head, "GGUF", 4);
}

static void human(double bytes, char *out, size_t cap) {
    if (bytes >= 1e9) snprintf(out, cap, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6) snprintf(out, cap, "%.1f MB", bytes / 1e6);
    else if (bytes >= 1e3) snprintf(out, cap, "%.1f kB", bytes / 1e3);
    else snprintf(out, cap, "%.0f B", bytes);
}

typedef struct download {
    CURL *curl;
    FILE *f;
    const char *part;
    long long have;        /* bytes of the .part file before this request */
    long long total;       /* the whole file's size, when the server says it (else -1) */
    long long got;         /* bytes written by this request */
    int started, not_gguf;
    char head[5];
    char linked_sha[65], etag_sha[65], content_type[96];
    double t0, t_print;
    int tty;
} download;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A header value as a sha256, if it is one: quotes and a weak-validator prefix are dropped. */
static void header_sha(const char *v, size_t n, char out[65]) {
    while (n && isspace((unsigned char)v[n - 1])) n--;
    while (n && isspace((unsigned char)*v)) v++, n--;
    if (n >= 2 && !strncmp(v, "W/", 2)) v += 2, n -= 2;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') v++, n -= 2;
    if (n != 64) return;
    char tmp[65];
    memcpy(tmp, v, 64);
    tmp[64] = 0;
    if (!is_hex64(tmp)) return;
    lower(tmp);
    memcpy(out, tmp, 65);
}

static size_t on_header(char *buf, size_t size, size_t n, void *user) {
    download *d = user;
    const size_t len = size * n;
    const char *colon = memchr(buf, ':', len);
    if (len > 5 && !strncmp(buf, "HTTP/", 5)) d->content_type[0] = 0; /* a new response (after a redirect) */
    if (!colon) return len;
    const size_t kl = (size_t)(colon - buf), vl = len - kl - 1;
    if (kl == 13 && !strncasecmp(buf, "x-linked-etag", 13)) header_sha(colon + 1, vl, d->linked_sha);
    else if (kl == 4 && !strncasecmp(buf, "etag", 4)) header_sha(colon + 1, vl, d->etag_sha);
    else if (kl == 12 && !strncasecmp(buf, "content-type", 12)) {
        size_t i = 0;
        for (const char *v = colon + 1; v < buf + len && i < sizeof d->content_type - 1; v++)
            if (*v != '\r' && *v != '\n' && (i || *v != ' ')) d->content_type[i++] = *v;
        d->content_type[i] = 0;
    }
    return len;
}

static size_t on_body(char *buf, size_t size, size_t n, void *user) {
    download *d = user;
    const size_t len = size * n;
    if (!d->started) {
        long code = 0;
        curl_easy_getinfo(d->curl, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200 && d->have > 0) d->have = 0; /* the server ignored the Range: start over ("wb" below) */
        curl_off_t cl = -1;
        curl_easy_getinfo(d->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        d->total = cl >= 0 ? d->have + (long long)cl : -1;
        d->f = fopen(d->part, d->have > 0 ? "ab" : "wb");
        if (!d->f) {
            fprintf(stderr, "ternlm: cannot write '%s': %s\n", d->part, strerror(errno));
            return 0;
        }
        d->started = 1;
    }
    /* the first bytes of the file must be GGUF's magic: stop early on an HTML page or an error body */
    const long long at = d->have + d->got;
    if (at < 4) {
        const size_t n_head = len < (size_t)(4 - at) ? len : (size_t)(4 - at);
        memcpy(d->head + at, buf, n_head);
        static const char magic[4] = {'G', 'G', 'U', 'F'};
        if (memcmp(d->head + at, magic + at, n_head)) {
            d->not_gguf = 1;
            return 0;
        }
    }
    const size_t w = fwrite(buf, 1, len, d->f);
    d->got += (long long)w;
    return w;
}

static void print_progress(download *d, double now_bytes, int final) {
    const double t = now_s(), el = t - d->t0;
    if (!final && t - d->t_print < (d->tty ? 0.25 : 2.0) && d->t_print > 0) return;
    d->t_print = t;
    const double done = (double)d->have + now_bytes, rate = el > 0 ? now_bytes / el : 0;
    char a[32], b[32], r[32], eta[32] = "?";
    human(done, a, sizeof a);
    human(d->total > 0 ? (double)d->total : 0, b, sizeof b);
    human(rate, r, sizeof r);
    if (d->total > 0 && rate > 0) {
        const double left = ((double)d->total - done) / rate;
        if (left >= 3600) snprintf(eta, sizeof eta, "%dh%02dm", (int)(left / 3600), (int)(left / 60) % 60);
        else if (left >= 60) snprintf(eta, sizeof eta, "%dm%02ds", (int)(left / 60), (int)left % 60);
        else snprintf(eta, sizeof eta, "%ds", (int)(left + 0.5));
    }
    const double pct = d->total > 0 ? 100.0 * done / (double)d->total : 0;
    fprintf(stderr, "%s  %s / %s  %5.1f%%  %s/s  ETA %s   %s", d->tty ? "\r" : "", a, d->total > 0 ? b : "?", pct, r, eta,
            d->tty && !final ? "" : "\n");
    fflush(stderr);
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal, (void)ultotal, (void)ulnow;
    download *d = user;
    if (d->started && dlnow > 0) print_progress(d, (double)dlnow, 0);
    return g_cli_interrupt; /* Ctrl-C: stop the transfer, keep what arrived */
}

/* One request for the rest of the file. Returns the curl result; *code gets the HTTP status. */
static CURLcode request(download *d, const char *url, long *code) {
    CURL *c = d->curl;
    curl_easy_reset(c);
    char range[48];
    snprintf(range, sizeof range, "%lld-", d->have);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ternlm/" TERNLM_VERSION);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* a stalled connection counts as a cut after 60 s */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    if (d->have > 0) curl_easy_setopt(c, CURLOPT_RANGE, range);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, d);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, d);
    struct curl_slist *hdrs = NULL;
    const char *token = getenv("HF_TOKEN");
    char auth[512];
    if (token && *token && !strncmp(url, "https://huggingface.co/", 23) && strlen(token) < 400) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token); /* gated repositories */
        hdrs = curl_slist_append(hdrs, auth);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    }
    d->started = 0;
    d->got = 0;
    d->t0 = now_s();
    d->t_print = 0;
    const CURLcode rc = curl_easy_perform(c);
    *code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
    if (d->f) {
        if (d->started && !d->not_gguf) print_progress(d, (double)d->got, 1);
        fclose(d->f);
        d->f = NULL;
    }
    curl_slist_free_all(hdrs);
    return rc;
}

static int cut_and_resumable(CURLcode rc) {
    return rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR || rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_GOT_NOTHING ||
           rc == CURLE_SEND_ERROR || rc == CURLE_HTTP2_STREAM || rc == CURLE_HTTP2;
}

/* Downloads url into part (resuming what is there). 0 when part holds the whole body; else an exit code. */
static int download_to(const char *url, const char *part, download *d) {
    for (int attempt = 0; attempt < 8; attempt++) {
        const long long size = file_size(part);
        d->have = size > 0 ? size : 0;
        if (d->have > 0) fprintf(stderr, "ternlm: resuming at byte %lld\n", d->have);
        long code = 0;
        const CURLcode rc = request(d, url, &code);
        if (d->not_gguf) {
            unlink(part);
            fprintf(stderr, "ternlm: %s is not a GGUF file (it starts with \"", url);
            for (int i = 0; i < 4 && d->head[i]; i++) fputc(isprint((unsigned char)d->head[i]) ? d->head[i] : '?', stderr);
            fprintf(stderr, "\"%s", d->content_type[0] ? ", Content-Type " : "");
            cli_put_escaped(stderr, d->content_type, strlen(d->content_type), 0); /* the server's text */
            fputs(")\n", stderr);
            return EXIT_RUNTIME;
        }
        if (rc == CURLE_ABORTED_BY_CALLBACK && g_cli_interrupt) {
            fprintf(stderr, "\nternlm: interrupted; the %lld bytes downloaded are kept in %s (run again to resume)\n",
                    file_size(part) > 0 ? file_size(part) : 0, part);
            return EXIT_INTERRUPTED;
        }
        if (rc == CURLE_HTTP_RETURNED_ERROR && code == 416 && d->have > 0) return 0; /* nothing left to fetch */
        if (rc == CURLE_HTTP_RETURNED_ERROR) {
            fprintf(stderr, "ternlm: %s: HTTP %ld%s\n", url, code,
                    code == 404 ? " (not found: check the owner, repository and file name)"
                    : code == 401 || code == 403 ? " (not allowed: a gated repository needs HF_TOKEN)" : "");
            return EXIT_RUNTIME;
        }
        const long long now = file_size(part);
        if (rc == CURLE_OK && (d->total < 0 || now == d->total)) return 0;
        if (rc == CURLE_OK || cut_and_resumable(rc)) {
            fprintf(stderr, "ternlm: the connection was cut at byte %lld (%s); retrying with a Range request\n", now,
                    rc == CURLE_OK ? "short body" : curl_easy_strerror(rc));
            continue;
        }
        fprintf(stderr, "ternlm: %s: %s\n", url, curl_easy_strerror(rc));
        return EXIT_RUNTIME;
    }
    fprintf(stderr, "ternlm: %s: giving up after 8 cut connections; run the command again to resume\n", url);
    return EXIT_RUNTIME;
}

/* The part file is complete: check it is GGUF, verify it, and move it into place. */
static int finish(const char *part, const char *final, const char *want_sha, const char *src) {
    char head[5];
    if (!starts_with_gguf(part, head)) {
        fprintf(stderr, "ternlm: the download of %s is not a GGUF file; removed\n", src);
        unlink(part);
        return EXIT_RUNTIME;
    }
    if (want_sha) {
        char got[65];
        fprintf(stderr, "ternlm: verifying sha256 ...\n");
        if (sha256_file(part, got)) {
            fprintf(stderr, "ternlm: cannot read '%s' back: %s\n", part, strerror(errno));
            return EXIT_RUNTIME;
        }
        if (strcmp(got, want_sha)) {
            fprintf(stderr,
                    "ternlm: sha256 mismatch for %s: the file has %s, expected %s.\n"
                    "ternlm: the download is kept in %s (delete it to start over)\n",
                    src, got, want_sha, part);
            return EXIT_RUNTIME;
        }
        fprintf(stderr, "ternlm: sha256 ok (%s)\n", got);
    }
    if (rename(part, final)) {
        fprintf(stderr, "ternlm: cannot rename '%s': %s\n", part, strerror(errno));
        return EXIT_RUNTIME;
    }
    if (want_sha) write_sidecar(final, want_sha); /* a record of the verified digest, so reuse needs no re-hash */
    return 0;
}

/* One download of a file at a time: a second ternlm waits for nothing and says so (POSIX record lock). */
static int lock_part(const char *part, int *fd) {
    *fd = open(part, O_RDWR | O_CREAT, 0644);
    if (*fd < 0) {
        fprintf(stderr, "ternlm: cannot write '%s': %s\n", part, strerror(errno));
        return 0;
    }
    struct flock l;
    memset(&l, 0, sizeof l);
    l.l_type = F_WRLCK;
    l.l_whence = SEEK_SET;
    if (fcntl(*fd, F_SETLK, &l) == 0) return 1;
    fprintf(stderr, "ternlm: another ternlm is downloading '%s'; run this again when it is done\n", part);
    close(*fd);
    *fd = -1;
    return 0;
}

static int fetch_with_curl(const char *src, const char *url, const char *final, const char *want) {
    char saved[65] = "";
    char *part = path_with(final, ".part");
    int lock_fd = -1;
    if (!part || !lock_part(part, &lock_fd)) {
        free(part);
        return EXIT_RUNTIME;
    }
    if (file_size(final) >= 0) { /* another ternlm finished it while we waited for the lock */
        close(lock_fd);
        unlink(part);
        free(part);
        return 0;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fprintf(stderr, "ternlm: libcurl could not start\n");
        close(lock_fd);
        free(part);
        return EXIT_RUNTIME;
    }
    read_sidecar(part, saved); /* the digest a server gave for this partial file in an earlier run */
    cli_catch_interrupt(2); /* the first Ctrl-C stops the transfer cleanly, a second quits at once */
    download d;
    memset(&d, 0, sizeof d);
    d.tty = isatty(STDERR_FILENO);
    d.part = part;
    d.curl = curl_easy_init();
    int rc = EXIT_RUNTIME;
    if (d.curl) {
        fprintf(stderr, "ternlm: downloading %s\nternlm: into %s\n", url, final);
        rc = download_to(url, part, &d);
        const char *from_server = d.linked_sha[0] ? d.linked_sha : d.etag_sha[0] ? d.etag_sha : saved[0] ? saved : NULL;
        const char *sha = want ? want : from_server;
        const int kept = file_size(part) > 0;
        if (kept && from_server && from_server != saved) write_sidecar(part, from_server); /* kept for a resume */
        if (!kept) unlink(part); /* nothing arrived (404, not GGUF): leave nothing behind */
        if (!rc && !want && sha)
            fprintf(stderr, "ternlm: the server gives the file's sha256 (%s)\n",
                    d.linked_sha[0] ? "X-Linked-ETag" : d.etag_sha[0] ? "ETag" : "recorded by an earlier run");
        if (!rc && !sha) fprintf(stderr, "ternlm: note: no sha256 is known for this file (pass --sha256 HEX to verify it)\n");
        if (!rc) rc = finish(part, final, sha, src);
        char *side = rc ? NULL : path_with(part, ".sha256");
        if (side) unlink(side);
        free(side);
        curl_easy_cleanup(d.curl);
    }
    curl_global_cleanup();
    close(lock_fd);
    free(part);
    return rc;
}
#endif

int fetch_model(const char *src, const char *sha256_hex, char **local) {
    *local = NULL;
    char want[65] = "";
    if (sha256_hex) {
        if (!is_hex64(sha256_hex)) {
            fprintf(stderr, "ternlm: --sha256 needs 64 hex digits, not '%s'\n", sha256_hex);
            return EXIT_USAGE;
        }
        strcpy(want, sha256_hex);
        lower(want);
    }
    char *url = NULL, *rel = NULL, *root = NULL;
    int rc = EXIT_USAGE;
    if (!(strncmp(src, "hf://", 5) ? parse_url(src, &url, &rel) : parse_hf(src, &url, &rel))) {
        fprintf(stderr, "ternlm: '%s' is not a model source (hf://OWNER/REPO/FILE, http:// or https:// URL; names use "
                        "letters, digits, '.', '_' and '-')\n", src);
        goto done;
    }
    if (!(root = cache_root())) {
        fprintf(stderr, "ternlm: no cache folder: set XDG_CACHE_HOME or HOME\n");
        rc = EXIT_RUNTIME;
        goto done;
    }
    const size_t fl = strlen(root) + strlen(rel) + 2;
    char *final = malloc(fl);
    if (!final) goto done;
    snprintf(final, fl, "%s/%s", root, rel);
    rc = EXIT_RUNTIME;
    if (!make_parents(final)) {
        fprintf(stderr, "ternlm: cannot create the cache folder for '%s': %s\n", final, strerror(errno));
        free(final);
        goto done;
    }
    if (file_size(final) >= 0) { /* cached: reuse it, checking a given digest against the one recorded */
        char known[65] = "";
        const int has_known = read_sidecar(final, known);
        if (want[0] && !(has_known && !strcmp(known, want))) {
            char got[65];
            if (sha256_file(final, got) || strcmp(got, want)) {
                fprintf(stderr, "ternlm: the cached %s does not have sha256 %s; delete it to download again\n", final, want);
                free(final);
                goto done;
            }
        }
        fprintf(stderr, "ternlm: using the cached %s\n", final);
        *local = final;
        rc = 0;
        goto done;
    }
#if defined(TERNLM_HAVE_CURL)
    rc = fetch_with_curl(src, url, final, want[0] ? want : NULL);
#else
    fprintf(stderr, "ternlm: this build cannot download (it was built without libcurl: install libcurl4-openssl-dev "
                    "and rebuild); fetch %s yourself and pass the file to -m\n", url);
#endif
    if (rc) free(final);
    else *local = final;
done:
    free(url);
    free(rel);
    free(root);
    return rc;
}

int cmd_pull(int argc, char **argv) {
    const char *sha = NULL;
    const opt opts[] = {
        {"--sha256", NULL, OPT_STR, &sha, "expected sha256 of the file (64 hex digits)"},
        {0},
    };
    const cmd_spec spec = {"pull", "URL|hf://OWNER/REPO/FILE [--sha256 HEX]",
                           "Download a GGUF model into the cache ($XDG_CACHE_HOME/ternlm, else ~/.cache/ternlm) and print\n"
                           "its path. Shows progress, resumes after a cut, verifies the sha256 (given, or the one Hugging\n"
                           "Face sends), and reuses a cached copy. HF_ENDPOINT and HF_TOKEN are honoured.", opts, 1};
    const char *pos[1];
    int n_pos, rc = args_parse(&spec, argc, argv, pos, &n_pos);
    if (rc) return rc == ARGS_HELP ? 0 : rc;
    if (n_pos != 1) {
        fprintf(stderr, "ternlm pull: give a URL or hf://OWNER/REPO/FILE (see --help)\n");
        return EXIT_USAGE;
    }
    if (!fetch_is_remote(pos[0])) {
        fprintf(stderr, "ternlm pull: '%s' is not hf://OWNER/REPO/FILE or an http(s) URL\n", pos[0]);
        return EXIT_USAGE;
    }
    char *local = NULL;
    if ((rc = fetch_model(pos[0], sha, &local))) return rc;
    printf("%s\n", local);
    free(local);
    return 0;
}
