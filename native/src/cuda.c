/* Minimal CUDA driver binding through dlopen: no CUDA headers or libraries needed at build time. */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

#include "internal.h"

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st* CUcontext;

#define CU_MEMHOSTREGISTER_PORTABLE 0x01u

static struct {
    int available;
    CUresult (*init)(unsigned int);
    CUresult (*device_get_count)(int*);
    CUresult (*device_get)(CUdevice*, int);
    CUresult (*primary_ctx_retain)(CUcontext*, CUdevice);
    CUresult (*ctx_get_current)(CUcontext*);
    CUresult (*ctx_set_current)(CUcontext);
    CUresult (*mem_host_register)(void*, size_t, unsigned int);
    CUresult (*mem_host_unregister)(void*);
    CUcontext primary;
} cu;

static pthread_once_t cu_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t cu_mutex = PTHREAD_MUTEX_INITIALIZER;

static void* sym(void* lib, const char* name, const char* fallback)
{
    void* p = dlsym(lib, name);
    return p != NULL || fallback == NULL ? p : dlsym(lib, fallback);
}

#define LOAD(field, ...) cu.field = (__typeof__(cu.field))sym(lib, __VA_ARGS__)

static void cuda_load(void)
{
    /* Never dlclose'd: the driver stays loaded for the life of the process, as with the CUDA runtime. */
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return;
    LOAD(init, "cuInit", NULL);
    LOAD(device_get_count, "cuDeviceGetCount", NULL);
    LOAD(device_get, "cuDeviceGet", NULL);
    LOAD(primary_ctx_retain, "cuDevicePrimaryCtxRetain", NULL);
    LOAD(ctx_get_current, "cuCtxGetCurrent", NULL);
    LOAD(ctx_set_current, "cuCtxSetCurrent", NULL);
    LOAD(mem_host_register, "cuMemHostRegister_v2", "cuMemHostRegister");
    LOAD(mem_host_unregister, "cuMemHostUnregister", NULL);
    if (cu.init == NULL || cu.device_get_count == NULL || cu.device_get == NULL || cu.primary_ctx_retain == NULL
        || cu.ctx_get_current == NULL || cu.ctx_set_current == NULL || cu.mem_host_register == NULL
        || cu.mem_host_unregister == NULL)
        return;
    int count = 0;
    if (cu.init(0) != 0 || cu.device_get_count(&count) != 0 || count <= 0)
        return;
    cu.available = 1;
}

int ct_cuda_available(void)
{
    pthread_once(&cu_once, cuda_load);
    return cu.available;
}

/* Makes a context current on this thread: the caller's own, else device 0's primary context. */
static CUresult ensure_context(void)
{
    CUcontext current = NULL;
    if (cu.ctx_get_current(&current) == 0 && current != NULL)
        return 0;
    CUresult r = 0;
    pthread_mutex_lock(&cu_mutex);
    if (cu.primary == NULL) {
        CUdevice dev = 0;
        r = cu.device_get(&dev, 0);
        if (r == 0)
            r = cu.primary_ctx_retain(&cu.primary, dev); /* retained for the life of the process */
    }
    pthread_mutex_unlock(&cu_mutex);
    return r != 0 ? r : cu.ctx_set_current(cu.primary);
}

int ct_cuda_register(void* ptr, size_t size, int* result)
{
    if (!ct_cuda_available()) {
        *result = CT_CUDA_NOT_AVAILABLE;
        return 0;
    }
    CUresult r = ensure_context();
    if (r == 0)
        r = cu.mem_host_register(ptr, size, CU_MEMHOSTREGISTER_PORTABLE);
    *result = r;
    return r == 0;
}

int ct_cuda_unregister(void* ptr)
{
    CUresult r = ensure_context();
    return r != 0 ? r : cu.mem_host_unregister(ptr);
}
