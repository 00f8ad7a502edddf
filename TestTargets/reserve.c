/* What a leak check must and must not copy. argv[2...] are options:
 *   reserve GIB   an untouched MAP_NORESERVE reservation of GIB GiB, of which one page in the
 *                 middle is written: it holds the only pointer to chunk "via-reservation"
 *   shared MIB    a MAP_SHARED anonymous mapping of MIB MiB, written through, that holds the only
 *                 pointer to chunk "via-shared"
 *   maps N        N separate one-page read-write mappings (every other page read-only between them,
 *                 so the kernel cannot merge them), each written
 *   threads N     N more threads, each blocked in pause()
 * Manifest: pid, "chunk NAME USER_ADDR" for each chunk above, "reservation START END",
 * "shared START END", "threads N" (all threads, main included), end. Waits for stdin to close. */
#include "manifest.h"
#include <signal.h>
#include <sys/mman.h>

static void *anchor;   /* one chunk, so that malloc is initialised whatever the options */
static void *sleeper(void *a) { (void)a; for (;;) pause(); return 0; }

/* Overwrite the stack below main's frame, where printing left copies of the pointers. */
static __attribute__((noinline)) void scrub(void) {
    volatile char junk[32 << 10];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = 0;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    hs_printf("pid %d\n", (int)getpid());
    anchor = malloc(64);
    int threads = 1;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *opt = argv[i];
        unsigned long n = strtoul(argv[i + 1], 0, 10);
        if (!strcmp(opt, "reserve")) {
            size_t len = n << 30;
            char *r = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (r == MAP_FAILED) _exit(4);
            void **slot = (void **)(r + len / 2);
            *slot = malloc(200);
            ((void **)slot)[1] = 0;
            hs_printf("reservation %lx %lx\nchunk via-reservation %lx\n", (unsigned long)r, (unsigned long)(r + len), (unsigned long)*slot);
            *slot = (void *)((uintptr_t)*slot);   /* the only copy of the pointer */
        } else if (!strcmp(opt, "shared")) {
            size_t len = n << 20;
            char *s = mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            if (s == MAP_FAILED) _exit(5);
            memset(s, 0x11, len);
            void **slot = (void **)(s + 4096);
            *slot = malloc(300);
            hs_printf("shared %lx %lx\nchunk via-shared %lx\n", (unsigned long)s, (unsigned long)(s + len), (unsigned long)*slot);
        } else if (!strcmp(opt, "maps")) {
            char *base = mmap(0, 2 * n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (base == MAP_FAILED) _exit(6);
            for (unsigned long k = 0; k < n; k++) {
                base[2 * k * 4096] = 1;
                if (mprotect(base + (2 * k + 1) * 4096, 4096, PROT_READ) != 0) _exit(7);
            }
        } else if (!strcmp(opt, "threads")) {
            pthread_attr_t at;
            pthread_attr_init(&at);
            pthread_attr_setstacksize(&at, 64 << 10);
            for (unsigned long k = 0; k < n; k++) {
                pthread_t t;
                if (pthread_create(&t, &at, sleeper, 0) != 0) _exit(8);
            }
            threads += (int)n;
        }
    }
    hs_printf("threads %d\n", threads);
    hs_flush();
    scrub();
    hs_end_and_wait();
    return 0;
}
