// echo: a TCP echo server on the listen socket Ward preopens for it.
//
// WASI preview 1 programs cannot create or bind sockets; Ward binds the socket that
// Ward.toml asks for and hands it over as an open file descriptor. Ward describes the
// workload's file descriptors in the environment, as Enarx does: FD_COUNT=n and
// FD_NAMES=name0:name1:... for fds 0..n-1 (e.g. "stdin:stdout:stderr:ingest"). The
// listen socket is the fd named "ingest" (the name comes from Ward.toml).
//
// accept/recv/send are wasi-libc's, over WASI sock_accept/sock_recv/sock_send.
// argv[1], if given, is the number of connections to serve before exiting 0;
// without it the server runs until it is stopped.
//
//   ward run --config examples/echo.toml examples/echo.wasm
//   nc 127.0.0.1 10010
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_NAME "ingest"

// The fd whose FD_NAMES entry is `wanted`, or -1.
static int find_fd(const char *wanted) {
    const char *names = getenv("FD_NAMES");
    if (names == NULL) return -1;
    const char *count_text = getenv("FD_COUNT");
    long count = count_text ? strtol(count_text, NULL, 10) : -1;
    size_t wanted_len = strlen(wanted);
    int fd = 0;
    for (const char *p = names;; fd++) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == wanted_len && strncmp(p, wanted, len) == 0) {
            return count < 0 || fd < count ? fd : -1;
        }
        if (end == NULL) return -1;
        p = end + 1;
    }
}

// Echoes one connection until the peer closes it. Returns 0, or -1 on an I/O error.
static int serve(int conn) {
    char buf[4096];
    for (;;) {
        ssize_t n = recv(conn, buf, sizeof buf, 0);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("echo: recv");
            return -1;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(conn, buf + off, (size_t)(n - off), 0);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                perror("echo: send");
                return -1;
            }
            off += w;
        }
    }
}

int main(int argc, char **argv) {
    long max_conns = -1;
    if (argc > 1) {
        char *end;
        max_conns = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || max_conns < 1) {
            fprintf(stderr, "echo: usage: echo [MAX_CONNECTIONS]  (a count >= 1; default: no limit)\n");
            return 2;
        }
    }
    int lfd = find_fd(LISTEN_NAME);
    if (lfd < 0) {
        const char *names = getenv("FD_NAMES");
        fprintf(stderr,
                "echo: no fd named '" LISTEN_NAME "' (FD_NAMES=%s); add to Ward.toml:\n"
                "  [[files]]\n  kind = \"listen\"\n  name = \"" LISTEN_NAME "\"\n"
                "  prot = \"tcp\"\n  addr = \"127.0.0.1\"\n  port = 10010\n",
                names ? names : "(unset)");
        return 1;
    }
    fprintf(stderr, "echo: listening on fd %d\n", lfd);
    for (long served = 0; max_conns < 0 || served < max_conns;) {
        int conn = accept(lfd, NULL, NULL);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            fprintf(stderr, "echo: accept on fd %d: %s\n", lfd, strerror(errno));
            return 1;
        }
        // An error on one connection ends that connection, not the server.
        serve(conn);
        close(conn);
        served++;
    }
    return 0;
}
