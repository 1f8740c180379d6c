// cpubench: a deterministic, CPU-bound workload that builds both natively and to Wasm,
// so the two can be compared (bench/run.sh does).
//
// It hashes a 64 KiB buffer with SHA-256 `rounds` times (argv[1], default 3000). Each
// round's digest is written back into the start of the buffer, so the rounds form one
// chain that no compiler can shorten, and the final digest (the "checksum") must be
// identical native and in Wasm. The work is 32-bit adds, rotates and table lookups:
// scalar integer code, like most parsers, codecs and crypto. The SHA-256 code is
// checked against the FIPS 180-2 test vector before the timed part.
//
// The chain is easy to reproduce elsewhere, e.g. in Python:
//   x = 0x9E3779B97F4A7C15; buf = bytearray()
//   for _ in range(65536): x ^= x << 13 & M; x ^= x >> 7; x ^= x << 17 & M; buf.append(x & 255)
//   for _ in range(rounds): d = sha256(buf).digest(); buf[:32] = d
// (M = 2**64 - 1); the checksum is the last d in hex.
//
//   ./cpubench.native 3000
//   ward run examples/cpubench.wasm -- 3000
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUF 65536
#define DEFAULT_ROUNDS 3000

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g; g = f; f = e; e = d + t1;
        d = c; c = b; b = a; a = t1 + t2;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d;
    h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

static void sha256(const uint8_t *msg, size_t len, uint8_t out[32]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    size_t full = len / 64 * 64;
    for (size_t off = 0; off < full; off += 64) compress(h, msg + off);
    uint8_t tail[128] = {0};
    size_t rest = len - full;
    memcpy(tail, msg + full, rest);
    tail[rest] = 0x80;
    size_t tlen = rest + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) tail[tlen - 1 - i] = (uint8_t)(bits >> (8 * i));
    for (size_t off = 0; off < tlen; off += 64) compress(h, tail + off);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24); out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8); out[4 * i + 3] = (uint8_t)h[i];
    }
}

static void hex(const uint8_t d[32], char out[65]) {
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

int main(int argc, char **argv) {
    long rounds = DEFAULT_ROUNDS;
    if (argc > 1) {
        char *end;
        rounds = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || rounds < 0) {
            fprintf(stderr, "cpubench: usage: cpubench [ROUNDS]  (a count >= 0, default %d)\n",
                    DEFAULT_ROUNDS);
            return 2;
        }
    }

    uint8_t d[32];
    char text[65];
    sha256((const uint8_t *)"abc", 3, d);
    hex(d, text);
    if (strcmp(text, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") != 0) {
        fprintf(stderr, "cpubench: SHA-256 self-test failed: %s\n", text);
        return 3;
    }

    static uint8_t buf[BUF];
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < BUF; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    memset(d, 0, sizeof d);
    for (long r = 0; r < rounds; r++) {
        sha256(buf, BUF, d);
        memcpy(buf, d, sizeof d);
    }
    hex(d, text);
    printf("cpubench: sha256 chain, %ld rounds x 64 KiB, checksum %s\n", rounds, text);
    return 0;
}
