/* 8 threads, each with its own arena (8 > cores is fine: arena_test allows 8 x cores), each leaving
 * live chunks, tcache chunks and a few unsorted/fastbin chunks, then parking so that every tcache is
 * live when heapscope looks. Main thread keeps some chunks too. */
#include "manifest.h"

#define NT 8
static pthread_barrier_t ready, done, allocated;

static void *worker(void *arg) {
    long id = (long)arg;
    void *keep[64], *drop[16], *fill[7], *fast[2];
    for (int i = 0; i < 64; i++) keep[i] = t_malloc(16 + 24 * (size_t)(i + id));
    for (int i = 0; i < 16; i++) { drop[i] = t_malloc(0x58); t_malloc(24); }
    for (int i = 0; i < 7; i++) { fill[i] = t_malloc(0x28); t_malloc(24); }
    for (int i = 0; i < 2; i++) { fast[i] = t_malloc(0x28); t_malloc(24); }
    void *big = t_malloc(0x500 + 16 * (size_t)id); t_malloc(24);
    /* From glibc 2.43 a thread's tcache struct may be made only when it first frees: every thread
     * makes its own before any frees, so none is carved out of a chunk another thread freed. */
    t_free(t_malloc(16));
    pthread_barrier_wait(&allocated);
    /* 7 of the 0x60 frees fill tcache; the other 9 go to the arena's fastbin */
    for (int i = 0; i < 16; i++) hs_free_expect(drop[i], i < 7 ? "tcache" : hs_fast_kind());
    for (int i = 0; i < 7; i++) hs_free_expect(fill[i], "tcache");
    for (int i = 0; i < 2; i++) hs_free_expect(fast[i], hs_fast_kind());
    hs_free_expect(big, "unsorted");
    (void)keep;
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&done);
    return 0;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    pthread_t t[NT];
    pthread_barrier_init(&ready, 0, NT + 1);
    pthread_barrier_init(&done, 0, NT + 1);
    pthread_barrier_init(&allocated, 0, NT);
    void *mine[10];
    for (int i = 0; i < 10; i++) mine[i] = t_malloc(100 * (size_t)(i + 1));
    t_free(t_malloc(16));   /* main's tcache struct too, before any thread frees (see worker) */
    for (long i = 0; i < NT; i++) pthread_create(&t[i], 0, worker, (void *)i);
    pthread_barrier_wait(&ready);
    for (int i = 0; i < 3; i++) hs_free_expect(mine[i], "tcache");
    hs_write_manifest_and_wait(NT + 1);
    pthread_barrier_wait(&done);
    for (int i = 0; i < NT; i++) pthread_join(t[i], 0);
    return 0;
}
