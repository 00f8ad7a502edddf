/* Shared declarations of the symbol-resolution target (see symbols_main.c). */
#ifndef SYMBOLS_H
#define SYMBOLS_H
#include <stddef.h>

/* Two levels of forced inlining, so every caller holds an inline chain
 * caller <- level1 <- level2 with known call sites. */
static inline __attribute__((always_inline)) unsigned mix_level2(unsigned x) {
    x ^= x >> 13;
    x *= 0x5bd1e995u;
    return x ^ (x >> 15);
}
static inline __attribute__((always_inline)) unsigned mix_level1(unsigned x, unsigned y) {
    unsigned a = mix_level2(x + y);
    return a + mix_level2(a ^ y);
}

unsigned util_hash(const char *s);
unsigned util_table(unsigned n);
void *util_make(size_t n);
extern int util_counter;
#endif
