/*
 * libfakecuda.so: a fake CUDA driver for tests (see fakecuda.h). TEST-ONLY; not part of any package.
 *
 * One device (ordinal 0) with one primary context; the current context is per thread. Device memory is malloc'd
 * host memory behind non-canonical 64-bit addresses (0x1000... upwards, 64 KiB apart), so a device address used as
 * a host pointer faults and a host pointer used as a device address is refused. Each stream (the legacy null stream
 * too, created on first use) has one worker thread that runs its queue in order after a random delay. Every table
 * is guarded by one mutex; copies run outside it. The real driver's CUresult values are used throughout.
 */
#include "fakecuda.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef struct fake_ctx* CUcontext;
typedef struct fake_stream_handle* CUstream;
typedef struct fake_event_handle* CUevent;

#define FAKE_API __attribute__((visibility("default")))

enum {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_NOT_INITIALIZED = 3,
    CUDA_ERROR_NO_DEVICE = 100,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_NOT_READY = 600,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED = 712,
    CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED = 713,
    CUDA_ERROR_UNKNOWN = 999,
};

static const struct {
    CUresult code;
    const char* name;
    const char* text;
} error_table[] = {
    {0, "CUDA_SUCCESS", "no error"},
    {1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {2, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {3, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {4, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {100, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {101, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {201, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {600, "CUDA_ERROR_NOT_READY", "device not ready"},
    {700, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "part or all of the requested memory range is already mapped"},
    {713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED", "pointer does not correspond to a registered memory region"},
    {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {999, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

#define DEVICE_BASE 0x1000000000000000ull /* non-canonical on x86-64 and AArch64: never a host address */
#define DEVICE_END 0x2000000000000000ull
#define DEVICE_GUARD (64u << 10)
#define DEVICE_ALIGN 512u
#define DEVICE_TOTAL_MEMORY (8ull << 30)
#define STREAM_HANDLE_BASE 0x5300000000000000ull
#define EVENT_HANDLE_BASE 0x4500000000000000ull
#define LEGACY_STREAM ((uintptr_t)0x1)
#define PER_THREAD_STREAM ((uintptr_t)0x2)
#define EVENT_DISABLE_TIMING 0x2u
#define HOST_REGISTER_FLAGS 0xFu /* PORTABLE | DEVICEMAP | IOMEMORY | READ_ONLY */

struct fake_ctx {
    int refcount;
};

typedef struct alloc {
    uint64_t address;
    size_t size;
    unsigned char* memory;
    struct alloc* next;
} alloc_t;

typedef struct registration {
    uintptr_t start;
    size_t size;
    uint64_t pending; /* queued copies reading it */
    struct registration* next;
} registration_t;

typedef enum { OP_COPY, OP_MEMSET, OP_EVENT } op_kind;

typedef struct op {
    op_kind kind;
    unsigned char* destination; /* backing memory of the device range */
    const unsigned char* source;
    unsigned char* staged; /* owned copy of a pageable source */
    size_t length;
    unsigned char value;
    uint64_t hash;                /* of a page-locked source at the call */
    registration_t* registration; /* of a page-locked source */
    uint64_t event;               /* handle value */
    uint64_t generation;
    struct op* next;
} op_t;

typedef struct stream {
    uint64_t handle; /* 0 for the null stream */
    unsigned flags;
    op_t* head;
    op_t* tail;
    uint64_t queued;
    uint64_t done;
    int stopping;
    pthread_t thread;
    pthread_cond_t work;
    struct stream* next;
} stream_t;

typedef struct event {
    uint64_t handle;
    unsigned flags;
    int state; /* 0 never recorded, 1 recorded and pending, 2 complete */
    uint64_t generation;
    struct timespec when;
    struct event* next;
} event_t;

typedef struct injection {
    char function[64];
    int countdown;
    int result;
    int sticky;
} injection_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t progress = PTHREAD_COND_INITIALIZER;
static struct fake_ctx primary;
static __thread struct fake_ctx* current;
static __thread unsigned random_state;
static int initialized;
static alloc_t* allocations;
static registration_t* registrations;
static stream_t* streams;
static stream_t* null_stream;
static event_t* events;
static uint64_t next_address = DEVICE_BASE;
static uint64_t next_stream = 1, next_event = 1;
static injection_t injections[8];
static int max_delay_us = 200;
static int report_always, quiet;
static char complaint[512];
static fakecuda_stats stats;

static void complain(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* Records a misuse (lock held). */
static void complain(const char* fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(complaint, sizeof complaint, fmt, ap);
    va_end(ap);
    if (getenv("FAKECUDA_VERBOSE") != NULL)
        fprintf(stderr, "fakecuda: %s\n", complaint);
}

static CUresult fail_value(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* Records a refused argument (lock held) and returns CUDA_ERROR_INVALID_VALUE. */
static CUresult fail_value(const char* fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(complaint, sizeof complaint, fmt, ap);
    va_end(ap);
    stats.value_errors++;
    if (getenv("FAKECUDA_VERBOSE") != NULL)
        fprintf(stderr, "fakecuda: %s\n", complaint);
    return CUDA_ERROR_INVALID_VALUE;
}

static CUresult fail_handle(const char* function, const void* handle)
{
    stats.handle_errors++;
    complain("%s: unknown or destroyed handle %p", function, handle);
    return CUDA_ERROR_INVALID_HANDLE;
}

static CUresult injected(const char* function)
{
    for (size_t i = 0; i < sizeof injections / sizeof injections[0]; i++) {
        injection_t* j = &injections[i];
        if (j->countdown <= 0 || strcmp(j->function, function) != 0)
            continue;
        if (--j->countdown > 0)
            continue;
        stats.injected_failures++;
        if (j->sticky)
            stats.sticky_error = (uint64_t)j->result;
        complain("%s: injected failure %d%s", function, j->result, j->sticky ? " (sticky)" : "");
        return j->result;
    }
    return CUDA_SUCCESS;
}

/* Entry of every driver call: counts it, then the sticky error, an injected failure, initialization. */
static CUresult enter(const char* function, int sticky_applies, int needs_init)
{
    pthread_mutex_lock(&lock);
    stats.calls++;
    CUresult r = sticky_applies && stats.sticky_error != 0 ? (CUresult)stats.sticky_error : injected(function);
    if (r == CUDA_SUCCESS && needs_init && !initialized)
        r = CUDA_ERROR_NOT_INITIALIZED;
    return r;
}

static CUresult leave(CUresult r)
{
    pthread_mutex_unlock(&lock);
    return r;
}

/* The calling thread's context, or CUDA_ERROR_INVALID_CONTEXT (lock held). */
static CUresult need_context(const char* function)
{
    if (current == NULL) {
        stats.context_errors++;
        complain("%s: no context is current on this thread", function);
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (current->refcount <= 0) {
        stats.context_errors++;
        complain("%s: the current context is device 0's primary context, released by every holder", function);
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    return CUDA_SUCCESS;
}

#define ENTER(sticky, init)                                  \
    CUresult r_ = enter(__func__, (sticky), (init));        \
    if (r_ != CUDA_SUCCESS)                                  \
        return leave(r_)
#define ENTER_CONTEXT()                                      \
    ENTER(1, 1);                                             \
    if ((r_ = need_context(__func__)) != CUDA_SUCCESS)       \
        return leave(r_)

static int is_device_address(uintptr_t p)
{
    return p >= DEVICE_BASE && p < DEVICE_END;
}

/* The allocation holding all of [address, address + length), or NULL. */
static alloc_t* find_range(uint64_t address, size_t length)
{
    for (alloc_t* a = allocations; a != NULL; a = a->next)
        if (address >= a->address && address - a->address <= a->size && length <= a->size - (address - a->address))
            return a;
    return NULL;
}

static CUresult check_device_range(const char* function, uint64_t address, size_t length, unsigned char** backing)
{
    alloc_t* a = find_range(address, length);
    if (a == NULL) {
        stats.value_errors++;
        if (!is_device_address((uintptr_t)address))
            complain("%s: 0x%llx is not a device address (a host pointer?)", function, (unsigned long long)address);
        else
            complain("%s: [0x%llx, +%zu) is not inside one allocation", function, (unsigned long long)address, length);
        return CUDA_ERROR_INVALID_VALUE;
    }
    *backing = a->memory + (address - a->address);
    return CUDA_SUCCESS;
}

static CUresult check_host_range(const char* function, const void* p, size_t length)
{
    if (p == NULL)
        return fail_value("%s: host pointer is NULL (%zu bytes)", function, length);
    if (is_device_address((uintptr_t)p) || is_device_address((uintptr_t)p + length - 1))
        return fail_value("%s: host range %p+%zu is a device address", function, p, length);
    return CUDA_SUCCESS;
}

static registration_t* find_registration(uintptr_t p, size_t length)
{
    for (registration_t* g = registrations; g != NULL; g = g->next)
        if (p >= g->start && p - g->start <= g->size && length <= g->size - (p - g->start))
            return g;
    return NULL;
}

static uint64_t hash(const unsigned char* p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static int random_delay(void)
{
    if (max_delay_us <= 0)
        return 0;
    if (random_state == 0)
        random_state = (unsigned)(uintptr_t)&random_state ^ (unsigned)time(NULL);
    return rand_r(&random_state) % (max_delay_us + 1);
}

static event_t* find_event(uint64_t handle)
{
    for (event_t* e = events; e != NULL; e = e->next)
        if (e->handle == handle)
            return e;
    return NULL;
}

/* Runs one stream's queue in order (lock held except around the delay and the bytes). */
static void* worker(void* arg)
{
    stream_t* s = arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (s->head == NULL && !s->stopping)
            pthread_cond_wait(&s->work, &lock);
        if (s->head == NULL)
            break;
        op_t* op = s->head;
        int delay = random_delay();
        pthread_mutex_unlock(&lock);
        if (delay > 0)
            usleep((useconds_t)delay);
        pthread_mutex_lock(&lock);
        int skip = stats.sticky_error != 0;
        if (!skip && op->kind == OP_COPY && injected("exec:cuMemcpyHtoDAsync_v2") != CUDA_SUCCESS)
            skip = 1;
        if (op->kind == OP_EVENT) {
            event_t* e = find_event(op->event);
            if (e != NULL && e->generation == op->generation) {
                e->state = 2;
                clock_gettime(CLOCK_MONOTONIC, &e->when);
            }
        } else if (!skip) {
            pthread_mutex_unlock(&lock);
            if (op->kind == OP_MEMSET) {
                memset(op->destination, op->value, op->length);
            } else {
                memcpy(op->destination, op->staged != NULL ? op->staged : op->source, op->length);
            }
            pthread_mutex_lock(&lock);
            if (op->registration != NULL && hash(op->destination, op->length) != op->hash) {
                stats.hazards++;
                complain("cuMemcpyHtoDAsync_v2: page-locked source %p (%zu bytes) was rewritten before its queued copy ran",
                         (const void*)op->source, op->length);
                fprintf(stderr, "fakecuda: HAZARD: %s\n", complaint);
            }
        }
        if (op->registration != NULL)
            op->registration->pending--;
        s->head = op->next;
        if (s->head == NULL)
            s->tail = NULL;
        s->done++;
        stats.pending_operations--;
        free(op->staged);
        free(op);
        pthread_cond_broadcast(&progress);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static stream_t* start_stream(uint64_t handle, unsigned flags)
{
    stream_t* s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->handle = handle;
    s->flags = flags;
    pthread_cond_init(&s->work, NULL);
    if (pthread_create(&s->thread, NULL, worker, s) != 0) {
        pthread_cond_destroy(&s->work);
        free(s);
        return NULL;
    }
    return s;
}

/* The stream a handle names (0, CU_STREAM_LEGACY, CU_STREAM_PER_THREAD: the null stream), or NULL (lock held). */
static stream_t* find_stream(CUstream handle)
{
    uintptr_t h = (uintptr_t)handle;
    if (h == 0 || h == LEGACY_STREAM || h == PER_THREAD_STREAM) {
        if (null_stream == NULL)
            null_stream = start_stream(0, 0);
        return null_stream;
    }
    for (stream_t* s = streams; s != NULL; s = s->next)
        if (s->handle == h)
            return s;
    return NULL;
}

static CUresult enqueue(stream_t* s, op_t* op)
{
    op->next = NULL;
    if (s->tail != NULL)
        s->tail->next = op;
    else
        s->head = op;
    s->tail = op;
    s->queued++;
    stats.pending_operations++;
    pthread_cond_signal(&s->work);
    return CUDA_SUCCESS;
}

static void wait_stream(stream_t* s)
{
    uint64_t target = s->queued;
    while (s->done < target)
        pthread_cond_wait(&progress, &lock);
}

static void wait_all(void)
{
    while (stats.pending_operations > 0)
        pthread_cond_wait(&progress, &lock);
}

static CUresult sticky_or(CUresult r)
{
    return stats.sticky_error != 0 ? (CUresult)stats.sticky_error : r;
}

/* ---- Initialization, devices, contexts ------------------------------------------------------------------------ */

FAKE_API CUresult cuInit(unsigned int flags)
{
    ENTER(0, 0);
    stats.init_calls++;
    if (flags != 0)
        return leave(fail_value("%s: flags must be 0, not %u", __func__, flags));
    initialized = 1;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuDriverGetVersion(int* version)
{
    ENTER(0, 0);
    if (version == NULL)
        return leave(fail_value("%s: NULL output", __func__));
    *version = 12080;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuDeviceGetCount(int* count)
{
    ENTER(0, 1);
    if (count == NULL)
        return leave(fail_value("%s: NULL output", __func__));
    *count = 1;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuDeviceGet(CUdevice* device, int ordinal)
{
    ENTER(0, 1);
    if (device == NULL)
        return leave(fail_value("%s: NULL output", __func__));
    if (ordinal != 0)
        return leave(CUDA_ERROR_INVALID_DEVICE);
    *device = 0;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuDeviceGetName(char* name, int length, CUdevice device)
{
    ENTER(0, 1);
    if (name == NULL || length <= 0)
        return leave(fail_value("%s: bad buffer (%d bytes)", __func__, length));
    if (device != 0)
        return leave(CUDA_ERROR_INVALID_DEVICE);
    snprintf(name, (size_t)length, "%s", "CryptoTensors fake CUDA device (libfakecuda)");
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice device)
{
    ENTER(0, 1);
    if (bytes == NULL)
        return leave(fail_value("%s: NULL output", __func__));
    if (device != 0)
        return leave(CUDA_ERROR_INVALID_DEVICE);
    *bytes = DEVICE_TOTAL_MEMORY;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuDeviceTotalMem(size_t* bytes, CUdevice device)
{
    return cuDeviceTotalMem_v2(bytes, device);
}

FAKE_API CUresult cuDevicePrimaryCtxRetain(CUcontext* context, CUdevice device)
{
    ENTER(0, 1);
    stats.primary_retains++;
    if (context == NULL)
        return leave(fail_value("%s: NULL output", __func__));
    if (device != 0)
        return leave(CUDA_ERROR_INVALID_DEVICE);
    primary.refcount++;
    stats.primary_refcount = (uint64_t)primary.refcount;
    *context = &primary;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice device)
{
    ENTER(0, 1);
    stats.primary_releases++;
    if (device != 0)
        return leave(CUDA_ERROR_INVALID_DEVICE);
    if (primary.refcount <= 0) {
        stats.context_errors++;
        complain("%s: device 0's primary context released more often than retained", __func__);
        return leave(CUDA_ERROR_INVALID_CONTEXT);
    }
    primary.refcount--;
    stats.primary_refcount = (uint64_t)primary.refcount;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuDevicePrimaryCtxRelease(CUdevice device)
{
    return cuDevicePrimaryCtxRelease_v2(device);
}

FAKE_API CUresult cuCtxSetCurrent(CUcontext context)
{
    ENTER(0, 1);
    stats.set_current_calls++;
    if (context != NULL && context != &primary) {
        stats.context_errors++;
        complain("%s: %p is not a context", __func__, (void*)context);
        return leave(CUDA_ERROR_INVALID_CONTEXT);
    }
    current = context;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuCtxGetCurrent(CUcontext* context)
{
    ENTER(0, 1);
    if (context == NULL)
        return leave(fail_value("%s: NULL output", __func__));
    *context = current;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuCtxSynchronize(void)
{
    ENTER_CONTEXT();
    wait_all();
    return leave(sticky_or(CUDA_SUCCESS));
}

/* ---- Memory -------------------------------------------------------------------------------------------------- */

FAKE_API CUresult cuMemAlloc_v2(CUdeviceptr* pointer, size_t size)
{
    ENTER_CONTEXT();
    stats.allocations_total++;
    if (pointer == NULL || size == 0)
        return leave(fail_value("%s: NULL output or size 0 (%zu bytes)", __func__, size));
    if (size > DEVICE_TOTAL_MEMORY - stats.allocated_bytes_live)
        return leave(CUDA_ERROR_OUT_OF_MEMORY);
    alloc_t* a = malloc(sizeof *a);
    unsigned char* memory = malloc(size);
    if (a == NULL || memory == NULL) {
        free(a);
        free(memory);
        return leave(CUDA_ERROR_OUT_OF_MEMORY);
    }
    memset(memory, 0xA5, size); /* never zero: code that relies on fresh memory being zero shows */
    uint64_t address = (next_address + DEVICE_ALIGN - 1) & ~(uint64_t)(DEVICE_ALIGN - 1);
    next_address = address + size + DEVICE_GUARD;
    a->address = address;
    a->size = size;
    a->memory = memory;
    a->next = allocations;
    allocations = a;
    stats.allocations_live++;
    stats.allocated_bytes_live += size;
    *pointer = address;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuMemFree_v2(CUdeviceptr pointer)
{
    /* After a sticky error the memory is still freed (the context would be torn down), the error returned. */
    CUresult r = enter(__func__, 0, 1);
    if (r == CUDA_SUCCESS)
        r = need_context(__func__);
    if (r != CUDA_SUCCESS)
        return leave(r);
    alloc_t** link = &allocations;
    while (*link != NULL && (*link)->address != pointer)
        link = &(*link)->next;
    if (*link == NULL)
        return leave(fail_value("%s: 0x%llx is not the start of an allocation", __func__, pointer));
    wait_all(); /* like cudaFree: no queued work may still use it */
    alloc_t* a = *link;
    *link = a->next;
    stats.allocations_live--;
    stats.allocated_bytes_live -= a->size;
    free(a->memory);
    free(a);
    return leave(sticky_or(CUDA_SUCCESS));
}

FAKE_API CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr destination, const void* source, size_t length, CUstream stream)
{
    ENTER_CONTEXT();
    unsigned char* backing = NULL;
    CUresult r;
    if ((r = check_host_range(__func__, source, length)) != CUDA_SUCCESS
        || (r = check_device_range(__func__, destination, length, &backing)) != CUDA_SUCCESS)
        return leave(r);
    stream_t* s = find_stream(stream);
    if (s == NULL)
        return leave(fail_handle(__func__, stream));
    op_t* op = calloc(1, sizeof *op);
    if (op == NULL)
        return leave(CUDA_ERROR_OUT_OF_MEMORY);
    op->kind = OP_COPY;
    op->destination = backing;
    op->source = source;
    op->length = length;
    op->registration = find_registration((uintptr_t)source, length);
    stats.async_copies++;
    if (op->registration != NULL) {
        op->registration->pending++;
        op->hash = hash(source, length);
    } else {
        /* Pageable source: the real driver stages it before returning; so does this one (and notes it). */
        stats.pageable_async_copies++;
        op->staged = malloc(length);
        if (op->staged == NULL) {
            free(op);
            return leave(CUDA_ERROR_OUT_OF_MEMORY);
        }
        memcpy(op->staged, source, length);
    }
    return leave(enqueue(s, op));
}

/* Synchronous copies: ordered after the null stream's work (a cuMemsetD8 before them), then done on the caller. */
static CUresult copy_now(const char* function, void* to, const void* from, size_t length)
{
    if (null_stream != NULL)
        wait_stream(null_stream);
    stats.sync_copies++;
    pthread_mutex_unlock(&lock);
    memcpy(to, from, length);
    pthread_mutex_lock(&lock);
    (void)function;
    return sticky_or(CUDA_SUCCESS);
}

FAKE_API CUresult cuMemcpyHtoD_v2(CUdeviceptr destination, const void* source, size_t length)
{
    ENTER_CONTEXT();
    unsigned char* backing = NULL;
    CUresult r;
    if (length == 0)
        return leave(CUDA_SUCCESS);
    if ((r = check_host_range(__func__, source, length)) != CUDA_SUCCESS
        || (r = check_device_range(__func__, destination, length, &backing)) != CUDA_SUCCESS)
        return leave(r);
    return leave(copy_now(__func__, backing, source, length));
}

FAKE_API CUresult cuMemcpyDtoH_v2(void* destination, CUdeviceptr source, size_t length)
{
    ENTER_CONTEXT();
    unsigned char* backing = NULL;
    CUresult r;
    if (length == 0)
        return leave(CUDA_SUCCESS);
    if ((r = check_host_range(__func__, destination, length)) != CUDA_SUCCESS
        || (r = check_device_range(__func__, source, length, &backing)) != CUDA_SUCCESS)
        return leave(r);
    return leave(copy_now(__func__, destination, backing, length));
}

/* Queued on the null stream: like the real one, it may return before the memory is set. */
FAKE_API CUresult cuMemsetD8_v2(CUdeviceptr destination, unsigned char value, size_t length)
{
    ENTER_CONTEXT();
    unsigned char* backing = NULL;
    CUresult r;
    if (length == 0)
        return leave(CUDA_SUCCESS);
    if ((r = check_device_range(__func__, destination, length, &backing)) != CUDA_SUCCESS)
        return leave(r);
    stream_t* s = find_stream(NULL);
    op_t* op = calloc(1, sizeof *op);
    if (s == NULL || op == NULL) {
        free(op);
        return leave(CUDA_ERROR_OUT_OF_MEMORY);
    }
    op->kind = OP_MEMSET;
    op->destination = backing;
    op->value = value;
    op->length = length;
    stats.memsets++;
    return leave(enqueue(s, op));
}

FAKE_API CUresult cuMemHostRegister_v2(void* pointer, size_t size, unsigned int flags)
{
    ENTER(1, 1);
    stats.register_calls++;
    if ((r_ = need_context(__func__)) != CUDA_SUCCESS)
        return leave(r_);
    if (pointer == NULL || size == 0 || (flags & ~HOST_REGISTER_FLAGS) != 0)
        return leave(fail_value("%s: NULL pointer, size 0 or unknown flags (size %zu, flags 0x%x)", __func__, size, flags));
    CUresult r = check_host_range(__func__, pointer, size);
    if (r != CUDA_SUCCESS)
        return leave(r);
    uintptr_t start = (uintptr_t)pointer;
    for (registration_t* g = registrations; g != NULL; g = g->next)
        if (start < g->start + g->size && g->start < start + size) {
            complain("%s: [%p, +%zu) overlaps the registered [%p, +%zu)", __func__, pointer, size, (void*)g->start, g->size);
            return leave(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
        }
    registration_t* g = calloc(1, sizeof *g);
    if (g == NULL)
        return leave(CUDA_ERROR_OUT_OF_MEMORY);
    g->start = start;
    g->size = size;
    g->next = registrations;
    registrations = g;
    stats.registrations_live++;
    stats.registered_bytes_live += size;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuMemHostRegister(void* pointer, size_t size, unsigned int flags)
{
    return cuMemHostRegister_v2(pointer, size, flags);
}

FAKE_API CUresult cuMemHostUnregister(void* pointer)
{
    CUresult r = enter(__func__, 0, 1);
    if (r == CUDA_SUCCESS)
        r = need_context(__func__);
    if (r != CUDA_SUCCESS)
        return leave(r);
    registration_t** link = &registrations;
    while (*link != NULL && (*link)->start != (uintptr_t)pointer)
        link = &(*link)->next;
    if (*link == NULL) {
        complain("%s: %p is not the start of a registered range", __func__, pointer);
        return leave(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED);
    }
    registration_t* g = *link;
    if (g->pending > 0) {
        stats.hazards++;
        complain("%s: %p unregistered while %llu queued copies read it", __func__, pointer, (unsigned long long)g->pending);
        fprintf(stderr, "fakecuda: HAZARD: %s\n", complaint);
        while (g->pending > 0)
            pthread_cond_wait(&progress, &lock);
    }
    for (link = &registrations; *link != g; link = &(*link)->next) {
    }
    *link = g->next;
    stats.registrations_live--;
    stats.registered_bytes_live -= g->size;
    free(g);
    return leave(sticky_or(CUDA_SUCCESS));
}

/* ---- Streams and events -------------------------------------------------------------------------------------- */

FAKE_API CUresult cuStreamCreate(CUstream* stream, unsigned int flags)
{
    ENTER_CONTEXT();
    if (stream == NULL || (flags & ~1u) != 0)
        return leave(fail_value("%s: NULL output or unknown flags 0x%x", __func__, flags));
    stream_t* s = start_stream(STREAM_HANDLE_BASE + 16 * next_stream++, flags);
    if (s == NULL)
        return leave(CUDA_ERROR_OUT_OF_MEMORY);
    s->next = streams;
    streams = s;
    stats.streams_live++;
    *stream = (CUstream)(uintptr_t)s->handle;
    return leave(CUDA_SUCCESS);
}

static void stop_stream(stream_t* s)
{
    s->stopping = 1;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&lock);
    pthread_join(s->thread, NULL);
    pthread_mutex_lock(&lock);
    pthread_cond_destroy(&s->work);
    free(s);
}

/* Like the real one it needs no current context; queued work still runs (this call waits for it). */
FAKE_API CUresult cuStreamDestroy_v2(CUstream stream)
{
    CUresult r = enter(__func__, 0, 1);
    if (r != CUDA_SUCCESS)
        return leave(r);
    stream_t** link = &streams;
    while (*link != NULL && (*link)->handle != (uintptr_t)stream)
        link = &(*link)->next;
    if (*link == NULL)
        return leave(fail_handle(__func__, stream));
    stream_t* s = *link;
    *link = s->next;
    stats.streams_live--;
    stop_stream(s);
    return leave(sticky_or(CUDA_SUCCESS));
}

FAKE_API CUresult cuStreamDestroy(CUstream stream)
{
    return cuStreamDestroy_v2(stream);
}

FAKE_API CUresult cuStreamSynchronize(CUstream stream)
{
    ENTER(1, 1);
    stream_t* s = find_stream(stream);
    if (s == NULL)
        return leave(fail_handle(__func__, stream));
    wait_stream(s);
    return leave(sticky_or(CUDA_SUCCESS));
}

FAKE_API CUresult cuEventCreate(CUevent* event, unsigned int flags)
{
    ENTER_CONTEXT();
    if (event == NULL || (flags & ~0x7u) != 0)
        return leave(fail_value("%s: NULL output or unknown flags 0x%x", __func__, flags));
    event_t* e = calloc(1, sizeof *e);
    if (e == NULL)
        return leave(CUDA_ERROR_OUT_OF_MEMORY);
    e->handle = EVENT_HANDLE_BASE + 16 * next_event++;
    e->flags = flags;
    e->next = events;
    events = e;
    stats.events_live++;
    *event = (CUevent)(uintptr_t)e->handle;
    return leave(CUDA_SUCCESS);
}

FAKE_API CUresult cuEventDestroy_v2(CUevent event)
{
    CUresult r = enter(__func__, 0, 1);
    if (r != CUDA_SUCCESS)
        return leave(r);
    event_t** link = &events;
    while (*link != NULL && (*link)->handle != (uintptr_t)event)
        link = &(*link)->next;
    if (*link == NULL)
        return leave(fail_handle(__func__, event));
    event_t* e = *link;
    *link = e->next;
    stats.events_live--;
    free(e); /* a queued record of it finds no event and does nothing */
    pthread_cond_broadcast(&progress);
    return leave(sticky_or(CUDA_SUCCESS));
}

FAKE_API CUresult cuEventDestroy(CUevent event)
{
    return cuEventDestroy_v2(event);
}

FAKE_API CUresult cuEventRecord(CUevent event, CUstream stream)
{
    ENTER_CONTEXT();
    event_t* e = find_event((uintptr_t)event);
    if (e == NULL)
        return leave(fail_handle(__func__, event));
    stream_t* s = find_stream(stream);
    if (s == NULL)
        return leave(fail_handle(__func__, stream));
    op_t* op = calloc(1, sizeof *op);
    if (op == NULL)
        return leave(CUDA_ERROR_OUT_OF_MEMORY);
    e->generation++;
    e->state = 1;
    op->kind = OP_EVENT;
    op->event = e->handle;
    op->generation = e->generation;
    return leave(enqueue(s, op));
}

FAKE_API CUresult cuEventQuery(CUevent event)
{
    ENTER(1, 1);
    event_t* e = find_event((uintptr_t)event);
    if (e == NULL)
        return leave(fail_handle(__func__, event));
    return leave(e->state == 1 ? CUDA_ERROR_NOT_READY : CUDA_SUCCESS);
}

/* Returns at once for an event never recorded, like the real one. */
FAKE_API CUresult cuEventSynchronize(CUevent event)
{
    ENTER(1, 1);
    event_t* e = find_event((uintptr_t)event);
    if (e == NULL)
        return leave(fail_handle(__func__, event));
    uint64_t handle = e->handle;
    while ((e = find_event(handle)) != NULL && e->state == 1)
        pthread_cond_wait(&progress, &lock);
    return leave(sticky_or(CUDA_SUCCESS));
}

FAKE_API CUresult cuEventElapsedTime(float* milliseconds, CUevent start, CUevent end)
{
    ENTER(1, 1);
    if (milliseconds == NULL || is_device_address((uintptr_t)milliseconds))
        return leave(fail_value("%s: bad output pointer %p", __func__, (void*)milliseconds));
    event_t* a = find_event((uintptr_t)start);
    if (a == NULL)
        return leave(fail_handle(__func__, start));
    event_t* b = find_event((uintptr_t)end);
    if (b == NULL)
        return leave(fail_handle(__func__, end));
    if ((a->flags | b->flags) & EVENT_DISABLE_TIMING) {
        complain("%s: an event was created with CU_EVENT_DISABLE_TIMING", __func__);
        return leave(CUDA_ERROR_INVALID_HANDLE);
    }
    if (a->state == 0 || b->state == 0) {
        complain("%s: an event was never recorded", __func__);
        return leave(CUDA_ERROR_INVALID_HANDLE);
    }
    if (a->state == 1 || b->state == 1)
        return leave(CUDA_ERROR_NOT_READY);
    *milliseconds = (float)((double)(b->when.tv_sec - a->when.tv_sec) * 1e3 + (double)(b->when.tv_nsec - a->when.tv_nsec) / 1e6);
    return leave(CUDA_SUCCESS);
}

/* ---- Errors -------------------------------------------------------------------------------------------------- */

static CUresult describe(CUresult error, const char** out, int text)
{
    if (out == NULL)
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < sizeof error_table / sizeof error_table[0]; i++)
        if (error_table[i].code == error) {
            *out = text ? error_table[i].text : error_table[i].name;
            return CUDA_SUCCESS;
        }
    *out = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

FAKE_API CUresult cuGetErrorName(CUresult error, const char** name)
{
    return describe(error, name, 0);
}

FAKE_API CUresult cuGetErrorString(CUresult error, const char** text)
{
    return describe(error, text, 1);
}

/* ---- Test controls ------------------------------------------------------------------------------------------- */

FAKECUDA_API int fakecuda_get_stats(fakecuda_stats* out, size_t size)
{
    pthread_mutex_lock(&lock);
    stats.primary_refcount = (uint64_t)primary.refcount;
    memcpy(out, &stats, size < sizeof stats ? size : sizeof stats);
    pthread_mutex_unlock(&lock);
    return 0;
}

FAKECUDA_API int fakecuda_inject(const char* function, int n, int result, int sticky)
{
    if (function == NULL || n <= 0 || strlen(function) >= sizeof injections[0].function)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&lock);
    int r = CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < sizeof injections / sizeof injections[0]; i++)
        if (injections[i].countdown <= 0) {
            snprintf(injections[i].function, sizeof injections[i].function, "%s", function);
            injections[i].countdown = n;
            injections[i].result = result;
            injections[i].sticky = sticky;
            r = 0;
            break;
        }
    pthread_mutex_unlock(&lock);
    return r;
}

FAKECUDA_API void fakecuda_reset_sticky(void)
{
    pthread_mutex_lock(&lock);
    memset(injections, 0, sizeof injections);
    stats.sticky_error = 0;
    pthread_mutex_unlock(&lock);
}

FAKECUDA_API int fakecuda_set_delay_us(int delay)
{
    pthread_mutex_lock(&lock);
    int previous = max_delay_us;
    max_delay_us = delay < 0 ? 0 : delay;
    pthread_mutex_unlock(&lock);
    return previous;
}

FAKECUDA_API int fakecuda_peek(uint64_t address, void* destination, size_t length)
{
    pthread_mutex_lock(&lock);
    alloc_t* a = find_range(address, length);
    if (a != NULL && destination != NULL)
        memcpy(destination, a->memory + (address - a->address), length);
    pthread_mutex_unlock(&lock);
    return a != NULL && destination != NULL ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

FAKECUDA_API size_t fakecuda_last_complaint(char* buffer, size_t size)
{
    pthread_mutex_lock(&lock);
    size_t n = strlen(complaint);
    if (buffer != NULL && size > 0)
        snprintf(buffer, size, "%s", complaint);
    pthread_mutex_unlock(&lock);
    return n;
}

FAKECUDA_API uint64_t fakecuda_report(void)
{
    pthread_mutex_lock(&lock);
    uint64_t leaked = stats.allocations_live + stats.streams_live + stats.events_live + stats.registrations_live;
    if (leaked > 0) {
        fprintf(stderr, "fakecuda: LEAK REPORT: %llu allocations (%llu bytes), %llu streams, %llu events, %llu host registrations (%llu bytes) still alive\n",
                (unsigned long long)stats.allocations_live, (unsigned long long)stats.allocated_bytes_live,
                (unsigned long long)stats.streams_live, (unsigned long long)stats.events_live,
                (unsigned long long)stats.registrations_live, (unsigned long long)stats.registered_bytes_live);
        for (alloc_t* a = allocations; a != NULL; a = a->next)
            fprintf(stderr, "fakecuda:   allocation 0x%llx, %zu bytes\n", (unsigned long long)a->address, a->size);
        for (registration_t* g = registrations; g != NULL; g = g->next)
            fprintf(stderr, "fakecuda:   host registration %p, %zu bytes\n", (void*)g->start, g->size);
    }
    if (leaked > 0 || report_always)
        fprintf(stderr, "fakecuda: %llu calls, cuInit %llu, primary context retained %llu / released %llu, %llu allocations, "
                        "%llu host registrations, %llu async copies (%llu from pageable memory), %llu hazards, "
                        "%llu context errors, %llu handle errors, %llu value errors, %llu injected failures\n",
                (unsigned long long)stats.calls, (unsigned long long)stats.init_calls,
                (unsigned long long)stats.primary_retains, (unsigned long long)stats.primary_releases,
                (unsigned long long)stats.allocations_total, (unsigned long long)stats.register_calls,
                (unsigned long long)stats.async_copies, (unsigned long long)stats.pageable_async_copies,
                (unsigned long long)stats.hazards, (unsigned long long)stats.context_errors,
                (unsigned long long)stats.handle_errors, (unsigned long long)stats.value_errors,
                (unsigned long long)stats.injected_failures);
    pthread_mutex_unlock(&lock);
    return leaked;
}

static void parse_injections(const char* spec)
{
    char buffer[512];
    snprintf(buffer, sizeof buffer, "%s", spec);
    char* save = NULL;
    for (char* item = strtok_r(buffer, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        char function[64];
        int n = 0, result = 0;
        char sticky[16] = "";
        /* FUNCTION:N:RESULT[:sticky]; FUNCTION may itself contain a colon (exec:...), so split from the right. */
        char* last = strrchr(item, ':');
        int has_sticky = last != NULL && strcmp(last + 1, "sticky") == 0;
        if (has_sticky) {
            snprintf(sticky, sizeof sticky, "sticky");
            *last = '\0';
        }
        char* r = strrchr(item, ':');
        if (r == NULL)
            continue;
        *r = '\0';
        char* c = strrchr(item, ':');
        if (c == NULL)
            continue;
        *c = '\0';
        n = atoi(c + 1);
        result = atoi(r + 1);
        snprintf(function, sizeof function, "%s", item);
        if (fakecuda_inject(function, n, result, sticky[0] != '\0') != 0)
            fprintf(stderr, "fakecuda: FAKECUDA_INJECT entry '%s' ignored\n", function);
    }
}

__attribute__((constructor)) static void fake_load(void)
{
    const char* delay = getenv("FAKECUDA_DELAY_US");
    if (delay != NULL && *delay != '\0')
        max_delay_us = atoi(delay);
    const char* inject = getenv("FAKECUDA_INJECT");
    if (inject != NULL && *inject != '\0')
        parse_injections(inject);
    report_always = getenv("FAKECUDA_REPORT") != NULL && strcmp(getenv("FAKECUDA_REPORT"), "0") != 0;
    quiet = getenv("FAKECUDA_QUIET") != NULL && strcmp(getenv("FAKECUDA_QUIET"), "0") != 0;
}

__attribute__((destructor)) static void fake_unload(void)
{
    if (!quiet)
        fakecuda_report();
}
