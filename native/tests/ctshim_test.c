/* CTest program for libctshim: prints one line per check, exits non-zero on the first failure. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctshim.h"

static int checks;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        checks++;                                                                            \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: check failed: %s (last error: '%s')\n", __FILE__, __LINE__, \
                    #cond, ct_last_error_message());                                         \
            exit(1);                                                                         \
        }                                                                                    \
    } while (0)

static size_t page(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static void fill_and_verify(ct_host_buffer* b, uint8_t seed)
{
    uint8_t* p = b->ptr;
    for (size_t i = 0; i < b->size; i++)
        p[i] = (uint8_t)(seed + i * 31);
    size_t bad = 0;
    for (size_t i = 0; i < b->size; i++)
        bad += p[i] != (uint8_t)(seed + i * 31);
    CHECK(bad == 0);
}

static void test_abi(void)
{
    CHECK(ct_abi_version() == CT_ABI_VERSION);
    CHECK(ct_host_buffer_size() == sizeof(ct_host_buffer));
    CHECK(strcmp(ct_strerror(0), "success") == 0);
    CHECK(strcmp(ct_strerror(-EINVAL), "invalid argument") == 0);
    CHECK(ct_cuda_available() == 0 || ct_cuda_available() == 1);
}

static void test_alloc_sizes(void)
{
    const size_t sizes[] = { 1, 100, page() - 1, page(), page() + 1, 3 * page() + 17, (2u << 20) + 5, 5u << 20 };
    const uint32_t flag_sets[] = { CT_HOST_DEFAULT, CT_HOST_POPULATE, CT_HOST_TOUCH, 0, CT_HOST_ALL_FLAGS };
    for (size_t f = 0; f < sizeof flag_sets / sizeof flag_sets[0]; f++) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            ct_host_buffer b;
            CHECK(ct_host_alloc(sizes[i], flag_sets[f], &b) == CT_OK);
            CHECK(b.ptr != NULL);
            CHECK(((uintptr_t)b.ptr % page()) == 0);
            CHECK(b.size == sizes[i]);
            CHECK(b.mapped_size >= b.size && b.mapped_size % page() == 0 && b.mapped_size - b.size < page());
            CHECK(b.flags == flag_sets[f]);
            if (flag_sets[f] & CT_HOST_LOCK)
                CHECK(b.locked ? b.lock_errno == 0 : b.lock_errno != 0);
            else
                CHECK(!b.locked && b.lock_errno == 0);
            if ((flag_sets[f] & CT_HOST_HUGEPAGE) && b.mapped_size >= (2u << 20))
                CHECK(((uintptr_t)b.ptr % (2u << 20)) == 0);
            if (!(flag_sets[f] & CT_HOST_CUDA_REGISTER))
                CHECK(!b.cuda_registered && b.cuda_result == 0);
            else if (!ct_cuda_available())
                CHECK(!b.cuda_registered && b.cuda_result == CT_CUDA_NOT_AVAILABLE);
            fill_and_verify(&b, (uint8_t)i);
            CHECK(ct_host_free(&b) == CT_OK);
            CHECK(b.ptr == NULL);
            CHECK(ct_host_free(&b) == CT_OK); /* zeroed: no-op */
        }
    }
    ct_host_buffer locked;
    CHECK(ct_host_alloc(1u << 20, CT_HOST_LOCK, &locked) == CT_OK);
    printf("  1 MiB mlock: %s (errno %d), cuda available: %d, registered: %d\n", locked.locked ? "locked" : "not locked",
           locked.lock_errno, ct_cuda_available(), locked.cuda_registered);
    CHECK(ct_host_free(&locked) == CT_OK);
}

static void test_invalid(void)
{
    ct_host_buffer b;
    memset(&b, 0xAB, sizeof b);
    CHECK(ct_host_alloc(0, CT_HOST_DEFAULT, &b) == -EINVAL);
    CHECK(b.ptr == NULL);
    CHECK(strstr(ct_last_error_message(), "size is 0") != NULL);
    CHECK(ct_host_alloc(16, CT_HOST_DEFAULT, NULL) == -EINVAL);
    CHECK(ct_host_alloc(16, 0x8000u, &b) == -EINVAL);
    CHECK(ct_host_alloc(SIZE_MAX, CT_HOST_DEFAULT, &b) == -EOVERFLOW);
    CHECK(ct_host_alloc(SIZE_MAX / 2, CT_HOST_TOUCH, &b) == -ENOMEM);
    CHECK(ct_host_free(NULL) == -EINVAL);

    ct_pool* pool = NULL;
    CHECK(ct_pool_create(1u << 20, 0x8000u, &pool) == -EINVAL && pool == NULL);
    CHECK(ct_pool_create(1u << 20, CT_HOST_TOUCH, NULL) == -EINVAL);
    CHECK(ct_pool_create(1u << 20, CT_HOST_TOUCH, &pool) == CT_OK);
    CHECK(ct_pool_acquire(pool, 0, &b) == -EINVAL);
    CHECK(ct_pool_acquire(NULL, 16, &b) == -EINVAL);
    ct_host_buffer foreign;
    CHECK(ct_host_alloc(100, CT_HOST_TOUCH, &foreign) == CT_OK);
    CHECK(ct_pool_release(pool, &foreign) == -ENOENT);
    CHECK(ct_host_free(&foreign) == CT_OK);
    CHECK(ct_pool_destroy(pool) == CT_OK);
    CHECK(ct_pool_destroy(NULL) == CT_OK);
}

static void test_pool_reuse(void)
{
    ct_pool* pool;
    ct_pool_statistics s;
    CHECK(ct_pool_create(8u << 20, CT_HOST_DEFAULT, &pool) == CT_OK);

    ct_host_buffer a;
    CHECK(ct_pool_acquire(pool, 1000000, &a) == CT_OK);
    void* first = a.ptr;
    size_t mapped = a.mapped_size;
    fill_and_verify(&a, 7);
    CHECK(ct_pool_stats(pool, &s) == CT_OK);
    CHECK(s.misses == 1 && s.hits == 0 && s.buffers_in_use == 1 && s.bytes_in_use == mapped && s.bytes_cached == 0);
    CHECK(ct_pool_destroy(pool) == -EBUSY);

    CHECK(ct_pool_release(pool, &a) == CT_OK);
    CHECK(a.ptr == NULL);
    CHECK(ct_pool_release(pool, &a) == -ENOENT); /* double release */
    CHECK(ct_pool_stats(pool, &s) == CT_OK);
    CHECK(s.buffers_cached == 1 && s.bytes_cached == mapped && s.buffers_in_use == 0 && s.bytes_in_use == 0);

    /* Same size, then a smaller one that still fits within 2x: both reuse the same pages. */
    CHECK(ct_pool_acquire(pool, 1000000, &a) == CT_OK);
    CHECK(a.ptr == first && a.size == 1000000);
    CHECK(ct_pool_release(pool, &a) == CT_OK);
    CHECK(ct_pool_acquire(pool, 600000, &a) == CT_OK);
    CHECK(a.ptr == first && a.size == 600000 && a.mapped_size == mapped);
    fill_and_verify(&a, 9);

    /* While it is out, a second acquire misses; a tiny one does not take a cached big buffer. */
    ct_host_buffer b, tiny;
    CHECK(ct_pool_acquire(pool, 1000000, &b) == CT_OK);
    CHECK(b.ptr != first);
    CHECK(ct_pool_release(pool, &b) == CT_OK);
    CHECK(ct_pool_acquire(pool, 10, &tiny) == CT_OK);
    CHECK(tiny.ptr != b.ptr && tiny.mapped_size == page());
    CHECK(ct_pool_stats(pool, &s) == CT_OK);
    CHECK(s.hits == 2 && s.misses == 3 && s.buffers_in_use == 2 && s.buffers_cached == 1);
    CHECK(ct_pool_release(pool, &tiny) == CT_OK);
    CHECK(ct_pool_release(pool, &a) == CT_OK);

    /* Cache bound: a release that would exceed max_cached_bytes frees the buffer. */
    ct_host_buffer big;
    CHECK(ct_pool_acquire(pool, 7u << 20, &big) == CT_OK);
    CHECK(ct_pool_release(pool, &big) == CT_OK);
    CHECK(ct_pool_stats(pool, &s) == CT_OK);
    CHECK(s.evictions == 1 && s.bytes_cached == 2 * mapped + page() && s.buffers_cached == 3);

    CHECK(ct_pool_trim(pool) == CT_OK);
    CHECK(ct_pool_stats(pool, &s) == CT_OK);
    CHECK(s.buffers_cached == 0 && s.bytes_cached == 0 && s.evictions == 4);
    CHECK(ct_pool_destroy(pool) == CT_OK);
}

enum { THREADS = 8, ROUNDS = 200 };

static void* worker(void* arg)
{
    ct_pool* pool = arg;
    unsigned seed = (unsigned)(uintptr_t)&seed;
    for (int i = 0; i < ROUNDS; i++) {
        size_t size = 1 + (size_t)(rand_r(&seed) % (256 * 1024));
        ct_host_buffer b;
        if (ct_pool_acquire(pool, size, &b) != CT_OK)
            return (void*)1;
        memset(b.ptr, (int)(i & 0xff), size);
        uint8_t* p = b.ptr;
        if (p[0] != (uint8_t)i || p[size - 1] != (uint8_t)i)
            return (void*)1;
        if (ct_pool_release(pool, &b) != CT_OK)
            return (void*)1;
    }
    return NULL;
}

static void test_threads(void)
{
    ct_pool* pool;
    CHECK(ct_pool_create(4u << 20, CT_HOST_TOUCH, &pool) == CT_OK);
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&threads[i], NULL, worker, pool) == 0);
    for (int i = 0; i < THREADS; i++) {
        void* result;
        CHECK(pthread_join(threads[i], &result) == 0);
        CHECK(result == NULL);
    }
    ct_pool_statistics s;
    CHECK(ct_pool_stats(pool, &s) == CT_OK);
    CHECK(s.hits + s.misses == (uint64_t)THREADS * ROUNDS);
    CHECK(s.buffers_in_use == 0 && s.bytes_in_use == 0 && s.bytes_cached <= (4u << 20));
    printf("  threads: %llu hits, %llu misses, %llu evictions\n", (unsigned long long)s.hits,
           (unsigned long long)s.misses, (unsigned long long)s.evictions);
    CHECK(ct_pool_destroy(pool) == CT_OK);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Not a check: prints first-touch vs reused-buffer fill throughput when CTSHIM_BENCH_MIB is set. */
static void bench(void)
{
    const char* env = getenv("CTSHIM_BENCH_MIB");
    if (env == NULL)
        return;
    size_t size = (size_t)strtoul(env, NULL, 10) << 20;
    ct_pool* pool;
    CHECK(ct_pool_create(size, 0, &pool) == CT_OK);
    for (int round = 0; round < 3; round++) {
        double t0 = now();
        ct_host_buffer b;
        CHECK(ct_pool_acquire(pool, size, &b) == CT_OK);
        memset(b.ptr, round + 1, size);
        double t1 = now();
        printf("  bench round %d (%s): %.2f GB/s\n", round, round == 0 ? "first touch" : "reused",
               (double)size / (t1 - t0) / 1e9);
        CHECK(ct_pool_release(pool, &b) == CT_OK);
    }
    CHECK(ct_pool_destroy(pool) == CT_OK);
}

/* A file of n pages, page i filled with byte i+1; returns its descriptor (the file is already unlinked). */
static int page_file(size_t n)
{
    char path[] = "/tmp/ctshim_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    uint8_t* buf = malloc(page());
    CHECK(buf != NULL);
    for (size_t i = 0; i < n; i++) {
        memset(buf, (int)(i + 1), page());
        CHECK(write(fd, buf, page()) == (ssize_t)page());
    }
    free(buf);
    return fd;
}

static int sum_first(void* arg)
{
    const volatile uint8_t* p = arg;
    return p[0] + p[page() - 1];
}

static void test_mapping(void)
{
    const size_t n = 4;
    int fd = page_file(n);
    const void* map = NULL;
    CHECK(ct_mapping_open(fd, n * page(), &map) == CT_OK && map != NULL);
    const uint8_t* m = map;
    uint8_t* out = malloc(n * page());
    CHECK(out != NULL);

    /* Whole file while intact: the guarded copy is a plain copy. */
    CHECK(ct_mapping_copy(out, m, n * page()) == CT_OK);
    for (size_t i = 0; i < n; i++)
        CHECK(out[i * page()] == i + 1 && out[i * page() + page() - 1] == i + 1);
    CHECK(ct_mapping_call(m + page(), page(), sum_first, (void*)(m + page())) == 4);

    /* Released pages read back from the page cache. */
    CHECK(ct_mapping_release(m, n * page()) == CT_OK);
    CHECK(ct_mapping_release(m + 1, 10) == CT_OK); /* no whole page inside: nothing to do */
    CHECK(m[2 * page()] == 3);

    /* Truncated to one page: pages 1..3 fault; the guard turns each fault into -EFAULT, repeatedly. */
    CHECK(ftruncate(fd, (off_t)page()) == 0);
    for (int round = 0; round < 3; round++) {
        memset(out, 0, n * page());
        CHECK(ct_mapping_copy(out, m, n * page()) == -EFAULT);
        CHECK(strstr(ct_last_error_message(), "SIGBUS") != NULL);
        CHECK(ct_mapping_call(m + 2 * page(), page(), sum_first, (void*)(m + 2 * page())) == -EFAULT);
    }
    CHECK(ct_mapping_copy(out, m, page()) == CT_OK && out[0] == 1); /* the page that is still there */

    /* A fault outside the guarded range is not swallowed: the default action still kills (in a child). */
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        volatile uint8_t x = m[3 * page()];
        (void)x;
        _exit(0);
    }
    int wstatus = 0;
    CHECK(waitpid(child, &wstatus, 0) == child);
    CHECK(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGBUS);

    /* Nor a fault outside the range inside a guarded call. */
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        ct_mapping_call(m, page(), sum_first, (void*)(m + 3 * page()));
        _exit(0);
    }
    CHECK(waitpid(child, &wstatus, 0) == child);
    CHECK(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGBUS);

    /* A file that already shrank is refused before mapping. */
    const void* again = NULL;
    CHECK(ct_mapping_open(fd, n * page(), &again) == -EFAULT && again == NULL);
    CHECK(ct_mapping_open(-1, page(), &again) == -EINVAL);
    CHECK(ct_mapping_open(fd, 0, &again) == -EINVAL);
    CHECK(ct_mapping_copy(out, NULL, 1) == -EINVAL);
    CHECK(ct_mapping_call(m, page(), NULL, NULL) == -EINVAL);

    CHECK(ct_mapping_close(map, n * page()) == CT_OK);
    CHECK(ct_mapping_close(NULL, 0) == CT_OK);
    free(out);
    close(fd);
}

/*
 * With CRYPTOTENSORS_CUDA_DRIVER naming the fake driver (the ctshim_fakecuda_test CTest entry): host memory
 * without CT_HOST_CUDA_REGISTER never loads the driver; with it, the range is registered in the primary context,
 * the thread's current context is left as it was, and freeing undoes the registration and the context reference.
 */
static void test_fake_cuda(void)
{
    const char* path = getenv("CRYPTOTENSORS_CUDA_DRIVER");
    if (path == NULL || strstr(path, "fakecuda") == NULL)
        return;
    ct_host_buffer b;
    CHECK(ct_host_alloc(1u << 20, CT_HOST_DEFAULT, &b) == CT_OK);
    CHECK(ct_host_free(&b) == CT_OK);
    CHECK(dlopen(path, RTLD_NOW | RTLD_NOLOAD) == NULL); /* CPU memory: the driver was never even loaded */

    CHECK(ct_host_alloc(1u << 20, CT_HOST_DEFAULT | CT_HOST_CUDA_REGISTER, &b) == CT_OK);
    CHECK(b.cuda_registered == 1 && b.cuda_result == 0);
    void* lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    CHECK(lib != NULL);
    uint64_t stats[32];
    int (*get_stats)(uint64_t*, size_t) = (int (*)(uint64_t*, size_t))dlsym(lib, "fakecuda_get_stats");
    int (*get_current)(void**) = (int (*)(void**))dlsym(lib, "cuCtxGetCurrent");
    CHECK(get_stats != NULL && get_current != NULL);
    void* current = (void*)1;
    CHECK(get_current(&current) == 0 && current == NULL); /* not left current on the caller's thread */
    get_stats(stats, sizeof stats);
    CHECK(stats[11] == 1 && stats[4] == 1); /* registrations_live, primary_refcount */
    ct_host_buffer again = b;
    CHECK(ct_host_free(&b) == CT_OK);
    get_stats(stats, sizeof stats);
    CHECK(stats[11] == 0 && stats[4] == 0);
    CHECK(get_current(&current) == 0 && current == NULL);
    (void)again;
    printf("  fake CUDA driver: registration only when asked, context not left current, undone on free\n");
}

int main(void)
{
    test_fake_cuda();
    test_abi();
    test_alloc_sizes();
    test_invalid();
    test_pool_reuse();
    test_threads();
    test_mapping();
    bench();
    printf("ctshim_test: %d checks passed\n", checks);
    return 0;
}
