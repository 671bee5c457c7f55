/* ctaesgcm: AES-GCM on ipsec-mb's VAES/AVX-512 code (see ctaesgcm.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <intel-ipsec-mb.h>

#include "ctaesgcm.h"

/*
 * The expanded key (AES round keys and the GHASH key powers, 64-byte aligned as ipsec-mb requires) and the
 * ipsec-mb entry points for its key size, copied from the process-wide manager so a call needs nothing else.
 */
_Static_assert(_Alignof(struct gcm_key_data) == 64, "gcm_key_data must be 64-byte aligned (define LINUX)");

struct ctag_key {
    struct gcm_key_data data; /* first member: the allocation is 64-byte aligned */
    aes_gcm_enc_dec_t enc;
    aes_gcm_enc_dec_t dec;
};

/* The manager is only a table of function pointers for the direct GCM API: created once, never freed. */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static IMB_MGR* manager;
static int init_status = -ENOTSUP;
static char init_info[256];

static const char* arch_name(IMB_ARCH arch)
{
    switch (arch) {
    case IMB_ARCH_NOAESNI: return "noaesni";
    case IMB_ARCH_SSE: return "sse";
    case IMB_ARCH_AVX: return "avx";
    case IMB_ARCH_AVX2: return "avx2";
    case IMB_ARCH_AVX512: return "avx512";
    default: return "none";
    }
}

static void initialise(void)
{
    const char* version = imb_get_version_str();
    if (imb_get_version() < IMB_VERSION_NUM) {
        snprintf(init_info, sizeof init_info, "libIPSec_MB %s is older than the %s it was built against", version,
                 IMB_VERSION_STR);
        return;
    }
    IMB_MGR* mgr = alloc_mb_mgr(0);
    if (mgr == NULL) {
        init_status = -ENOMEM;
        snprintf(init_info, sizeof init_info, "ipsec-mb %s: alloc_mb_mgr failed", version);
        return;
    }
    IMB_ARCH arch = IMB_ARCH_NONE;
    init_mb_mgr_auto(mgr, &arch);
    const uint64_t features = mgr->features;
    const uint64_t needed = IMB_FEATURE_AESNI | IMB_FEATURE_AVX512_SKX | IMB_FEATURE_VAES | IMB_FEATURE_VPCLMULQDQ;
    const int err = imb_get_errno(mgr);
    if (err != 0) {
        snprintf(init_info, sizeof init_info, "ipsec-mb %s: init_mb_mgr_auto failed: %s", version, imb_get_strerror(err));
    } else if (arch != IMB_ARCH_AVX512 || (features & needed) != needed || (features & IMB_FEATURE_AESNI_EMU)) {
        snprintf(init_info, sizeof init_info,
                 "ipsec-mb %s picked the %s path: the CPU lacks%s%s%s%s (VAES AES-GCM needs AES-NI, AVX-512 F/DQ/CD/BW/VL, "
                 "VAES and VPCLMULQDQ)",
                 version, arch_name(arch), (features & IMB_FEATURE_AESNI) ? "" : " AES-NI",
                 (features & IMB_FEATURE_AVX512_SKX) == IMB_FEATURE_AVX512_SKX ? "" : " AVX-512",
                 (features & IMB_FEATURE_VAES) ? "" : " VAES", (features & IMB_FEATURE_VPCLMULQDQ) ? "" : " VPCLMULQDQ");
    } else if ((features & IMB_FEATURE_SELF_TEST) && !(features & IMB_FEATURE_SELF_TEST_PASS)) {
        snprintf(init_info, sizeof init_info, "ipsec-mb %s: the library's own self-test failed", version);
    } else if (mgr->gcm128_pre == NULL || mgr->gcm256_pre == NULL || mgr->gcm128_enc == NULL || mgr->gcm128_dec == NULL
               || mgr->gcm256_enc == NULL || mgr->gcm256_dec == NULL) {
        snprintf(init_info, sizeof init_info, "ipsec-mb %s: the %s manager has no AES-GCM entry points", version,
                 arch_name(arch));
    } else {
        /* SAFE_DATA: ipsec-mb clears key-dependent registers and stack after each call. */
        snprintf(init_info, sizeof init_info, "ipsec-mb %s avx512 (vaes, vpclmulqdq%s)", version,
                 (features & IMB_FEATURE_SAFE_DATA) ? ", safe-data" : "");
        manager = mgr;
        init_status = CTAG_OK;
        return;
    }
    free_mb_mgr(mgr);
}

int ctag_abi_version(void) { return CTAG_ABI_VERSION; }

int ctag_init(const char** info)
{
    pthread_once(&init_once, initialise);
    if (info != NULL)
        *info = init_info;
    return init_status;
}

/* Expands key into k (ctag_init has succeeded). */
static void expand(ctag_key* k, const uint8_t* key, size_t key_len)
{
    if (key_len == 16) {
        IMB_AES128_GCM_PRE(manager, key, &k->data);
        k->enc = manager->gcm128_enc;
        k->dec = manager->gcm128_dec;
    } else {
        IMB_AES256_GCM_PRE(manager, key, &k->data);
        k->enc = manager->gcm256_enc;
        k->dec = manager->gcm256_dec;
    }
}

int ctag_create(const uint8_t* key, size_t key_len, ctag_key** out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (key == NULL || (key_len != 16 && key_len != 32))
        return -EINVAL;
    const int status = ctag_init(NULL);
    if (status != CTAG_OK)
        return status;
    ctag_key* k = NULL;
    if (posix_memalign((void**)&k, 64, sizeof *k) != 0)
        return -ENOMEM;
    memset(k, 0, sizeof *k);
    expand(k, key, key_len);
    *out = k;
    return CTAG_OK;
}

int ctag_rekey(ctag_key* ctx, const uint8_t* key, size_t key_len)
{
    if (ctx == NULL)
        return -EINVAL;
    /* The old key goes first, whatever follows: AES-128 round keys would not overwrite all of an AES-256 schedule. */
    explicit_bzero(ctx, sizeof *ctx);
    if (key == NULL || (key_len != 16 && key_len != 32))
        return -EINVAL; /* enc/dec are NULL now: seal and open refuse the context (check), destroy frees it */
    expand(ctx, key, key_len);
    return CTAG_OK;
}

void ctag_destroy(ctag_key* key)
{
    if (key == NULL)
        return;
    explicit_bzero(key, sizeof *key);
    free(key);
}

/* Checks the arguments of seal/open: lengths within GCM's limits, buffers present, in and out equal or disjoint. */
static int check(const ctag_key* key, const uint8_t* nonce, const uint8_t* aad, size_t aad_len, const uint8_t* in,
                 const uint8_t* out, size_t len, const uint8_t* tag)
{
    if (key == NULL || key->enc == NULL || nonce == NULL || tag == NULL || (aad == NULL && aad_len != 0)
        || ((in == NULL || out == NULL) && len != 0) || (uint64_t)len > CTAG_MAX_MESSAGE
        || (uint64_t)aad_len > CTAG_MAX_MESSAGE)
        return -EINVAL;
    if (len != 0 && in != out && (uintptr_t)in < (uintptr_t)out + len && (uintptr_t)out < (uintptr_t)in + len)
        return -EINVAL;
    return CTAG_OK;
}

int ctag_seal(const ctag_key* key, const uint8_t* nonce, const uint8_t* aad, size_t aad_len, const uint8_t* in,
              uint8_t* out, size_t len, uint8_t* tag)
{
    const int status = check(key, nonce, aad, aad_len, in, out, len, tag);
    if (status != CTAG_OK) {
        if (tag != NULL)
            explicit_bzero(tag, CTAG_TAG_SIZE);
        return status;
    }
    struct gcm_context_data ctx;
    uint8_t none[1] = { 0 }; /* ipsec-mb wants non-NULL pointers even for empty buffers */
    key->enc(&key->data, &ctx, len ? out : none, len ? in : none, len, nonce, aad_len ? aad : none, aad_len, tag,
             CTAG_TAG_SIZE);
    explicit_bzero(&ctx, sizeof ctx);
    return CTAG_OK;
}

/* 1 when the tags are equal; every byte is read whatever the outcome. */
static int tags_equal(const uint8_t* a, const uint8_t* b)
{
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < CTAG_TAG_SIZE; i++)
        diff = (uint8_t)(diff | (a[i] ^ b[i]));
    return diff == 0;
}

int ctag_open(const ctag_key* key, const uint8_t* nonce, const uint8_t* aad, size_t aad_len, const uint8_t* in,
              uint8_t* out, size_t len, const uint8_t* tag)
{
    int status = check(key, nonce, aad, aad_len, in, out, len, tag);
    if (status == CTAG_OK) {
        struct gcm_context_data ctx;
        uint8_t computed[CTAG_TAG_SIZE];
        uint8_t none[1] = { 0 };
        key->dec(&key->data, &ctx, len ? out : none, len ? in : none, len, nonce, aad_len ? aad : none, aad_len,
                 computed, CTAG_TAG_SIZE);
        if (!tags_equal(computed, tag))
            status = -EBADMSG;
        explicit_bzero(&ctx, sizeof ctx);
        explicit_bzero(computed, sizeof computed);
    }
    if (status != CTAG_OK && out != NULL && len != 0)
        explicit_bzero(out, len);
    return status;
}

int ctag_open_packed(void* args)
{
    const ctag_open_args* a = args;
    if (a == NULL)
        return -EINVAL;
    return ctag_open(a->key, a->nonce, a->aad, a->aad_len, a->in, a->out, a->len, a->tag);
}
