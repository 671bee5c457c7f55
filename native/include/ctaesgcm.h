/*
 * ctaesgcm - AES-128/256-GCM through Intel ipsec-mb's VAES/AVX-512 code, for CryptoTensors.Gpu.
 *
 * A separate library from libctshim.so: only this one links libIPSec_MB.so.1, so the shim loads on machines
 * without ipsec-mb. Parameters are the format's: 12-byte nonces, 16-byte tags, optional associated data.
 *
 * Every function returns an int status: CTAG_OK (0), or a negative errno-style code: -EINVAL (bad argument),
 * -ENOMEM, -ENOTSUP (no VAES/AVX-512 GCM on this machine: see ctag_init), -EBADMSG (tag mismatch).
 *
 * Threads: ctag_init is thread-safe and idempotent. A key context is read-only after ctag_create, so ctag_seal
 * and ctag_open may run concurrently on one context (all per-call state lives on the caller's stack);
 * ctag_destroy must not race with any other call on the same context.
 */
#ifndef CTAESGCM_H
#define CTAESGCM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CTAG_API __attribute__((visibility("default")))
#else
#define CTAG_API
#endif

/* Bumped whenever a signature changes; the managed side checks it. */
#define CTAG_ABI_VERSION 3

#define CTAG_OK 0
#define CTAG_NONCE_SIZE 12
#define CTAG_TAG_SIZE 16
/* GCM's limit on one message: 2^39 - 256 bits. */
#define CTAG_MAX_MESSAGE ((((uint64_t)1) << 36) - 32)

typedef struct ctag_key ctag_key;

CTAG_API int ctag_abi_version(void);

/*
 * Initialises the library once per process (an ipsec-mb manager picked by CPU features). Returns CTAG_OK when
 * AES-GCM runs on the VAES + VPCLMULQDQ + AVX-512 path, -ENOTSUP (or -ENOMEM) otherwise. *info (may be NULL)
 * receives a static string either way: the ipsec-mb version and the path picked, or why it is unusable.
 */
CTAG_API int ctag_init(const char** info);

/* Expands a 16- or 32-byte AES key (AES-128/256-GCM) into a new context. Fails with -ENOTSUP when ctag_init does. */
CTAG_API int ctag_create(const uint8_t* key, size_t key_len, ctag_key** out);

/*
 * Expands another 16- or 32-byte key into an existing context, replacing its key (and key size): what a loader does
 * per data key, without allocating. Must not race with any other call on the context. On failure (-EINVAL) the
 * context holds no key material and only ctag_destroy may follow.
 */
CTAG_API int ctag_rekey(ctag_key* ctx, const uint8_t* key, size_t key_len);

/* Zeroes the expanded key material and frees the context. NULL is a no-op. */
CTAG_API void ctag_destroy(ctag_key* key);

/*
 * Encrypts len bytes of in to out (the same pointer for in place; other overlaps are not allowed) and writes the
 * 16-byte tag. in/out may be NULL when len is 0, aad when aad_len is 0.
 */
CTAG_API int ctag_seal(const ctag_key* key, const uint8_t* nonce, const uint8_t* aad, size_t aad_len,
                       const uint8_t* in, uint8_t* out, size_t len, uint8_t* tag);

/*
 * Decrypts len bytes of in to out (in place allowed) and compares the computed tag with tag in constant time.
 * On a mismatch out is zeroed and -EBADMSG returned; on any failure out never holds unauthenticated plaintext.
 */
CTAG_API int ctag_open(const ctag_key* key, const uint8_t* nonce, const uint8_t* aad, size_t aad_len,
                       const uint8_t* in, uint8_t* out, size_t len, const uint8_t* tag);


/*
 * ctag_open with its arguments in one struct, for callers that run it through a one-argument trampoline such as
 * libctshim's ct_mapping_call (decrypting straight from a file mapping whose faults must become errors).
 */
typedef struct ctag_open_args {
    const ctag_key* key;
    const uint8_t* nonce;
    const uint8_t* aad;
    size_t aad_len;
    const uint8_t* in;
    uint8_t* out;
    size_t len;
    const uint8_t* tag;
} ctag_open_args;

CTAG_API int ctag_open_packed(void* args);

#ifdef __cplusplus
}
#endif

#endif
