/* Benchmark target: N threads (argv[2], 0 = main thread only) each allocating M chunks (argv[3]) of
 * 48-byte requests (64-byte chunks, argv[4] overrides the request size). Writes "pid N" and "end" to
 * argv[1] when done, waits for stdin to close. */
#include "manifest.h"

static size_t per, reqsize;
static pthread_barrier_t b;
static void fill(void) {
    void **keep = malloc(per * sizeof *keep);
    for (size_t i = 0; i < per; i++) keep[i] = malloc(reqsize);
    /* free every 16th so the bins and tcache are not empty */
    for (size_t i = 0; i < per; i += 16) free(keep[i]);
}
static void *worker(void *a) { (void)a; fill(); pthread_barrier_wait(&b); pthread_barrier_wait(&b); return 0; }

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    int nt = argc > 2 ? atoi(argv[2]) : 0;
    per = argc > 3 ? strtoull(argv[3], 0, 10) : 1000000;
    reqsize = argc > 4 ? strtoull(argv[4], 0, 10) : 48;
    pthread_t t[64];
    if (nt > 64) nt = 64;
    pthread_barrier_init(&b, 0, (unsigned)nt + 1);
    if (nt == 0) fill();
    for (long i = 0; i < nt; i++) pthread_create(&t[i], 0, worker, 0);
    if (nt) pthread_barrier_wait(&b);
    hs_printf("pid %d\n", (int)getpid());
    hs_end_and_wait();
    if (nt) { pthread_barrier_wait(&b); for (int i = 0; i < nt; i++) pthread_join(t[i], 0); }
    return 0;
}
