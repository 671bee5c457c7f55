#ifndef CTSHIM_INTERNAL_H
#define CTSHIM_INTERNAL_H

#include "ctshim.h"

/* Records a printf-style detail for ct_last_error_message() and returns code. */
int ct_fail(int code, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void ct_clear_error(void);

size_t ct_page_size(void);

/* CUDA driver, loaded on first use. */
int ct_cuda_register(void* ptr, size_t size, int* result);
int ct_cuda_unregister(void* ptr);

#endif
