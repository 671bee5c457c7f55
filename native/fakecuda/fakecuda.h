/*
 * libfakecuda.so - a fake CUDA driver for tests (native/fakecuda/fakecuda.c). TEST-ONLY: never packed, never
 * loaded unless CRYPTOTENSORS_CUDA_DRIVER names it.
 *
 * It exports the driver entry points CryptoTensors.Gpu uses, with the real CUresult values, and checks what the
 * real driver would only sometimes catch: a call without a current context, unknown or destroyed handles, copies
 * outside an allocation, host/device pointer mix-ups (device addresses are non-canonical 64-bit values no host
 * pointer can have), double host registration, a page-locked source rewritten before its asynchronous copy ran.
 * Device memory is host memory; asynchronous work runs later, in stream order, on one worker thread per stream with
 * a small random delay.
 *
 * Beyond the driver API it exports the functions below for tests. Environment (read when the library loads):
 *   FAKECUDA_DELAY_US=N   largest random delay before each queued operation (default 200 microseconds)
 *   FAKECUDA_INJECT=SPEC  comma-separated failures, each FUNCTION:N:RESULT[:sticky] (see fakecuda_inject)
 *   FAKECUDA_REPORT=1     print the call counters to stderr at unload even when nothing leaked
 *   FAKECUDA_QUIET=1      no leak report at unload
 */
#ifndef FAKECUDA_H
#define FAKECUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FAKECUDA_API __attribute__((visibility("default")))

/* Counters since the library loaded (every field 64-bit, so a binding is a flat array of them). */
typedef struct fakecuda_stats {
    uint64_t calls;                 /* every driver entry point call */
    uint64_t init_calls;            /* cuInit */
    uint64_t primary_retains;       /* cuDevicePrimaryCtxRetain */
    uint64_t primary_releases;      /* cuDevicePrimaryCtxRelease(_v2) */
    uint64_t primary_refcount;      /* current references on device 0's primary context */
    uint64_t set_current_calls;     /* cuCtxSetCurrent */
    uint64_t allocations_live;      /* cuMemAlloc not yet freed */
    uint64_t allocated_bytes_live;
    uint64_t allocations_total;
    uint64_t streams_live;          /* cuStreamCreate not yet destroyed */
    uint64_t events_live;           /* cuEventCreate not yet destroyed */
    uint64_t registrations_live;    /* cuMemHostRegister not yet unregistered */
    uint64_t registered_bytes_live;
    uint64_t register_calls;        /* cuMemHostRegister(_v2), successful or not */
    uint64_t async_copies;          /* cuMemcpyHtoDAsync_v2 queued */
    uint64_t pageable_async_copies; /* ... of them from memory not registered (allowed; staged at the call) */
    uint64_t sync_copies;           /* cuMemcpyHtoD_v2 / cuMemcpyDtoH_v2 */
    uint64_t memsets;               /* cuMemsetD8_v2 (queued on the null stream: may return before it ran) */
    uint64_t hazards;               /* a page-locked source changed between the async copy call and its execution,
                                       or a registration was removed while a copy from it was pending */
    uint64_t context_errors;        /* calls refused with CUDA_ERROR_INVALID_CONTEXT (no current context) */
    uint64_t handle_errors;         /* calls refused with CUDA_ERROR_INVALID_HANDLE */
    uint64_t value_errors;          /* calls refused with CUDA_ERROR_INVALID_VALUE (bad pointer, range, size, flags) */
    uint64_t injected_failures;     /* failures produced by fakecuda_inject */
    uint64_t sticky_error;          /* the sticky CUresult every call returns now (0 when none) */
    uint64_t pending_operations;    /* queued on some stream and not yet executed */
} fakecuda_stats;

/* Copies the counters into *out (at most size bytes, so an older binding reads a prefix). Returns 0. */
FAKECUDA_API int fakecuda_get_stats(fakecuda_stats* out, size_t size);

/*
 * Arms a failure: the n-th call from now (1 = the next) of `function` returns `result` (e.g. 2,
 * CUDA_ERROR_OUT_OF_MEMORY). With sticky != 0 the failure also poisons the context: every later call returns
 * `result` until fakecuda_reset_sticky (like CUDA_ERROR_ILLEGAL_ADDRESS, 700). `function` is a driver entry point
 * name as exported (cuMemAlloc_v2, cuStreamSynchronize, ...) or "exec:cuMemcpyHtoDAsync_v2" for the execution of a
 * queued asynchronous copy on its stream's worker (the copy then does not happen; the error is sticky, reported by
 * the next call). Up to 8 failures are armed at once. Returns 0, or 1 (CUDA_ERROR_INVALID_VALUE) when full.
 */
FAKECUDA_API int fakecuda_inject(const char* function, int n, int result, int sticky);

/* Disarms every injected failure and clears the sticky error. */
FAKECUDA_API void fakecuda_reset_sticky(void);

/* Sets the largest random delay (microseconds) before each queued operation; returns the previous one. */
FAKECUDA_API int fakecuda_set_delay_us(int max_delay_us);

/*
 * Reads device memory as it is right now, unordered with every stream (as another engine of the GPU would see it):
 * 0, or CUDA_ERROR_INVALID_VALUE when [address, address + length) is not inside one allocation.
 */
FAKECUDA_API int fakecuda_peek(uint64_t address, void* destination, size_t length);

/* The last misuse the fake complained about ("" when none), copied into buffer (NUL-terminated). Returns its length. */
FAKECUDA_API size_t fakecuda_last_complaint(char* buffer, size_t size);

/* Writes the leak report (live allocations, streams, events, registrations) to stderr; returns how many leaked. */
FAKECUDA_API uint64_t fakecuda_report(void);

#ifdef __cplusplus
}
#endif

#endif
