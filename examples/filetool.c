// filetool: copies stdin into a file in the preopened directory /data, then reads the
// file back and prints it. Shows preopened directories and stdin relaying.
//
//   ward run --config examples/filetool.toml examples/filetool.wasm -- note.txt < input
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "out.txt";
    if (strchr(name, '/') != NULL) {
        fprintf(stderr, "filetool: give a plain file name, not a path: %s\n", name);
        return 2;
    }
    char path[512];
    snprintf(path, sizeof path, "/data/%s", name);

    FILE *out = fopen(path, "wb");
    if (out == NULL) {
        fprintf(stderr, "filetool: cannot create %s: %s (is /data preopened and writable?)\n",
                path, strerror(errno));
        return 1;
    }
    char buf[65536];
    size_t n, total = 0;
    while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            fprintf(stderr, "filetool: write to %s failed: %s\n", path, strerror(errno));
            return 1;
        }
        total += n;
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
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        fwrite(buf, 1, n, stdout);
    }
    fclose(in);
    fprintf(stderr, "filetool: %zu bytes stored in %s\n", total, path);
    return 0;
}
