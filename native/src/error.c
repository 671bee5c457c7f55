#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char last_error[256];

int ct_abi_version(void) { return CT_ABI_VERSION; }

size_t ct_host_buffer_size(void) { return sizeof(ct_host_buffer); }

const char* ct_strerror(int code)
{
    switch (code) {
    case CT_OK: return "success";
    case -EINVAL: return "invalid argument";
    case -ENOMEM: return "out of memory";
    case -EOVERFLOW: return "size too large";
    case -EBUSY: return "pool still has acquired buffers";
    case -ENOENT: return "buffer was not acquired from this pool";
    case -EFAULT: return "mapped file ended early";
    default: return code < 0 ? "system error" : "unknown status";
    }
}

const char* ct_last_error_message(void) { return last_error; }

void ct_clear_error(void) { last_error[0] = '\0'; }

int ct_fail(int code, const char* fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    return code;
}
