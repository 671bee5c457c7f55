/*
 * ctshim - page-locked host memory for CryptoTensors.Gpu.
 *
 * Every function returns an int status: CT_OK (0) on success, a negative errno-style code
 * (-EINVAL, -ENOMEM, -EOVERFLOW, -EBUSY, -ENOENT) on failure. ct_strerror() names a code and
 * ct_last_error_message() gives the detail of the calling thread's last failure.
 */
#ifndef CTSHIM_H
#define CTSHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CT_API __attribute__((visibility("default")))
#else
#define CT_API
#endif

/* Bumped whenever a struct layout or a signature changes; the managed side checks it. */
#define CT_ABI_VERSION 3

#define CT_OK 0

/* ct_host_alloc flags. */
#define CT_HOST_POPULATE      0x01u /* MAP_POPULATE at mmap time */
#define CT_HOST_TOUCH         0x02u /* write one byte per page after the huge page advice (skipped when mlock already faulted the range in) */
#define CT_HOST_LOCK          0x04u /* mlock the range; failure (RLIMIT_MEMLOCK, EPERM) is recorded, not fatal */
#define CT_HOST_HUGEPAGE      0x08u /* madvise(MADV_HUGEPAGE); ranges >= 2 MiB start on a 2 MiB boundary */
/* cuMemHostRegister (portable) in device 0's primary context when the CUDA driver and a device are available; failure
   recorded, not fatal. Only this flag makes the shim touch CUDA (load the driver, cuInit, retain the context). */
#define CT_HOST_CUDA_REGISTER 0x10u
/* No CT_HOST_CUDA_REGISTER: host memory never touches CUDA unless asked. */
#define CT_HOST_DEFAULT (CT_HOST_TOUCH | CT_HOST_LOCK | CT_HOST_HUGEPAGE)
#define CT_HOST_ALL_FLAGS (CT_HOST_POPULATE | CT_HOST_TOUCH | CT_HOST_LOCK | CT_HOST_HUGEPAGE | CT_HOST_CUDA_REGISTER)

/* cuda_result when registration was not attempted because the driver is unusable. */
#define CT_CUDA_NOT_AVAILABLE (-1)

typedef struct ct_host_buffer {
    void*    ptr;              /* page aligned start; valid for mapped_size bytes */
    size_t   size;             /* bytes requested */
    size_t   mapped_size;      /* size rounded up to the page size */
    uint32_t flags;            /* flags the buffer was allocated with */
    int32_t  locked;           /* 1 when mlock succeeded */
    int32_t  lock_errno;       /* errno of the failed mlock, 0 otherwise (or when not requested) */
    int32_t  cuda_registered;  /* 1 when cuMemHostRegister succeeded */
    int32_t  cuda_result;      /* CUresult of cuMemHostRegister, CT_CUDA_NOT_AVAILABLE, or 0 */
    int32_t  hugepage_advised; /* 1 when madvise(MADV_HUGEPAGE) succeeded */
} ct_host_buffer;

CT_API int ct_abi_version(void);
CT_API size_t ct_host_buffer_size(void); /* sizeof(ct_host_buffer), for binding checks */

CT_API const char* ct_strerror(int code);
/* Detail of the calling thread's last failure ("" when none); valid until the thread's next ct_ call. */
CT_API const char* ct_last_error_message(void);

/* 1 when the CUDA driver loads and cuInit(0) succeeds with at least one device, 0 otherwise (loads it on first call). */
CT_API int ct_cuda_available(void);
/*
 * The CUDA driver library to load: a path or file name, "" or NULL for the default (CRYPTOTENSORS_CUDA_DRIVER from
 * the environment, else libcuda.so.1). Call before the first CUDA use; -EBUSY once another driver was loaded.
 */
CT_API int ct_cuda_set_driver(const char* path);

CT_API int ct_host_alloc(size_t size, uint32_t flags, ct_host_buffer* out);
/* Undoes exactly what ct_host_alloc did and zeroes *buf. Freeing a zeroed buffer is a no-op. */
CT_API int ct_host_free(ct_host_buffer* buf);

/*
 * Pool of ct_host_alloc buffers. Released buffers stay mapped, touched, locked and registered, up to
 * max_cached_bytes of them; acquire hands back the smallest cached buffer that fits (and is at most
 * twice the rounded request), so repeated loads reuse already faulted pages. Contents of a reused
 * buffer are unspecified. All functions are thread-safe.
 */
typedef struct ct_pool ct_pool;

typedef struct ct_pool_statistics {
    uint64_t bytes_cached;     /* mapped bytes of released buffers kept for reuse */
    uint64_t bytes_in_use;     /* mapped bytes of acquired buffers */
    uint64_t buffers_cached;
    uint64_t buffers_in_use;
    uint64_t hits;             /* acquires served from the cache */
    uint64_t misses;           /* acquires that allocated */
    uint64_t evictions;        /* releases freed because the cache was full, plus trimmed buffers */
} ct_pool_statistics;

CT_API int ct_pool_create(size_t max_cached_bytes, uint32_t flags, ct_pool** out);
CT_API int ct_pool_acquire(ct_pool* pool, size_t size, ct_host_buffer* out);
/* Returns an acquired buffer to the pool (matched by ptr) and zeroes *buf; -ENOENT if not acquired from it. */
CT_API int ct_pool_release(ct_pool* pool, ct_host_buffer* buf);
/* Frees all cached buffers. */
CT_API int ct_pool_trim(ct_pool* pool);
CT_API int ct_pool_stats(ct_pool* pool, ct_pool_statistics* out);
/* -EBUSY (and nothing freed) while buffers are acquired. */
CT_API int ct_pool_destroy(ct_pool* pool);


/*
 * Read-only file mappings that fail, not crash, when the file shrinks (native/src/mapping.c).
 *
 * ct_mapping_open maps the first length bytes of fd (MAP_SHARED, PROT_READ) after checking the file still has
 * them (-EFAULT otherwise). Touching a mapped page beyond the file's current end raises SIGBUS; the guarded calls
 * below turn such a fault inside their source range into -EFAULT (with ct_last_error_message) on the calling
 * thread. The SIGBUS handler is installed once and chains to the previous one for every other fault.
 */
typedef int (*ct_guarded_fn)(void* arg);

CT_API int ct_mapping_guard_install(void);
CT_API int ct_mapping_open(int fd, uint64_t length, const void** out);
CT_API int ct_mapping_close(const void* address, uint64_t length);
/*
 * Runs fn(arg) and returns its result, or -EFAULT when it touched a page of [lo, lo + length) beyond the end of
 * the mapped file (fn is abandoned mid-way: whatever it was writing holds partial data the caller must discard).
 * fn must not return -EFAULT itself, must not be a guarded call, and must hold no lock or resource it would leak.
 */
CT_API int ct_mapping_call(const void* lo, size_t length, ct_guarded_fn fn, void* arg);
/* memcpy from a mapping under the guard: CT_OK or -EFAULT. */
CT_API int ct_mapping_copy(void* destination, const void* source, size_t length);
/* madvise(MADV_DONTNEED) of the whole pages inside [address, address + length): drops them from the process's
   resident set (the page cache keeps them). */
CT_API int ct_mapping_release(const void* address, size_t length);

#ifdef __cplusplus
}
#endif

#endif
