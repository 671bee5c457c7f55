/*
 * CTest program for libctaesgcm: known answers (the GCM specification's test cases 2, 4, 13, 14 and 16, and long
 * messages whose tags come from OpenSSL via pyca/cryptography), in place, tag mismatch, argument checks and
 * concurrent use of one context. Prints one line per group; exits 77 (skipped) when the CPU has no VAES GCM path.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctaesgcm.h"

static int checks;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        checks++;                                                                        \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);     \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static size_t unhex(const char* hex, uint8_t* out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        CHECK(sscanf(hex + 2 * i, "%2x", &v) == 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static int all_zero(const uint8_t* p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return 0;
    return 1;
}

struct kat {
    const char *key, *iv, *aad, *pt, *ct, *tag;
};

static const char* const P60 = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24"
                               "49a6b525b16aedf5aa0de657ba637b39";

static const struct kat kats[] = {
    { "00000000000000000000000000000000", "000000000000000000000000", "", "00000000000000000000000000000000",
      "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf" },
    { "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", NULL,
      "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aa"
      "c973d58e091",
      "5bc94fbc3221a5db94fae95ae7121a47" },
    { "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "", "", "",
      "530f8afbc74536b9a963b4f1c4cb738b" },
    { "0000000000000000000000000000000000000000000000000000000000000000", "000000000000000000000000", "",
      "00000000000000000000000000000000", "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919" },
    { "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
      "feedfacedeadbeeffeedfacedeadbeefabaddad2", NULL,
      "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7"
      "a0abcc9f662",
      "76fc6ece0f4e1768cddf8853bb2d551b" },
};

static void test_known_answers(void)
{
    for (size_t i = 0; i < sizeof kats / sizeof kats[0]; i++) {
        uint8_t key[32], iv[12], aad[64], pt[64], ct[64], tag[16], out[64], got_tag[16];
        const size_t key_len = unhex(kats[i].key, key);
        CHECK(unhex(kats[i].iv, iv) == 12);
        const size_t aad_len = unhex(kats[i].aad, aad);
        const size_t len = unhex(kats[i].pt ? kats[i].pt : P60, pt);
        CHECK(unhex(kats[i].ct, ct) == len);
        CHECK(unhex(kats[i].tag, tag) == 16);

        ctag_key* k = NULL;
        CHECK(ctag_create(key, key_len, &k) == CTAG_OK && k != NULL);
        CHECK(ctag_seal(k, iv, aad_len ? aad : NULL, aad_len, len ? pt : NULL, len ? out : NULL, len, got_tag) == CTAG_OK);
        CHECK(memcmp(out, ct, len) == 0);
        CHECK(memcmp(got_tag, tag, 16) == 0);
        memset(out, 0xA5, sizeof out);
        CHECK(ctag_open(k, iv, aad, aad_len, ct, out, len, tag) == CTAG_OK);
        CHECK(memcmp(out, pt, len) == 0);

        /* The packed form is the same call. */
        memset(out, 0xA5, sizeof out);
        ctag_open_args packed = { k, iv, aad, aad_len, ct, out, len, tag };
        CHECK(ctag_open_packed(&packed) == CTAG_OK);
        CHECK(memcmp(out, pt, len) == 0);
        CHECK(ctag_open_packed(NULL) == -EINVAL);

        /* In place both ways. */
        memcpy(out, pt, len);
        CHECK(ctag_seal(k, iv, aad, aad_len, out, out, len, got_tag) == CTAG_OK);
        CHECK(memcmp(out, ct, len) == 0 && memcmp(got_tag, tag, 16) == 0);
        CHECK(ctag_open(k, iv, aad, aad_len, out, out, len, tag) == CTAG_OK);
        CHECK(memcmp(out, pt, len) == 0);

        /* Any flipped bit of the tag, ciphertext, associated data or nonce fails and zeroes the output. */
        for (int what = 0; what < 4; what++) {
            uint8_t t2[16], c2[64], a2[64], n2[12];
            memcpy(t2, tag, 16);
            memcpy(c2, ct, len);
            memcpy(a2, aad, aad_len);
            memcpy(n2, iv, 12);
            if (what == 0) t2[15] ^= 0x80;
            else if (what == 1 && len) c2[len - 1] ^= 1;
            else if (what == 2 && aad_len) a2[0] ^= 1;
            else n2[5] ^= 4;
            memset(out, 0xA5, sizeof out);
            CHECK(ctag_open(k, n2, a2, aad_len, c2, out, len, t2) == -EBADMSG);
            CHECK(all_zero(out, len));
            CHECK(ctag_open(k, n2, a2, aad_len, c2, c2, len, t2) == -EBADMSG);
            CHECK(all_zero(c2, len));
        }
        ctag_destroy(k);
    }
    printf("known answers: %zu vectors ok\n", sizeof kats / sizeof kats[0]);
}

/* One context re-keyed through every vector (both key sizes, in both directions) gives the known answers. */
static void test_rekey(void)
{
    uint8_t zero[32] = { 0 };
    ctag_key* k = NULL;
    CHECK(ctag_create(zero, 32, &k) == CTAG_OK);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t j = 0; j < sizeof kats / sizeof kats[0]; j++) {
            const size_t i = pass == 0 ? j : sizeof kats / sizeof kats[0] - 1 - j;
            uint8_t key[32], iv[12], aad[64], pt[64], ct[64], tag[16], out[64], got_tag[16];
            const size_t key_len = unhex(kats[i].key, key);
            unhex(kats[i].iv, iv);
            const size_t aad_len = unhex(kats[i].aad, aad);
            const size_t len = unhex(kats[i].pt ? kats[i].pt : P60, pt);
            unhex(kats[i].ct, ct);
            unhex(kats[i].tag, tag);
            CHECK(ctag_rekey(k, key, key_len) == CTAG_OK);
            CHECK(ctag_seal(k, iv, aad, aad_len, pt, out, len, got_tag) == CTAG_OK);
            CHECK(memcmp(out, ct, len) == 0 && memcmp(got_tag, tag, 16) == 0);
            CHECK(ctag_open(k, iv, aad, aad_len, ct, out, len, tag) == CTAG_OK);
            CHECK(memcmp(out, pt, len) == 0);
        }
    }
    /* A refused key leaves a context that seal and open refuse (never the old key), and destroy still frees. */
    uint8_t iv[12] = { 0 }, buf[16], tag[16] = { 0 };
    CHECK(ctag_rekey(k, zero, 24) == -EINVAL);
    CHECK(ctag_seal(k, iv, NULL, 0, buf, buf, 16, tag) == -EINVAL);
    memset(buf, 0xA5, sizeof buf);
    CHECK(ctag_open(k, iv, NULL, 0, buf, buf, 16, tag) == -EINVAL && all_zero(buf, 16));
    CHECK(ctag_rekey(k, NULL, 32) == -EINVAL);
    CHECK(ctag_rekey(NULL, zero, 32) == -EINVAL);
    CHECK(ctag_rekey(k, zero, 16) == CTAG_OK); /* usable again */
    CHECK(ctag_seal(k, iv, NULL, 0, buf, buf, 16, tag) == CTAG_OK);
    ctag_destroy(k);
    printf("rekey: %zu vectors twice through one context ok\n", sizeof kats / sizeof kats[0]);
}

static uint8_t* pattern(size_t n)
{
    uint8_t* p = malloc(n ? n : 1);
    CHECK(p != NULL);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + 7);
    return p;
}

/* Long messages through the bulk (many blocks per loop) path, tags from an independent implementation. */
static void test_long_messages(void)
{
    static const struct { size_t key_len, len; const char* tag; } cases[] = {
        { 16, 4099, "0133d5a13f6611248f3d9daaa07a6f42" },
        { 16, 1048589, "d382ada041e84f899d1e04ca9578ad34" },
        { 32, 4099, "3c4fc50c1e3fdb8e9c596684e60240c5" },
        { 32, 1048589, "74875a46bc18547187f62f3d3133a349" },
    };
    uint8_t key[32], iv[12];
    for (int i = 0; i < 32; i++) key[i] = (uint8_t)i;
    for (int i = 0; i < 12; i++) iv[i] = (uint8_t)i;
    const uint8_t aad[] = "ctensors";
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const size_t n = cases[c].len;
        uint8_t *msg = pattern(n), *buf = pattern(n), expected[16], tag[16];
        unhex(cases[c].tag, expected);
        ctag_key* k = NULL;
        CHECK(ctag_create(key, cases[c].key_len, &k) == CTAG_OK);
        CHECK(ctag_seal(k, iv, aad, 8, buf, buf, n, tag) == CTAG_OK);
        CHECK(memcmp(tag, expected, 16) == 0);
        CHECK(ctag_open(k, iv, aad, 8, buf, buf, n, tag) == CTAG_OK);
        CHECK(memcmp(buf, msg, n) == 0);
        ctag_destroy(k);
        free(msg);
        free(buf);
    }
    printf("long messages: %zu tags ok\n", sizeof cases / sizeof cases[0]);
}

static void test_arguments(void)
{
    uint8_t key[32] = { 0 }, iv[12] = { 0 }, buf[64], tag[16] = { 0 };
    ctag_key* k = (ctag_key*)(uintptr_t)1;
    CHECK(ctag_create(key, 24, &k) == -EINVAL && k == NULL);
    CHECK(ctag_create(NULL, 32, &k) == -EINVAL);
    CHECK(ctag_create(key, 32, NULL) == -EINVAL);
    CHECK(ctag_create(key, 32, &k) == CTAG_OK);
    CHECK(ctag_seal(NULL, iv, NULL, 0, buf, buf, 16, tag) == -EINVAL);
    CHECK(ctag_seal(k, NULL, NULL, 0, buf, buf, 16, tag) == -EINVAL);
    CHECK(ctag_seal(k, iv, NULL, 1, buf, buf, 16, tag) == -EINVAL);
    CHECK(ctag_seal(k, iv, NULL, 0, NULL, buf, 16, tag) == -EINVAL);
    CHECK(ctag_seal(k, iv, NULL, 0, buf, buf + 1, 16, tag) == -EINVAL); /* partial overlap */
    CHECK(ctag_seal(k, iv, NULL, 0, buf, buf, 16, NULL) == -EINVAL);
    CHECK(ctag_seal(k, iv, NULL, 0, buf, buf + 16, 16, tag) == CTAG_OK); /* adjacent is fine */
    memset(buf, 0xA5, sizeof buf);
    CHECK(ctag_open(k, iv, NULL, 0, buf + 8, buf, 16, tag) == -EINVAL);
    CHECK(all_zero(buf, 16));
    CHECK(ctag_open(k, iv, NULL, 0, NULL, NULL, 0, NULL) == -EINVAL);
    ctag_destroy(k);
    ctag_destroy(NULL);
    printf("argument checks ok\n");
}

struct worker {
    const ctag_key* key;
    int ok;
};

static void* work(void* arg)
{
    struct worker* w = arg;
    const size_t n = (256u << 10) + 5;
    uint8_t *msg = pattern(n), *buf = pattern(n), iv[12] = { 0 }, tag[16];
    w->ok = 1;
    for (int round = 0; round < 50 && w->ok; round++) {
        iv[0] = (uint8_t)round;
        w->ok &= ctag_seal(w->key, iv, NULL, 0, buf, buf, n, tag) == CTAG_OK;
        w->ok &= memcmp(buf, msg, n) != 0;
        w->ok &= ctag_open(w->key, iv, NULL, 0, buf, buf, n, tag) == CTAG_OK;
        w->ok &= memcmp(buf, msg, n) == 0;
    }
    free(msg);
    free(buf);
    return NULL;
}

static void test_threads(void)
{
    uint8_t key[16] = { 7 };
    ctag_key* k = NULL;
    CHECK(ctag_create(key, 16, &k) == CTAG_OK);
    pthread_t threads[4];
    struct worker workers[4];
    for (int i = 0; i < 4; i++) {
        workers[i].key = k;
        CHECK(pthread_create(&threads[i], NULL, work, &workers[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(workers[i].ok);
    }
    ctag_destroy(k);
    printf("4 threads on one context ok\n");
}

int main(void)
{
    CHECK(ctag_abi_version() == CTAG_ABI_VERSION);
    const char* info = NULL;
    const int status = ctag_init(&info);
    CHECK(info != NULL);
    printf("ctag_init: %d (%s)\n", status, info);
    if (status != CTAG_OK) {
        uint8_t key[16] = { 0 };
        ctag_key* k = NULL;
        CHECK(ctag_create(key, 16, &k) == status && k == NULL);
        printf("skipped: no VAES AES-GCM here\n");
        return 77;
    }
    test_known_answers();
    test_long_messages();
    test_rekey();
    test_arguments();
    test_threads();
    printf("%d checks passed\n", checks);
    return 0;
}
