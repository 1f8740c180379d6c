// hello: the smallest Ward workload. Prints a greeting, then its arguments, then
// $GREETING if Ward.toml's [env] sets it (nothing is inherited from the host).
//
//   ward run examples/hello.wasm -- some args
//   ward run --config examples/hello.toml examples/hello.wasm
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    printf("Hello from a Ward Keep!\n");
    for (int i = 1; i < argc; i++) {
        printf("  arg %d: %s\n", i, argv[i]);
    }
    const char *greeting = getenv("GREETING");
    if (greeting != NULL) {
        printf("  GREETING: %s\n", greeting);
    }
    return 0;
}
