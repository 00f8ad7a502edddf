/* A busy target for the safety test: a thread that creates and joins short-lived threads without
 * pause, and 4 threads that malloc, fill, checksum-verify and free in a loop
 * (a stray write by a tool, or a lost resume, shows up as a checksum error or a stalled counter),
 * and a SIGUSR1 handler counts signals into a shared file the test reads (argv[2]), so the test can
 * send one signal at a time and prove none is lost, even while heapscope has the process stopped.
 * Manifest (argv[1]): "pid N" then "end". On stdin EOF: prints "errors=E ops=O signals=S", exits 0. */
#include "manifest.h"
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>

#define NT 4
static volatile uint64_t *shared;   /* [0] = signals received, [1] = ops done */
static atomic_int stop;
static atomic_ulong errors, ops;

static void on_usr1(int s) { (void)s; __atomic_add_fetch(&shared[0], 1, __ATOMIC_SEQ_CST); }

static void *work(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    void *held[64] = {0};
    size_t held_n[64] = {0};
    while (!atomic_load(&stop)) {
        int k = (int)(rand_r(&seed) % 64);
        if (held[k]) {
            unsigned char *p = held[k];
            for (size_t i = 0; i < held_n[k]; i++) if (p[i] != (unsigned char)(i * 31 + k)) { atomic_fetch_add(&errors, 1); break; }
            free(held[k]); held[k] = 0;
        } else {
            size_t n = 16 + rand_r(&seed) % (rand_r(&seed) % 16 == 0 ? 200000 : 2000);
            unsigned char *p = malloc(n);
            for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 31 + k);
            held[k] = p; held_n[k] = n;
        }
        atomic_fetch_add(&ops, 1);
        __atomic_store_n(&shared[1], atomic_load(&ops), __ATOMIC_RELAXED);
    }
    for (int k = 0; k < 64; k++) free(held[k]);
    return 0;
}

/* Thread churn: short-lived threads are created and joined all the time, so heapscope keeps
 * meeting threads that appear (and exit) while it attaches. */
static void *brief(void *a) { free(malloc(64 + (size_t)(uintptr_t)a)); return 0; }
static void *churn(void *a) {
    (void)a;
    for (uintptr_t i = 0; !atomic_load(&stop); i++) {
        pthread_t t;
        if (pthread_create(&t, 0, brief, (void *)(i % 512)) == 0) pthread_join(t, 0);
    }
    return 0;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    if (argc < 3) return 2;
    int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0) return 3;
    shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shared == MAP_FAILED) return 4;
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, 0);
    pthread_t t[NT];
    for (long i = 0; i < NT; i++) pthread_create(&t[i], 0, work, (void *)i);
    pthread_t churner;
    pthread_create(&churner, 0, churn, 0);
    hs_printf("pid %d\n", (int)getpid());
    hs_end_and_wait();
    atomic_store(&stop, 1);
    for (int i = 0; i < NT; i++) pthread_join(t[i], 0);
    pthread_join(churner, 0);
    printf("errors=%lu ops=%lu signals=%lu\n", atomic_load(&errors), atomic_load(&ops), (unsigned long)shared[0]);
    return 0;
}
