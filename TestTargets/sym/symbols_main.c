/* Target for address-resolution tests. Several compile units (this file, symbols_util.c,
 * symbols_cxx.cpp), static functions, two-level forced inlining at -O2, C++ namespaces,
 * templates and virtual methods, and a shared library loaded with dlopen.
 * Writes to argv[1]: "pid N", "main 0x...", "plugin_fn 0x...", "plugin_path PATH", "end",
 * then waits for stdin to close. argv[2] is the plugin's path. */
#include "symbols.h"
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

unsigned cxx_entry(unsigned n);
static volatile int main_static_data = 3;  /* d (volatile: not folded into its user) */
int main_bss_array[16];                /* B */

static unsigned __attribute__((noinline)) main_static_fn(unsigned v) {
    main_bss_array[v & 15] = (int)v;
    return mix_level1(v, (unsigned)main_static_data);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s MANIFEST PLUGIN\n", argv[0]); return 2; }
    void *h = dlopen(argv[2], RTLD_NOW);
    if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 3; }
    unsigned (*plugin_fn)(unsigned) = (unsigned (*)(unsigned))dlsym(h, "plugin_compute");
    if (!plugin_fn) return 4;
    unsigned v = util_hash(argv[0]) + util_table(4) + main_static_fn(5) + cxx_entry(3) + plugin_fn(9);
    void *p = util_make(32);
    FILE *f = fopen(argv[1], "w");
    if (!f) return 5;
    fprintf(f, "pid %d\nmain %p\nplugin_fn %p\nresult %u %p\nend\n", (int)getpid(), (void *)main,
            (void *)plugin_fn, v, p);
    fclose(f);
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}
