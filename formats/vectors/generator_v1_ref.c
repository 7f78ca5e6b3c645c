/* Generator v1 in plain C99, written from formats/generator-v1.md alone (a check that the spec is
 * complete). The stream key is given on the command line (it is SHA-256 based, see spec section 3).
 *
 *   cc -std=c99 -O2 -ffp-contract=off -o gen generator_v1_ref.c
 *   ./gen K0HEX K1HEX DIST P0 P1 START COUNT       DIST: normal | uniform | pm
 *   ./gen K0HEX K1HEX bank SCALE LENGTH OFFSET START COUNT   (K0/K1 = the BANK stream's key)
 *
 * Prints COUNT float32 bit patterns (hex), one per line. P0/P1 are read as float32 (strtof).
 * Needs IEEE binary32 arithmetic with round-to-nearest-even and no FMA contraction.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

typedef struct { uint64_t v[4]; } block_t;

static uint64_t mulhilo(uint64_t a, uint64_t b, uint64_t *hi) {
    /* 64x64 -> 128 from 32-bit halves (no compiler extension needed) */
    uint64_t al = a & 0xffffffffu, ah = a >> 32, bl = b & 0xffffffffu, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
    return a * b;
}

static block_t philox(uint64_t k0, uint64_t k1, uint64_t block_index) {
    uint64_t c0 = block_index, c1 = 0, c2 = 0, c3 = 0;
    for (int r = 0; r < 10; r++) {
        uint64_t hi0, hi1;
        uint64_t lo0 = mulhilo(0xD2E7470EE14C6C93u, c0, &hi0);
        uint64_t lo1 = mulhilo(0xCA5A826395121157u, c2, &hi1);
        uint64_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += 0x9E3779B97F4A7C15u;
        k1 += 0xBB67AE8584CAA73Bu;
    }
    block_t b = {{c0, c1, c2, c3}};
    return b;
}

static uint64_t r64(uint64_t k0, uint64_t k1, uint64_t m) { return philox(k0, k1, m / 4).v[m % 4]; }
static uint32_t w32(uint64_t k0, uint64_t k1, uint64_t i) {
    uint64_t r = r64(k0, k1, i / 2);
    return (i % 2 == 0) ? (uint32_t)r : (uint32_t)(r >> 32);
}

static float f32(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static uint32_t bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

static float uniform(uint32_t w, float low, float high) {
    float u = (float)(w >> 8) * f32(0x33800000); /* 2**-24 */
    float width = high - low;
    return low + width * u;
}

static float pm(uint32_t w, float sigma) { return (w >> 31) ? -sigma : sigma; }

static float ln_u1(uint32_t w0) {
    float u1 = (float)((w0 >> 8) + 1) * f32(0x33800000);
    int32_t ix = (int32_t)bits(u1) + 0x004AFB0D;
    float k = (float)((ix >> 23) - 127);
    float m = f32((uint32_t)((ix & 0x007FFFFF) + 0x3F3504F3));
    float s = (m - 1.0f) / (m + 1.0f);
    float z = s * s;
    float p = z * f32(0x3E977308);
    p = p + f32(0x3ECCBE18);
    p = p * z;
    p = p + f32(0x3F2AAAAE);
    p = p * z;
    p = p * s;
    float lnm = (s + s) + p;
    return k * f32(0x3F317218) + lnm;
}

static void cos_sin(uint32_t w1, float *cos_out, float *sin_out) {
    uint32_t k2 = w1 >> 8, octant = k2 >> 21, pos = k2 & 0x1FFFFF;
    if (octant & 1) pos = 0x200000 - pos;
    float t = (float)pos * f32(0x34C90FDB);
    float x = t * t;
    float s = x * f32(0xB94D64D8);
    s = s + f32(0x3C088614);
    s = s * x;
    s = s + f32(0xBE2AAAA9);
    s = s * x;
    s = s * t;
    s = t + s;
    float c = x * f32(0x37CD3796);
    c = c + f32(0xBAB60704);
    c = c * x;
    c = c + f32(0x3D2AAAA6);
    c = c * x;
    c = c + f32(0xBF000000);
    c = c * x;
    c = c + 1.0f;
    const float tab[8][2] = {{c, s}, {s, c}, {-s, c}, {-c, s}, {-c, -s}, {-s, -c}, {s, -c}, {c, -s}};
    *cos_out = tab[octant][0];
    *sin_out = tab[octant][1];
}

static float normal(uint64_t k0, uint64_t k1, uint64_t i, float mean, float std) {
    uint64_t r = r64(k0, k1, i / 2);
    float x = ln_u1((uint32_t)r) * -2.0f;
    float rs = sqrtf(x) * std;
    float c, s;
    cos_sin((uint32_t)(r >> 32), &c, &s);
    float v = rs * ((i % 2 == 0) ? c : s);
    if (mean != 0.0f) v = v + mean;
    return v;
}

int main(int argc, char **argv) {
    if (argc < 8) { fprintf(stderr, "usage: see the header comment\n"); return 2; }
    uint64_t k0 = strtoull(argv[1], NULL, 16), k1 = strtoull(argv[2], NULL, 16);
    const char *dist = argv[3];
    if (strcmp(dist, "bank") == 0) {
        if (argc < 9) return 2;
        float scale = strtof(argv[4], NULL);
        uint64_t length = strtoull(argv[5], NULL, 10), offset = strtoull(argv[6], NULL, 10);
        uint64_t start = strtoull(argv[7], NULL, 10), count = strtoull(argv[8], NULL, 10);
        for (uint64_t j = 0; j < count; j++) {
            uint64_t b = (offset + start + j) % length;
            printf("%08" PRIx32 "\n", bits(uniform(w32(k0, k1, b), -1.0f, 1.0f) * scale));
        }
        return 0;
    }
    float p0 = strtof(argv[4], NULL), p1 = strtof(argv[5], NULL);
    uint64_t start = strtoull(argv[6], NULL, 10), count = strtoull(argv[7], NULL, 10);
    for (uint64_t i = start; i < start + count; i++) {
        float v;
        if (strcmp(dist, "normal") == 0) v = normal(k0, k1, i, p0, p1);
        else if (strcmp(dist, "uniform") == 0) v = uniform(w32(k0, k1, i), p0, p1);
        else if (strcmp(dist, "pm") == 0) v = pm(w32(k0, k1, i), p0);
        else if (strcmp(dist, "zeros") == 0) v = 0.0f;
        else { fprintf(stderr, "unknown dist %s\n", dist); return 2; }
        printf("%08" PRIx32 "\n", bits(v));
    }
    return 0;
}
