/* Where the resident memory goes: a custom pool (8 MiB reserved with mmap, 3 MiB of it written,
 * no huge pages) held by a global, heap chunks every byte of which is written (some freed),
 * two chunks mapped on their own written whole, and a second thread. The manifest notes
 * "pool ADDR BYTES_WRITTEN"; the program allocates nothing after it is written. */
#include "manifest.h"
#include <sys/mman.h>

char *pool;
enum { RESERVED = 8 << 20, WRITTEN = 3 << 20 };
static pthread_barrier_t started;

static void *idle(void *arg) {
    (void)arg;
    pthread_barrier_wait(&started);
    char c;
    while (read(0, &c, 1) < 0) {}   /* (stdin is the main thread's; this one just waits) */
    return 0;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    pool = mmap(0, RESERVED, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pool == MAP_FAILED) return 3;
    madvise(pool, RESERVED, MADV_NOHUGEPAGE);
    memset(pool, 1, WRITTEN);
    static char written[32];
    snprintf(written, sizeof written, "%d", WRITTEN);
    hs_note("pool", pool, written);
    pthread_t t;
    pthread_barrier_init(&started, 0, 2);
    pthread_create(&t, 0, idle, 0);
    pthread_barrier_wait(&started);
    void *small[300], *medium[60];
    for (int i = 0; i < 300; i++) { small[i] = t_malloc(100); memset(small[i], 2, 100); }
    for (int i = 0; i < 60; i++) { medium[i] = t_malloc(3000); memset(medium[i], 3, 3000); }
    for (int i = 0; i < 60; i += 2) t_free(medium[i]);
    for (int i = 0; i < 2; i++) { char *m = t_malloc(300000); memset(m, 4, malloc_usable_size(m)); }
    hs_write_manifest(2);
    hs_end_and_wait();
    return 0;
}
