/* A heap corrupted at random: builds a heap (chunks of many sizes, a third freed into every kind
 * of bin, two thread arenas), then overwrites argv[3] random words of its chunks (headers and
 * contents alike) with random or extreme values chosen by the seed argv[2], writes its manifest
 * and waits. heapscope must never crash, hang or harm it, whatever the seed. No malloc call is
 * made after the damage. */
#include "manifest.h"

enum { N = 3000 };
static void *chunks[N];
static size_t sizes[N];
static int nchunks;
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int ready;

static uint64_t rng;
static uint64_t next(void) {
    rng += 0x9e3779b97f4a7c15ull;
    uint64_t z = rng;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void build(int count) {
    for (int i = 0; i < count && nchunks < N; i++) {
        size_t n = (next() % 4 == 0) ? 0x400 + next() % 0x2000 : 16 + next() % 0x300;
        if (next() % 200 == 0) n = 0x30000;                  /* mmapped */
        pthread_mutex_lock(&gate);
        int k = nchunks++;
        pthread_mutex_unlock(&gate);
        chunks[k] = t_malloc(n);
        sizes[k] = n;
        memset(chunks[k], (int)(k & 0xff), n < 64 ? n : 64);
    }
}

static void *worker(void *arg) {
    (void)arg;
    build(300);
    pthread_mutex_lock(&gate);
    ready++;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&gate);
    for (;;) pause();
    return NULL;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    if (argc < 4) _exit(2);
    rng = strtoull(argv[2], NULL, 10);
    int damage = atoi(argv[3]);
    build(1500);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, worker, NULL);
    pthread_mutex_lock(&gate);
    while (ready < 2) pthread_cond_wait(&cond, &gate);
    pthread_mutex_unlock(&gate);
    /* A third freed: tcache, fastbins, unsorted, small and large bins. */
    for (int k = 0; k < nchunks; k++) if (next() % 3 == 0) { t_free(chunks[k]); chunks[k] = NULL; }
    t_malloc(0x5000);                                         /* sorts the unsorted bin */
    hs_write_manifest(3);
    static const uint64_t extreme[] = { 0, 1, 8, 0x10, 0x11, 0x21, 0x7f, 0xfffffffffffffff1ull, 0xffffffffffffffffull,
                                        0x8000000000000000ull, 0x4141414141414141ull, 0x100000000ull };
    for (int d = 0; d < damage; d++) {
        int k = (int)(next() % (uint64_t)nchunks);
        char *base = chunks[k] ? chunks[k] : NULL;
        if (!base) { for (int j = 0; j < nchunks && !base; j++) base = chunks[(k + j) % nchunks]; }
        if (!base) break;
        /* a word from the chunk's header to 64 bytes in (free chunks' links live there) */
        size_t off = (size_t)(next() % 10) * 8;
        uint64_t *w = (uint64_t *)(base - 16 + off);
        uint64_t v;
        switch (next() % 4) {
        case 0: v = extreme[next() % (sizeof extreme / sizeof extreme[0])]; break;
        case 1: v = *w ^ (1ull << (next() % 64)); break;
        case 2: v = (uintptr_t)chunks[next() % (uint64_t)nchunks]; break;  /* a pointer to another chunk (or 0) */
        default: v = next(); break;
        }
        *w = v;
    }
    hs_end_and_wait();
    return 0;
}
