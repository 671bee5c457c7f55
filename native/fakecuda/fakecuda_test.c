/* Self-test of libfakecuda.so: the checks the managed tests rely on, in C. Exit 0 when all pass. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fakecuda.h"

typedef int CUresult;
typedef void* CUcontext;
typedef void* CUstream;
typedef void* CUevent;
typedef unsigned long long CUdeviceptr;

CUresult cuInit(unsigned int);
CUresult cuDeviceGet(int*, int);
CUresult cuDevicePrimaryCtxRetain(CUcontext*, int);
CUresult cuDevicePrimaryCtxRelease_v2(int);
CUresult cuCtxSetCurrent(CUcontext);
CUresult cuCtxGetCurrent(CUcontext*);
CUresult cuCtxSynchronize(void);
CUresult cuMemAlloc_v2(CUdeviceptr*, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuMemcpyHtoD_v2(CUdeviceptr, const void*, size_t);
CUresult cuMemcpyDtoH_v2(void*, CUdeviceptr, size_t);
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr, const void*, size_t, CUstream);
CUresult cuMemsetD8_v2(CUdeviceptr, unsigned char, size_t);
CUresult cuMemHostRegister_v2(void*, size_t, unsigned int);
CUresult cuMemHostUnregister(void*);
CUresult cuStreamCreate(CUstream*, unsigned int);
CUresult cuStreamDestroy_v2(CUstream);
CUresult cuStreamSynchronize(CUstream);
CUresult cuEventCreate(CUevent*, unsigned int);
CUresult cuEventDestroy_v2(CUevent);
CUresult cuEventRecord(CUevent, CUstream);
CUresult cuEventSynchronize(CUevent);
CUresult cuEventElapsedTime(float*, CUevent, CUevent);
CUresult cuGetErrorName(CUresult, const char**);

static int failures;

#define EXPECT(call, want)                                                                                 \
    do {                                                                                                   \
        CUresult got_ = (call);                                                                            \
        if (got_ != (want)) {                                                                              \
            char why_[256];                                                                                \
            fakecuda_last_complaint(why_, sizeof why_);                                                    \
            fprintf(stderr, "%s:%d: %s returned %d, expected %d (%s)\n", __FILE__, __LINE__, #call, got_,  \
                    (want), why_);                                                                         \
            failures++;                                                                                    \
        }                                                                                                  \
    } while (0)

#define CHECK(cond)                                                                                        \
    do {                                                                                                   \
        if (!(cond)) {                                                                                     \
            fprintf(stderr, "%s:%d: %s is false\n", __FILE__, __LINE__, #cond);                            \
            failures++;                                                                                    \
        }                                                                                                  \
    } while (0)

static fakecuda_stats stats(void)
{
    fakecuda_stats s;
    fakecuda_get_stats(&s, sizeof s);
    return s;
}

static void* no_context_copy(void* arg)
{
    CUdeviceptr d = *(CUdeviceptr*)arg;
    char b[16] = {0};
    return (void*)(long)cuMemcpyHtoD_v2(d, b, sizeof b);
}

int main(void)
{
    CUdeviceptr d = 0;
    CUcontext ctx = NULL;
    int dev = -1;
    const char* name = NULL;
    EXPECT(cuMemAlloc_v2(&d, 16), 3); /* CUDA_ERROR_NOT_INITIALIZED */
    EXPECT(cuInit(0), 0);
    EXPECT(cuDeviceGet(&dev, 1), 101);
    EXPECT(cuDeviceGet(&dev, 0), 0);
    EXPECT(cuMemAlloc_v2(&d, 16), 201); /* no current context */
    EXPECT(cuDevicePrimaryCtxRetain(&ctx, dev), 0);
    EXPECT(cuCtxSetCurrent(ctx), 0);

    /* Synchronous round trip, bounds, host/device confusion. */
    enum { N = 1 << 20 };
    unsigned char* host = malloc(N);
    unsigned char* back = malloc(N);
    for (int i = 0; i < N; i++)
        host[i] = (unsigned char)(i * 7);
    EXPECT(cuMemAlloc_v2(&d, N), 0);
    CHECK(d >= 0x1000000000000000ull && d % 256 == 0);
    EXPECT(cuMemcpyHtoD_v2(d, host, N), 0);
    EXPECT(cuMemcpyDtoH_v2(back, d, N), 0);
    CHECK(memcmp(host, back, N) == 0);
    EXPECT(cuMemcpyHtoD_v2(d + 1, host, N), 1);                  /* one byte past the end */
    EXPECT(cuMemcpyHtoD_v2((CUdeviceptr)(uintptr_t)back, host, 16), 1); /* a host pointer as destination */
    EXPECT(cuMemcpyDtoH_v2((void*)(uintptr_t)d, d, 16), 1);     /* a device address as host pointer */
    EXPECT(cuMemFree_v2(d + 256), 1);

    /* A worker thread without the context current is refused. */
    pthread_t t;
    void* result = NULL;
    pthread_create(&t, NULL, no_context_copy, &d);
    pthread_join(t, &result);
    CHECK((long)result == 201);

    /* cuMemsetD8 is queued; a later synchronous copy sees it. */
    EXPECT(cuMemsetD8_v2(d + 100, 0, 1000), 0);
    EXPECT(cuMemcpyDtoH_v2(back, d, N), 0);
    for (int i = 100; i < 1100; i++)
        CHECK(back[i] == 0);

    /* Registration: double register fails like the real driver. */
    EXPECT(cuMemHostRegister_v2(host, N, 1), 0);
    EXPECT(cuMemHostRegister_v2(host + 4096, 4096, 1), 712);
    EXPECT(cuMemHostUnregister(host + 1), 713);

    /* Asynchronous copies in stream order; events complete when the stream reaches them. */
    CUstream s = NULL;
    CUevent a = NULL, b = NULL, untimed = NULL;
    EXPECT(cuStreamCreate(&s, 1), 0);
    EXPECT(cuEventCreate(&a, 0), 0);
    EXPECT(cuEventCreate(&b, 0), 0);
    EXPECT(cuEventCreate(&untimed, 2), 0);
    EXPECT(cuEventRecord(a, s), 0);
    for (int i = 0; i < 64; i++)
        EXPECT(cuMemcpyHtoDAsync_v2(d + (CUdeviceptr)i * 4096, host + i * 4096, 4096, s), 0);
    EXPECT(cuEventRecord(b, s), 0);
    EXPECT(cuEventRecord(untimed, s), 0);
    EXPECT(cuEventSynchronize(b), 0);
    float ms = -1;
    EXPECT(cuEventElapsedTime(&ms, a, b), 0);
    CHECK(ms >= 0);
    EXPECT(cuEventElapsedTime(&ms, a, untimed), 400); /* timing disabled */
    EXPECT(cuEventElapsedTime((float*)a, b, (CUevent)&ms), 400); /* the arguments in the wrong order */
    EXPECT(cuMemcpyDtoH_v2(back, d, N), 0);
    CHECK(memcmp(host, back, 64 * 4096) == 0);
    CHECK(stats().hazards == 0);

    /* A page-locked source rewritten before its queued copy ran is a hazard. */
    int delay = fakecuda_set_delay_us(20000);
    EXPECT(cuMemcpyHtoDAsync_v2(d, host, 4096, s), 0);
    memset(host, 0xEE, 4096);
    EXPECT(cuStreamSynchronize(s), 0);
    CHECK(stats().hazards == 1);
    fakecuda_set_delay_us(delay);

    /* From pageable memory: allowed, staged at the call, counted. */
    uint64_t pageable = stats().pageable_async_copies;
    EXPECT(cuMemcpyHtoDAsync_v2(d, back, 4096, s), 0);
    EXPECT(cuStreamSynchronize(s), 0);
    CHECK(stats().pageable_async_copies == pageable + 1);

    /* Out of memory at the n-th allocation. */
    CUdeviceptr x = 0, y = 0;
    EXPECT(fakecuda_inject("cuMemAlloc_v2", 2, 2, 0), 0);
    EXPECT(cuMemAlloc_v2(&x, 64), 0);
    EXPECT(cuMemAlloc_v2(&y, 64), 2);
    EXPECT(cuMemFree_v2(x), 0);
    EXPECT(cuMemAlloc_v2(&y, (size_t)1 << 62), 2);

    /* A failing copy leaves a sticky error: every later call returns it. */
    EXPECT(fakecuda_inject("exec:cuMemcpyHtoDAsync_v2", 1, 700, 1), 0);
    EXPECT(cuMemcpyHtoDAsync_v2(d, host, 4096, s), 0);
    EXPECT(cuStreamSynchronize(s), 700);
    EXPECT(cuMemsetD8_v2(d, 0, 16), 700);
    EXPECT(cuCtxSynchronize(), 700);
    EXPECT(cuGetErrorName(700, &name), 0);
    CHECK(name != NULL && strcmp(name, "CUDA_ERROR_ILLEGAL_ADDRESS") == 0);
    fakecuda_reset_sticky();
    EXPECT(cuCtxSynchronize(), 0);

    /* Destroyed handles are refused; the leak counters go back to zero. */
    EXPECT(cuEventDestroy_v2(a), 0);
    EXPECT(cuEventRecord(a, s), 400);
    EXPECT(cuEventDestroy_v2(b), 0);
    EXPECT(cuEventDestroy_v2(untimed), 0);
    EXPECT(cuStreamDestroy_v2(s), 0);
    EXPECT(cuStreamSynchronize(s), 400);
    EXPECT(cuMemHostUnregister(host), 0);
    EXPECT(cuMemFree_v2(d), 0);
    fakecuda_stats st = stats();
    CHECK(st.allocations_live == 0 && st.streams_live == 0 && st.events_live == 0 && st.registrations_live == 0);
    CHECK(fakecuda_report() == 0);
    EXPECT(cuCtxSetCurrent(NULL), 0);
    EXPECT(cuDevicePrimaryCtxRelease_v2(0), 0);
    EXPECT(cuDevicePrimaryCtxRelease_v2(0), 201);
    free(host);
    free(back);
    if (failures == 0)
        printf("fakecuda_test: all checks passed\n");
    return failures == 0 ? 0 : 1;
}
