/*
 * heap_bytes.h — the bytes the process has allocated and not freed, for
 * tests that check memory comes back: the sanitizer allocator's count
 * under ASan or TSan (glibc's malloc is not used there), else glibc's
 * mallinfo2 (in-use arena bytes plus mmapped chunks).
 */
#ifndef EB_HEAP_BYTES_H
#define EB_HEAP_BYTES_H

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
/* The sanitizer runtime's (sanitizer/allocator_interface.h, a header
 * Debian's gcc does not install). */
size_t __sanitizer_get_current_allocated_bytes(void);

static inline size_t heap_bytes(void) { return __sanitizer_get_current_allocated_bytes(); }
#else
#include <malloc.h>

static inline size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#endif

#endif
