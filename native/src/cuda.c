/*
 * Minimal CUDA driver binding through dlopen: no CUDA headers or libraries needed at build time.
 *
 * Nothing here runs unless a caller asks for CUDA (CT_HOST_CUDA_REGISTER, ct_cuda_available): the driver is loaded
 * and cuInit called on first such use. The library is ct_cuda_set_driver's path, else CRYPTOTENSORS_CUDA_DRIVER,
 * else libcuda.so.1 — the managed side passes its own resolution through ct_cuda_set_driver, so both load the same
 * driver (a fake one in tests). Registrations are made in device 0's primary context, made current only for the
 * call (the caller's context is restored), and each holds a reference on that context until it is unregistered.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st* CUcontext;

#define CU_MEMHOSTREGISTER_PORTABLE 0x01u

static struct {
    int loaded;
    int available;
    CUresult (*init)(unsigned int);
    CUresult (*device_get_count)(int*);
    CUresult (*device_get)(CUdevice*, int);
    CUresult (*primary_ctx_retain)(CUcontext*, CUdevice);
    CUresult (*primary_ctx_release)(CUdevice);
    CUresult (*ctx_get_current)(CUcontext*);
    CUresult (*ctx_set_current)(CUcontext);
    CUresult (*mem_host_register)(void*, size_t, unsigned int);
    CUresult (*mem_host_unregister)(void*);
} cu;

static pthread_once_t cu_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t cu_mutex = PTHREAD_MUTEX_INITIALIZER;
static char driver_path[4096];

static void* sym(void* lib, const char* name, const char* fallback)
{
    void* p = dlsym(lib, name);
    return p != NULL || fallback == NULL ? p : dlsym(lib, fallback);
}

#define LOAD(field, ...) cu.field = (__typeof__(cu.field))sym(lib, __VA_ARGS__)

int ct_cuda_set_driver(const char* path)
{
    ct_clear_error();
    if (path != NULL && strlen(path) >= sizeof driver_path)
        return ct_fail(-EINVAL, "ct_cuda_set_driver: path longer than %zu bytes", sizeof driver_path - 1);
    pthread_mutex_lock(&cu_mutex);
    int status = CT_OK;
    if (cu.loaded && strcmp(driver_path, path != NULL ? path : "") != 0)
        status = ct_fail(-EBUSY, "ct_cuda_set_driver: the CUDA driver was already loaded from '%s'", driver_path[0] ? driver_path : "libcuda.so.1");
    else
        snprintf(driver_path, sizeof driver_path, "%s", path != NULL ? path : "");
    pthread_mutex_unlock(&cu_mutex);
    return status;
}

static void cuda_load(void)
{
    pthread_mutex_lock(&cu_mutex);
    if (driver_path[0] == '\0') {
        const char* env = getenv("CRYPTOTENSORS_CUDA_DRIVER");
        if (env != NULL && strlen(env) < sizeof driver_path)
            snprintf(driver_path, sizeof driver_path, "%s", env);
    }
    cu.loaded = 1;
    const char* path = driver_path[0] != '\0' ? driver_path : "libcuda.so.1";
    pthread_mutex_unlock(&cu_mutex);
    /* Never dlclose'd: the driver stays loaded for the life of the process, as with the CUDA runtime. */
    void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL)
        return;
    LOAD(init, "cuInit", NULL);
    LOAD(device_get_count, "cuDeviceGetCount", NULL);
    LOAD(device_get, "cuDeviceGet", NULL);
    LOAD(primary_ctx_retain, "cuDevicePrimaryCtxRetain", NULL);
    LOAD(primary_ctx_release, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease");
    LOAD(ctx_get_current, "cuCtxGetCurrent", NULL);
    LOAD(ctx_set_current, "cuCtxSetCurrent", NULL);
    LOAD(mem_host_register, "cuMemHostRegister_v2", "cuMemHostRegister");
    LOAD(mem_host_unregister, "cuMemHostUnregister", NULL);
    if (cu.init == NULL || cu.device_get_count == NULL || cu.device_get == NULL || cu.primary_ctx_retain == NULL
        || cu.primary_ctx_release == NULL || cu.ctx_get_current == NULL || cu.ctx_set_current == NULL
        || cu.mem_host_register == NULL || cu.mem_host_unregister == NULL)
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

/*
 * Retains device 0's primary context and makes it current on this thread, remembering the caller's context in
 * *previous; leave_primary restores it. On failure nothing is retained and the caller's context is unchanged.
 */
static CUresult enter_primary(CUcontext* previous, CUdevice* device)
{
    CUcontext primary = NULL;
    CUresult r = cu.ctx_get_current(previous);
    if (r == 0)
        r = cu.device_get(device, 0);
    if (r == 0)
        r = cu.primary_ctx_retain(&primary, *device);
    if (r != 0)
        return r;
    r = cu.ctx_set_current(primary);
    if (r != 0)
        cu.primary_ctx_release(*device);
    return r;
}

static CUresult leave_primary(CUcontext previous)
{
    return cu.ctx_set_current(previous);
}

int ct_cuda_register(void* ptr, size_t size, int* result)
{
    if (!ct_cuda_available()) {
        *result = CT_CUDA_NOT_AVAILABLE;
        return 0;
    }
    CUcontext previous = NULL;
    CUdevice device = 0;
    CUresult r = enter_primary(&previous, &device);
    if (r != 0) {
        *result = r;
        return 0;
    }
    r = cu.mem_host_register(ptr, size, CU_MEMHOSTREGISTER_PORTABLE);
    if (r != 0) {
        leave_primary(previous);
        cu.primary_ctx_release(device);
    } else {
        CUresult restored = leave_primary(previous);
        if (restored != 0) {
            /* The caller's thread state could not be put back: undo rather than leave it changed. */
            cu.mem_host_unregister(ptr);
            leave_primary(previous);
            cu.primary_ctx_release(device);
            r = restored;
        }
        /* else: the reference on the primary context is kept until ct_cuda_unregister. */
    }
    *result = r;
    return r == 0;
}

int ct_cuda_unregister(void* ptr)
{
    CUcontext previous = NULL;
    CUdevice device = 0;
    CUresult r = enter_primary(&previous, &device);
    if (r != 0)
        return r;
    r = cu.mem_host_unregister(ptr);
    CUresult restored = leave_primary(previous);
    cu.primary_ctx_release(device); /* the reference enter_primary took */
    cu.primary_ctx_release(device); /* the registration's */
    return r != 0 ? r : restored;
}
