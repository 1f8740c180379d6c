// hello: the smallest Ward workload. Prints a greeting and its arguments.
#include <stdio.h>

int main(int argc, char **argv) {
    printf("Hello from a Ward Keep!\n");
    for (int i = 1; i < argc; i++) {
        printf("  arg %d: %s\n", i, argv[i]);
    }
    return 0;
}
