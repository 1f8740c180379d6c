// cpubench: a deterministic CPU-bound workload that builds natively and to Wasm, for
// comparing the two. It runs FNV-1a and xorshift mixing over a 64 KiB buffer
// `rounds` times (argv[1], default 10000) and prints a checksum, which must match
// between native and Wasm.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define BUF 65536

int main(int argc, char **argv) {
    long rounds = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
    static uint8_t buf[BUF];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < BUF; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    uint64_t h = 1469598103934665603ull;
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < BUF; i++) {
            h = (h ^ buf[i]) * 1099511628211ull;
            buf[i] = (uint8_t)(h >> 29);
        }
    }
    printf("cpubench: %ld rounds, checksum %016llx\n", rounds, (unsigned long long)h);
    return 0;
}
