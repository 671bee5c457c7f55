#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

#define HUGE_PAGE_SIZE ((size_t)2 << 20)

size_t ct_page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

/* Maps size bytes; for huge page candidates over-maps and trims so the start is 2 MiB aligned. */
static void* map_range(size_t size, size_t align, int populate)
{
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0);
    if (align <= ct_page_size() || size > SIZE_MAX - align) {
        void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    /* Reserve without populating and trim to the alignment; MAP_POPULATE then applies to the kept range only. */
    uint8_t* raw = mmap(NULL, size + align, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)raw;
    if (head > 0)
        munmap(raw, head);
    munmap((uint8_t*)start + size, align - head);
    if (populate && mmap((void*)start, size, PROT_READ | PROT_WRITE, flags | MAP_FIXED, -1, 0) == MAP_FAILED) {
        int e = errno;
        munmap((void*)start, size);
        errno = e;
        return NULL;
    }
    return (void*)start;
}

int ct_host_alloc(size_t size, uint32_t flags, ct_host_buffer* out)
{
    ct_clear_error();
    if (out == NULL)
        return ct_fail(-EINVAL, "ct_host_alloc: out is NULL");
    memset(out, 0, sizeof *out);
    if (size == 0)
        return ct_fail(-EINVAL, "ct_host_alloc: size is 0");
    if ((flags & ~CT_HOST_ALL_FLAGS) != 0)
        return ct_fail(-EINVAL, "ct_host_alloc: unknown flags 0x%x", (unsigned)(flags & ~CT_HOST_ALL_FLAGS));
    size_t page = ct_page_size();
    if (size > SIZE_MAX - page)
        return ct_fail(-EOVERFLOW, "ct_host_alloc: size %zu too large", size);
    size_t mapped = (size + page - 1) & ~(page - 1);

    int huge = (flags & CT_HOST_HUGEPAGE) != 0;
    void* ptr = map_range(mapped, huge && mapped >= HUGE_PAGE_SIZE ? HUGE_PAGE_SIZE : page,
                          (flags & CT_HOST_POPULATE) != 0);
    if (ptr == NULL) {
        int e = errno;
        return ct_fail(-ENOMEM, "mmap of %zu bytes failed: %s", mapped, strerror(e));
    }
    out->ptr = ptr;
    out->size = size;
    out->mapped_size = mapped;
    out->flags = flags;

    /* Advice first so the faults below can be served with huge pages. */
    if (huge)
        out->hugepage_advised = madvise(ptr, mapped, MADV_HUGEPAGE) == 0;

    /* mlock faults the whole range in (write faults on a private writable map), bounded by RLIMIT_MEMLOCK
       unless the process has CAP_IPC_LOCK; a refusal is recorded, not fatal. */
    if (flags & CT_HOST_LOCK) {
        if (mlock(ptr, mapped) == 0)
            out->locked = 1;
        else
            out->lock_errno = errno;
    }

    if ((flags & CT_HOST_TOUCH) && !out->locked) {
        volatile uint8_t* bytes = ptr;
        for (size_t off = 0; off < mapped; off += page)
            bytes[off] = 0;
    }

    if (flags & CT_HOST_CUDA_REGISTER)
        out->cuda_registered = ct_cuda_register(ptr, mapped, &out->cuda_result);
    return CT_OK;
}

int ct_host_free(ct_host_buffer* buf)
{
    ct_clear_error();
    if (buf == NULL)
        return ct_fail(-EINVAL, "ct_host_free: buf is NULL");
    if (buf->ptr == NULL)
        return CT_OK;
    int status = CT_OK;
    if (buf->cuda_registered) {
        int r = ct_cuda_unregister(buf->ptr);
        if (r != 0)
            status = ct_fail(-EINVAL, "cuMemHostUnregister failed with CUresult %d", r);
    }
    if (buf->locked)
        munlock(buf->ptr, buf->mapped_size);
    if (munmap(buf->ptr, buf->mapped_size) != 0) {
        int e = errno;
        status = ct_fail(-EINVAL, "munmap failed: %s", strerror(e));
    }
    memset(buf, 0, sizeof *buf);
    return status;
}
