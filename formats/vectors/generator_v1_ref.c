/* Generator v1 in plain C99, written from formats/generator-v1.md alone (a check that the spec is
 * complete). The stream key is given on the command line (it is SHA-256 based, see spec section 3).
 *
 *   cc -std=c99 -O2 -ffp-contract=off -o gen generator_v1_ref.c
 *   ./gen K0HEX K1HEX DIST P0 P1 START COUNT       DIST: normal | uniform | pm
 *   ./gen K0HEX K1HEX bank SCALE LENGTH OFFSET START COUNT   (K0/K1 = the BANK stream's key)
 *   ./gen dct START COUNT D0 D1 [D2 ...]                     (the weight's shape; no stream)
 *   ./gen K0HEX K1HEX mask_rows K D0 [D1 ...]                 (K0/K1 = the MASK stream's key)
 *
 * Prints COUNT float32 bit patterns (hex), one per line; mask_rows prints the chosen flat indices
 * (decimal, ascending). P0/P1 are read as float32 (strtof).
 * Needs IEEE binary32 and binary64 arithmetic with round-to-nearest-even and no FMA contraction.
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

/* dist dct (section 6.7): binary64 throughout, one rounding to float32 at the end */
static double f64(uint64_t b) { double d; memcpy(&d, &b, 8); return d; }

static float dct(uint64_t out, uint64_t c_in, uint64_t spatial, uint64_t i) {
    uint64_t patch = c_in * spatial, big_n = out > patch ? out : patch;
    uint64_t k = i / patch, rem = i % patch, c = rem / spatial, s = rem % spatial;
    uint64_t n = s * c_in + c;
    uint64_t m = ((2 * n + 1) * k) % (4 * big_n);
    if (m > 2 * big_n) m = 4 * big_n - m;
    int neg = 0;
    if (m > big_n) { m = 2 * big_n - m; neg = 1; }
    int use_sin = 2 * m > big_n;
    uint64_t j = use_sin ? big_n - m : m;
    double cn = f64(0x400921FB54442D18u) / (double)(2 * big_n);
    double x = (double)j * cn, z = x * x, y;
    if (use_sin) {
        double p = z * f64(0x3DE5D93A5ACFD57Cu);
        p = p + f64(0xBE5AE5E68A2B9CEBu);
        p = p * z;
        p = p + f64(0x3EC71DE357B1FE7Du);
        p = p * z;
        p = p + f64(0xBF2A01A019C161D5u);
        p = p * z;
        p = p + f64(0x3F8111111110F8A6u);
        p = p * z;
        p = p + f64(0xBFC5555555555549u);
        p = p * z;
        p = p * x;
        y = x + p;
    } else {
        double q = z * f64(0xBDA8FAE9BE8838D4u);
        q = q + f64(0x3E21EE9EBDB4B1C4u);
        q = q * z;
        q = q + f64(0xBE927E4F809C52ADu);
        q = q * z;
        q = q + f64(0x3EFA01A019CB1590u);
        q = q * z;
        q = q + f64(0xBF56C16C16C15177u);
        q = q * z;
        q = q + f64(0x3FA555555555554Cu);
        q = q * z;
        q = q + -0.5;
        q = q * z;
        y = q + 1.0;
    }
    double sk = (k == 0) ? sqrt(1.0 / (double)big_n) : sqrt(2.0 / (double)big_n);
    double t = sk * y;
    if (neg) t = -t;
    return (float)t;
}

static int dct_main(int argc, char **argv) {
    if (argc < 6) return 2;
    uint64_t start = strtoull(argv[2], NULL, 10), count = strtoull(argv[3], NULL, 10);
    uint64_t out = strtoull(argv[4], NULL, 10), c_in = strtoull(argv[5], NULL, 10), spatial = 1;
    for (int a = 6; a < argc; a++) spatial *= strtoull(argv[a], NULL, 10);
    for (uint64_t i = start; i < start + count; i++) printf("%08" PRIx32 "\n", bits(dct(out, c_in, spatial, i)));
    return 0;
}

/* random_mask_rows (section 8.1): per row, the k_r positions with the smallest (r[i], i) */
typedef struct { uint64_t key, index; } slot_t;

static int slot_cmp(const void *a, const void *b) {
    const slot_t *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->index < y->index ? -1 : (x->index > y->index);
}

static int mask_rows_main(int argc, char **argv) {
    uint64_t k0 = strtoull(argv[1], NULL, 16), k1 = strtoull(argv[2], NULL, 16);
    uint64_t k = strtoull(argv[4], NULL, 10), numel = 1;
    for (int a = 5; a < argc; a++) numel *= strtoull(argv[a], NULL, 10);
    uint64_t rows = (argc - 5 >= 2) ? strtoull(argv[5], NULL, 10) : 1;
    if (numel == 0 || rows == 0) return 0;
    uint64_t width = numel / rows;
    slot_t *row = malloc(width * sizeof *row);
    unsigned char *chosen = calloc(numel, 1);
    if (!row || !chosen) return 3;
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t k_r = k / rows + (r < k % rows ? 1 : 0);
        for (uint64_t t = 0; t < width; t++) {
            row[t].index = r * width + t;
            row[t].key = r64(k0, k1, row[t].index);
        }
        qsort(row, width, sizeof *row, slot_cmp);
        for (uint64_t t = 0; t < k_r; t++) chosen[row[t].index] = 1;
    }
    for (uint64_t i = 0; i < numel; i++) if (chosen[i]) printf("%" PRIu64 "\n", i);
    free(row);
    free(chosen);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "dct") == 0) return dct_main(argc, argv);
    if (argc >= 5 && strcmp(argv[3], "mask_rows") == 0) return mask_rows_main(argc, argv);
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
