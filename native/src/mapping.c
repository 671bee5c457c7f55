/*
 * Read-only file mappings whose faults are errors, not crashes.
 *
 * A page of a shared file mapping that lies beyond the file's current end raises SIGBUS when touched: a file
 * truncated by another process while it is mapped would kill the process. ct_mapping_call runs a function with
 * such faults inside one address range turned into a -EFAULT return: a SIGBUS handler, installed once and chained
 * to the previous one, siglongjmps back when the faulting address lies in the calling thread's guarded range.
 * Faults anywhere else, or on threads without a guard, go to the previous handler (the .NET runtime's, or the
 * default action) exactly as before. This is how the JVM turns SIGBUS in a MappedByteBuffer copy into an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct guard {
    sigjmp_buf* volatile jump; /* non-NULL while a guarded call runs on this thread */
    volatile uintptr_t lo;
    volatile uintptr_t hi;
};

/* initial-exec: the handler reads it without __tls_get_addr (which may allocate, and is not async-signal-safe). */
static _Thread_local struct guard guard __attribute__((tls_model("initial-exec")));

static pthread_once_t install_once = PTHREAD_ONCE_INIT;
static struct sigaction previous;
static int install_status = -ENOSYS;

static void on_sigbus(int sig, siginfo_t* info, void* context)
{
    struct guard* g = &guard;
    const uintptr_t address = (uintptr_t)info->si_addr;
    sigjmp_buf* jump = g->jump;
    if (jump != NULL && address >= g->lo && address < g->hi) {
        g->jump = NULL;
        /* The guard's sigsetjmp does not save the mask (a syscall per call): unblock SIGBUS here instead. */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        siglongjmp(*jump, 1);
    }
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, context);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
    } else {
        /* Default action: put it back and return; the faulting instruction runs again and faults for real. */
        sigaction(SIGBUS, &previous, NULL);
    }
}

static void install(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
    sigemptyset(&action.sa_mask);
    install_status = sigaction(SIGBUS, &action, &previous) == 0 ? CT_OK : -errno;
}

int ct_mapping_guard_install(void)
{
    pthread_once(&install_once, install);
    if (install_status != CT_OK)
        return ct_fail(install_status, "sigaction(SIGBUS) failed: %s", strerror(-install_status));
    return CT_OK;
}

int ct_mapping_open(int fd, uint64_t length, const void** out)
{
    if (out == NULL)
        return ct_fail(-EINVAL, "out is NULL");
    *out = NULL;
    if (fd < 0 || length == 0)
        return ct_fail(-EINVAL, "bad descriptor %d or empty length", fd);
    if (length > (uint64_t)SIZE_MAX || length > (uint64_t)INT64_MAX)
        return ct_fail(-EOVERFLOW, "length %llu does not fit the address space", (unsigned long long)length);
    int status = ct_mapping_guard_install();
    if (status != CT_OK)
        return status;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return ct_fail(-errno, "fstat failed: %s", strerror(errno));
    if ((uint64_t)st.st_size < length)
        return ct_fail(-EFAULT, "the file is %lld bytes, %llu expected: it shrank", (long long)st.st_size,
                       (unsigned long long)length);
    void* p = mmap(NULL, (size_t)length, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return ct_fail(-errno, "mmap of %llu bytes failed: %s", (unsigned long long)length, strerror(errno));
    *out = p;
    ct_clear_error();
    return CT_OK;
}

int ct_mapping_close(const void* address, uint64_t length)
{
    if (address == NULL)
        return CT_OK;
    if (munmap((void*)address, (size_t)length) != 0)
        return ct_fail(-errno, "munmap failed: %s", strerror(errno));
    return CT_OK;
}

int ct_mapping_call(const void* lo, size_t length, ct_guarded_fn fn, void* arg)
{
    if (fn == NULL || (lo == NULL && length != 0) || (uintptr_t)lo > UINTPTR_MAX - length)
        return ct_fail(-EINVAL, "bad guarded range or function");
    int status = ct_mapping_guard_install();
    if (status != CT_OK)
        return status;
    struct guard* g = &guard;
    if (g->jump != NULL)
        return ct_fail(-EBUSY, "a guarded call is already running on this thread");
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0) != 0)
        return ct_fail(-EFAULT, "the mapped file ended early (SIGBUS): it was truncated while being read");
    g->lo = (uintptr_t)lo;
    g->hi = (uintptr_t)lo + length;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    g->jump = &jump;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    const int result = fn(arg);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    g->jump = NULL;
    return result;
}

struct copy_args {
    void* destination;
    const void* source;
    size_t length;
};

static int copy(void* arg)
{
    const struct copy_args* a = arg;
    memcpy(a->destination, a->source, a->length);
    return CT_OK;
}

int ct_mapping_copy(void* destination, const void* source, size_t length)
{
    if (length == 0)
        return CT_OK;
    if (destination == NULL || source == NULL)
        return ct_fail(-EINVAL, "NULL buffer");
    struct copy_args a = { destination, source, length };
    return ct_mapping_call(source, length, copy, &a);
}

int ct_mapping_release(const void* address, size_t length)
{
    const uintptr_t p = ct_page_size();
    const uintptr_t start = ((uintptr_t)address + p - 1) & ~(p - 1);
    const uintptr_t end = ((uintptr_t)address + length) & ~(p - 1);
    if (address == NULL || end <= start)
        return CT_OK;
    if (madvise((void*)start, end - start, MADV_DONTNEED) != 0)
        return ct_fail(-errno, "madvise(MADV_DONTNEED) failed: %s", strerror(errno));
    return CT_OK;
}
