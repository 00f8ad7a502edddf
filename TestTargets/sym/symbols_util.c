/* Second compile unit: global and static functions and data, inlined helpers. */
#include "symbols.h"
#include <stdlib.h>
#include <string.h>

int util_counter = 7;                 /* D */
static unsigned util_cache[64];       /* b */
const char util_banner[] = "symbols"; /* R */

static unsigned __attribute__((noinline)) util_static_step(unsigned v) {  /* t */
    util_cache[v & 63] += v;
    return mix_level1(v, util_cache[(v >> 3) & 63]);
}

unsigned util_hash(const char *s) {
    unsigned h = 0;
    for (; *s; s++) h = mix_level1(h, (unsigned char)*s);
    return util_static_step(h);
}

unsigned util_table(unsigned n) {
    unsigned acc = 0;
    for (unsigned i = 0; i < n; i++) acc += util_static_step(i * 2654435761u);
    return acc;
}

void *util_make(size_t n) {
    char *p = malloc(n);
    if (p) memset(p, util_counter, n);
    util_counter++;
    return p;
}
