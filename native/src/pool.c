#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct entry {
    ct_host_buffer buf;
    int in_use;
} entry;

struct ct_pool {
    pthread_mutex_t mutex;
    size_t max_cached;
    uint32_t flags;
    entry* entries;
    size_t count;
    size_t capacity;
    ct_pool_statistics stats;
};

int ct_pool_create(size_t max_cached_bytes, uint32_t flags, ct_pool** out)
{
    ct_clear_error();
    if (out == NULL)
        return ct_fail(-EINVAL, "ct_pool_create: out is NULL");
    *out = NULL;
    if ((flags & ~CT_HOST_ALL_FLAGS) != 0)
        return ct_fail(-EINVAL, "ct_pool_create: unknown flags 0x%x", (unsigned)(flags & ~CT_HOST_ALL_FLAGS));
    ct_pool* pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return ct_fail(-ENOMEM, "ct_pool_create: out of memory");
    if (pthread_mutex_init(&pool->mutex, NULL) != 0) {
        free(pool);
        return ct_fail(-ENOMEM, "ct_pool_create: pthread_mutex_init failed");
    }
    pool->max_cached = max_cached_bytes;
    pool->flags = flags;
    *out = pool;
    return CT_OK;
}

/* Smallest cached buffer that fits and is at most twice the page-rounded request; caller holds the mutex. */
static entry* best_fit(ct_pool* pool, size_t size)
{
    entry* best = NULL;
    for (size_t i = 0; i < pool->count; i++) {
        entry* e = &pool->entries[i];
        size_t have = e->buf.mapped_size;
        if (e->in_use || have < size || have / 2 > size)
            continue;
        if (best == NULL || have < best->buf.mapped_size)
            best = e;
    }
    return best;
}

static void remove_entry(ct_pool* pool, entry* e)
{
    *e = pool->entries[--pool->count];
}

int ct_pool_acquire(ct_pool* pool, size_t size, ct_host_buffer* out)
{
    ct_clear_error();
    if (pool == NULL || out == NULL)
        return ct_fail(-EINVAL, "ct_pool_acquire: pool or out is NULL");
    memset(out, 0, sizeof *out);
    if (size == 0)
        return ct_fail(-EINVAL, "ct_pool_acquire: size is 0");
    size_t page = ct_page_size();
    if (size > SIZE_MAX - page)
        return ct_fail(-EOVERFLOW, "ct_pool_acquire: size %zu too large", size);

    pthread_mutex_lock(&pool->mutex);
    entry* hit = best_fit(pool, (size + page - 1) & ~(page - 1));
    if (hit != NULL) {
        hit->in_use = 1;
        *out = hit->buf;
        out->size = size;
        pool->stats.hits++;
        pool->stats.buffers_cached--;
        pool->stats.bytes_cached -= hit->buf.mapped_size;
        pool->stats.buffers_in_use++;
        pool->stats.bytes_in_use += hit->buf.mapped_size;
        pthread_mutex_unlock(&pool->mutex);
        return CT_OK;
    }
    pool->stats.misses++;
    pthread_mutex_unlock(&pool->mutex);

    /* Allocate (and fault in, possibly for a long time) outside the lock. */
    ct_host_buffer fresh;
    int status = ct_host_alloc(size, pool->flags, &fresh);
    if (status != CT_OK)
        return status;

    pthread_mutex_lock(&pool->mutex);
    if (pool->count == pool->capacity) {
        size_t capacity = pool->capacity == 0 ? 16 : pool->capacity * 2;
        entry* grown = realloc(pool->entries, capacity * sizeof *grown);
        if (grown == NULL) {
            pthread_mutex_unlock(&pool->mutex);
            ct_host_free(&fresh);
            return ct_fail(-ENOMEM, "ct_pool_acquire: out of memory");
        }
        pool->entries = grown;
        pool->capacity = capacity;
    }
    pool->entries[pool->count++] = (entry){ fresh, 1 };
    pool->stats.buffers_in_use++;
    pool->stats.bytes_in_use += fresh.mapped_size;
    pthread_mutex_unlock(&pool->mutex);
    *out = fresh;
    return CT_OK;
}

int ct_pool_release(ct_pool* pool, ct_host_buffer* buf)
{
    ct_clear_error();
    if (pool == NULL || buf == NULL)
        return ct_fail(-EINVAL, "ct_pool_release: pool or buf is NULL");
    pthread_mutex_lock(&pool->mutex);
    entry* e = NULL;
    for (size_t i = 0; i < pool->count && e == NULL; i++)
        if (pool->entries[i].in_use && pool->entries[i].buf.ptr == buf->ptr && buf->ptr != NULL)
            e = &pool->entries[i];
    if (e == NULL) {
        pthread_mutex_unlock(&pool->mutex);
        return ct_fail(-ENOENT, "ct_pool_release: %p was not acquired from this pool", buf->ptr);
    }
    size_t mapped = e->buf.mapped_size;
    pool->stats.buffers_in_use--;
    pool->stats.bytes_in_use -= mapped;
    ct_host_buffer evicted = { 0 };
    if (pool->stats.bytes_cached + mapped <= pool->max_cached) {
        e->in_use = 0;
        pool->stats.buffers_cached++;
        pool->stats.bytes_cached += mapped;
    } else {
        evicted = e->buf;
        remove_entry(pool, e);
        pool->stats.evictions++;
    }
    pthread_mutex_unlock(&pool->mutex);
    memset(buf, 0, sizeof *buf);
    return ct_host_free(&evicted);
}

int ct_pool_trim(ct_pool* pool)
{
    ct_clear_error();
    if (pool == NULL)
        return ct_fail(-EINVAL, "ct_pool_trim: pool is NULL");
    for (;;) {
        ct_host_buffer victim = { 0 };
        pthread_mutex_lock(&pool->mutex);
        for (size_t i = 0; i < pool->count; i++) {
            if (!pool->entries[i].in_use) {
                victim = pool->entries[i].buf;
                remove_entry(pool, &pool->entries[i]);
                pool->stats.buffers_cached--;
                pool->stats.bytes_cached -= victim.mapped_size;
                pool->stats.evictions++;
                break;
            }
        }
        pthread_mutex_unlock(&pool->mutex);
        if (victim.ptr == NULL)
            return CT_OK;
        ct_host_free(&victim);
    }
}

int ct_pool_stats(ct_pool* pool, ct_pool_statistics* out)
{
    ct_clear_error();
    if (pool == NULL || out == NULL)
        return ct_fail(-EINVAL, "ct_pool_stats: pool or out is NULL");
    pthread_mutex_lock(&pool->mutex);
    *out = pool->stats;
    pthread_mutex_unlock(&pool->mutex);
    return CT_OK;
}

int ct_pool_destroy(ct_pool* pool)
{
    ct_clear_error();
    if (pool == NULL)
        return CT_OK;
    pthread_mutex_lock(&pool->mutex);
    uint64_t in_use = pool->stats.buffers_in_use;
    pthread_mutex_unlock(&pool->mutex);
    if (in_use != 0)
        return ct_fail(-EBUSY, "ct_pool_destroy: %llu buffers still acquired", (unsigned long long)in_use);
    for (size_t i = 0; i < pool->count; i++)
        ct_host_free(&pool->entries[i].buf);
    free(pool->entries);
    pthread_mutex_destroy(&pool->mutex);
    free(pool);
    return CT_OK;
}
