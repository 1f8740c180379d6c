// filetool: copies stdin into a file in the preopened directory /data, then reopens the
// file and prints its contents to stdout, and the byte count to stderr. Shows
// preopened directories and stdin relaying.
//
// argv[1] is the file name inside /data (default "out.txt"); a plain name, not a path.
//
//   echo hi | ward run --config examples/filetool.toml examples/filetool.wasm
//   ward run --config examples/filetool.toml examples/filetool.wasm -- note.txt < input
//
// Exit codes: 0 ok, 1 an I/O error (messages name the file and the cause), 2 bad usage.
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define DIR "/data"

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "out.txt";
    if (argc > 2 || name[0] == '\0' || strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
        strcmp(name, "..") == 0) {
        fprintf(stderr, "filetool: usage: filetool [FILE]  (a plain file name in " DIR
                        ", default out.txt)\n");
        return 2;
    }

    // Without a preopen, wasi-libc cannot resolve DIR at all: say so plainly.
    struct stat st;
    if (stat(DIR, &st) != 0) {
        fprintf(stderr,
                "filetool: %s is not available (%s): preopen a host directory as %s in "
                "Ward.toml:\n  [[preopens]]\n  host = \"./data\"\n  guest = \"%s\"\n"
                "  writable = true\n",
                DIR, strerror(errno), DIR, DIR);
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "filetool: %s is not a directory\n", DIR);
        return 1;
    }

    char path[512];
    snprintf(path, sizeof path, DIR "/%s", name);
    FILE *out = fopen(path, "wb");
    if (out == NULL) {
        fprintf(stderr, "filetool: cannot create %s: %s (is %s preopened with writable = true?)\n",
                path, strerror(errno), DIR);
        return 1;
    }
    static char buf[65536];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            fprintf(stderr, "filetool: writing %s failed: %s\n", path, strerror(errno));
            fclose(out);
            return 1;
        }
        total += n;
    }
    if (ferror(stdin)) {
        fprintf(stderr, "filetool: reading stdin failed: %s\n", strerror(errno));
        fclose(out);
        return 1;
    }
    if (fclose(out) != 0) {
        fprintf(stderr, "filetool: closing %s failed: %s\n", path, strerror(errno));
        return 1;
    }

    FILE *in = fopen(path, "rb");
    if (in == NULL) {
        fprintf(stderr, "filetool: cannot reopen %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t back = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (fwrite(buf, 1, n, stdout) != n) {
            fprintf(stderr, "filetool: writing stdout failed: %s\n", strerror(errno));
            return 1;
        }
        back += n;
    }
    if (ferror(in)) {
        fprintf(stderr, "filetool: reading %s back failed: %s\n", path, strerror(errno));
        return 1;
    }
    fclose(in);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "filetool: writing stdout failed: %s\n", strerror(errno));
        return 1;
    }
    if (back != total) {
        fprintf(stderr, "filetool: wrote %zu bytes to %s but read back %zu\n", total, path, back);
        return 1;
    }
    fprintf(stderr, "filetool: %zu bytes stored in %s\n", total, path);
    return 0;
}
