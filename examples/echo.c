// echo: a TCP echo server on the listen socket Ward preopens for it.
//
// Ward describes the workload's file descriptors in the environment, as Enarx does:
// FD_COUNT=n and FD_NAMES=name0:name1:... for fds 0..n-1. The listen socket is the fd
// named "ingest" (the name comes from Ward.toml). argv[1], if given, is the number of
// connections to serve before exiting.
//
//   ward run --config examples/echo.toml examples/echo.wasm
//   nc 127.0.0.1 10010
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int find_fd(const char *wanted) {
    const char *names = getenv("FD_NAMES");
    if (names == NULL) return -1;
    int fd = 0;
    const char *p = names;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == strlen(wanted) && strncmp(p, wanted, len) == 0) return fd;
        if (!end) break;
        p = end + 1;
        fd++;
    }
    return -1;
}

int main(int argc, char **argv) {
    long max_conns = argc > 1 ? strtol(argv[1], NULL, 10) : -1;
    int lfd = find_fd("ingest");
    if (lfd < 0) {
        fprintf(stderr, "echo: no fd named 'ingest' in FD_NAMES; add a [[files]] entry with "
                        "kind = \"listen\" and name = \"ingest\" to Ward.toml\n");
        return 1;
    }
    fprintf(stderr, "echo: listening on fd %d\n", lfd);
    for (long served = 0; max_conns < 0 || served < max_conns; served++) {
        int conn = accept(lfd, NULL, NULL);
        if (conn < 0) {
            perror("echo: accept");
            return 1;
        }
        char buf[4096];
        ssize_t n;
        while ((n = recv(conn, buf, sizeof buf, 0)) > 0) {
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = send(conn, buf + off, (size_t)(n - off), 0);
                if (w <= 0) {
                    perror("echo: send");
                    break;
                }
                off += w;
            }
        }
        close(conn);
    }
    return 0;
}
