/*
 * Standalone self-test of native/checksum.c against a byte-by-byte RFC 1071
 * reference, meant to be built with sanitizers so that any read outside the
 * caller's buffer is caught (Python-level tests cannot see those):
 *
 *   gcc -std=c99 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
 *       -Inative native/checksum_selftest.c native/checksum.c -o selftest && ./selftest
 *
 * Every length 0..MAX_LEN at every start offset 0..7, each buffer allocated to
 * end exactly at its last byte, random / all-0xFF / all-zero contents, on every
 * kernel the CPU supports; plus sum16 chaining, the pseudo-header and RFC 1624.
 * Exit status 0 and "ok" lines on success.  tests/system/test_checksum_processes.py runs it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checksum.h"

#define MAX_LEN 1100

static unsigned long rng = 88172645463325252UL;
static unsigned char rnd8(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned char)rng;
}

static unsigned ref_sum(const unsigned char *p, size_t n, unsigned long s)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        s += ((unsigned)p[i] << 8) | p[i + 1];
    if (n & 1)
        s += (unsigned)p[n - 1] << 8;
    while (s >> 16)
        s = (s & 0xFFFF) + (s >> 16);
    return (unsigned)s;
}

static int fail(const char *what, const char *path, size_t n, size_t off)
{
    printf("FAIL %s kernel=%s len=%zu offset=%zu\n", what, path, n, off);
    return 1;
}

static int check_buffer(const char *path, size_t n, size_t off, int fill)
{
    unsigned char *base = malloc(n + off ? n + off : 1);
    unsigned char *b = base + off;
    if (base == NULL)
        return fail("malloc", path, n, off);
    for (size_t i = 0; i < n; i++)
        b[i] = fill < 0 ? rnd8() : (unsigned char)fill;
    unsigned r = ref_sum(b, n, 0);
    const char *c = (const char *)b;
    int bad = 0;
    if (ns_sum16(c, n, 0) != r)
        bad = fail("sum16", path, n, off);
    else if (ns_checksum(c, n) != (~r & 0xFFFF))
        bad = fail("checksum", path, n, off);
    else if (n >= 2 && ns_sum16(c + (n / 2 & ~(size_t)1), n - (n / 2 & ~(size_t)1),
                                ns_sum16(c, n / 2 & ~(size_t)1, 0)) != r)
        bad = fail("sum16 chaining", path, n, off);
    else if (n <= 0xFFFF) {
        unsigned char ph[12] = { 0xC6, 0x12, 0x00, 0x01, 0xC6, 0x12, 0x00, 0x02, 0, 6,
                                 (unsigned char)(n >> 8), (unsigned char)n };
        unsigned want = ~ref_sum(b, n, ref_sum(ph, 12, 0)) & 0xFFFF;
        if (ns_pseudo_checksum(0xC6120001u, 0xC6120002u, 6, c, n) != want)
            bad = fail("pseudo header", path, n, off);
    }
    free(base);
    return bad;
}

int main(void)
{
    const char *paths[] = { "scalar", "avx2" };
    const int fills[] = { -1, 0x00, 0xFF };    /* random, all zero, all 0xFF */
    int tested = 0;
    for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
        if (ns_select_path(paths[k]) != 0)
            continue;
        tested++;
        for (size_t n = 0; n <= MAX_LEN; n++)
            for (size_t off = 0; off < 8; off++)
                for (size_t f = 0; f < sizeof(fills) / sizeof(fills[0]); f++)
                    if (check_buffer(paths[k], n, off, fills[f]))
                        return 1;
        const size_t big[] = { 65535, 65536, 65537, 9000 };
        for (size_t i = 0; i < 4; i++)
            if (check_buffer(paths[k], big[i], i, -1))
                return 1;
        printf("%s ok\n", paths[k]);
    }
    /* RFC 1624 §3 example: HC 0xDD2F, m 0x5555 -> m' 0x3285 gives 0x0000. */
    if (ns_incremental_update(0xDD2F, 0x5555, 0x3285) != 0x0000) {
        printf("FAIL RFC 1624 example\n");
        return 1;
    }
    printf("incremental ok\n");
    return tested ? 0 : 1;
}
