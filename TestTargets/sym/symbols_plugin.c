/* Shared library the symbols target loads with dlopen. */
#include "symbols.h"

static unsigned __attribute__((noinline)) plugin_static(unsigned v) { return mix_level1(v, 17); }

unsigned plugin_compute(unsigned v) {
    unsigned acc = 0;
    for (unsigned i = 0; i < v; i++) acc += plugin_static(i);
    return acc;
}
