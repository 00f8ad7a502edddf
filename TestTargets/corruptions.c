/* One kind of heap corruption per run, named by argv[2], done after the manifest is written (the
 * truth before the damage) and after MARKERS chunks of 0x100 bytes were allocated below the
 * damage: heapscope must exit 2 naming it, walk the rest of the heap, never loop or trap, and
 * leave the program running. The program makes no malloc call after corrupting (it would abort
 * or loop itself).
 *   fastbin_size_max     a fastbin chunk's size becomes 0xfffffffffffffff1 (a one-word overflow)
 *   unsorted_size_max    the same for a chunk in the unsorted bin
 *   top_size_max         the main arena's top size becomes ~0 ("House of Force")
 *   thread_top_size_max  the same in a thread's arena
 *   system_mem_huge      main_arena.system_mem becomes 0xffffffffffff0000
 *   sbrk_base_small      mp_.sbrk_base becomes 0x10
 *   sbrk_base_high       mp_.sbrk_base becomes ~0xf
 *   mp_all_ff            every byte of mp_ becomes 0xff
 *   non_main_arena_flag  a main-arena chunk in use gets NON_MAIN_ARENA (0x4) in its size
 *   large_nextsize       a large-bin chunk's fd_nextsize becomes garbage */
#include "manifest.h"

enum { MARKERS = 64 };
static const char *what;
static pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int thread_ready;
static void *thread_top;

/* The top chunk of the arena `q` (a chunk just carved from top) came from. */
static size_t *top_after(void *q) { return (size_t *)((char *)q - 16 + (((size_t *)q)[-1] & ~(size_t)7)); }

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 8; i++) t_malloc(0x40);
    void *q = t_malloc(0x18);
    pthread_mutex_lock(&gate);
    thread_top = top_after(q);
    thread_ready = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&gate);
    for (;;) pause();
    return NULL;
}

/* main_arena, from the unsorted bin head a lone free chunk's fd points at. */
static char *main_arena_of(void *unsorted_chunk) {
    uintptr_t fd = *(uintptr_t *)unsorted_chunk;
    return (char *)(fd - (hs_glibc_at_least(43) ? 0x18 : 0x70) + 16);
}

/* &mp_.sbrk_base: the word in libc's writable data that holds the start of [heap]. */
static uintptr_t *sbrk_base_slot(void) {
    static char maps[1 << 16];
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    size_t n = 0; ssize_t r;
    while (n < sizeof maps - 1 && (r = read(fd, maps + n, sizeof maps - 1 - n)) > 0) n += (size_t)r;
    close(fd);
    maps[n] = 0;
    uintptr_t heap = 0;
    for (char *l = maps; *l; ) {
        char *e = strchr(l, '\n'); if (!e) break; *e = 0;
        if (strstr(l, "[heap]")) heap = strtoul(l, NULL, 16);
        l = e + 1;
    }
    for (char *l = maps; l < maps + n; l += strlen(l) + 1) {
        if (!strstr(l, "libc.so") || !strstr(l, "rw-p")) continue;
        uintptr_t lo = strtoul(l, &l, 16), hi = strtoul(l + 1, NULL, 16);
        for (uintptr_t *w = (uintptr_t *)lo; w < (uintptr_t *)hi; w++) if (*w == heap) return w;
    }
    _exit(6);
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    if (argc < 3) _exit(2);
    what = argv[2];
    for (int i = 0; i < MARKERS; i++) hs_note("marker", t_malloc(0x100), "in_use");
    void *fast[8], *big, *top_chunk;
    for (int i = 0; i < 8; i++) fast[i] = t_malloc(0x48);
    big = t_malloc(0x500);
    t_malloc(0x18);                                   /* keeps big from merging */
    /* Two chunks of different sizes for one large bin (0x500 and 0x510: bin 68). */
    void *l1 = t_malloc(0x4f8); t_malloc(0x18);
    void *l2 = t_malloc(0x508); t_malloc(0x18);
    void *victim = t_malloc(0x38);
    int threads = 1;
    if (!strcmp(what, "thread_top_size_max")) {
        pthread_t t;
        pthread_create(&t, NULL, worker, NULL);
        pthread_mutex_lock(&gate);
        while (!thread_ready) pthread_cond_wait(&cond, &gate);
        pthread_mutex_unlock(&gate);
        threads = 2;
    }
    hs_free_expect(l1, "large");
    hs_free_expect(l2, "large");
    /* A larger request sorts l1 and l2 into their large bin and is carved from top: the last
     * chunk before it. (Before any fastbin chunk exists: a large request consolidates them.) */
    top_chunk = t_malloc(0x1000);
    for (int i = 0; i < 7; i++) hs_free_expect(fast[i], "tcache");
    hs_free_expect(fast[7], hs_fast_kind());          /* the 0x50 tcache bin is full */
    hs_free_expect(big, "unsorted");
    uintptr_t *sbrk = sbrk_base_slot();
    hs_write_manifest(threads);
    if (!strcmp(what, "fastbin_size_max")) ((size_t *)fast[7])[-1] = 0xfffffffffffffff1ull;
    else if (!strcmp(what, "unsorted_size_max")) ((size_t *)big)[-1] = 0xfffffffffffffff1ull;
    else if (!strcmp(what, "top_size_max")) top_after(top_chunk)[1] = ~(size_t)0;
    else if (!strcmp(what, "thread_top_size_max")) ((size_t *)thread_top)[1] = ~(size_t)0;
    else if (!strcmp(what, "system_mem_huge")) *(size_t *)(main_arena_of(big) + (hs_glibc_at_least(43) ? 0x830 : 0x888)) = 0xffffffffffff0000ull;
    else if (!strcmp(what, "sbrk_base_small")) *sbrk = 0x10;
    else if (!strcmp(what, "sbrk_base_high")) *sbrk = ~(uintptr_t)0xf;
    else if (!strcmp(what, "mp_all_ff")) memset((char *)sbrk - (hs_glibc_at_least(43) ? 0x68 : hs_glibc_at_least(35) ? 0x60 : 0x48), 0xff,
                                               hs_glibc_at_least(43) ? 0x88 : hs_glibc_at_least(35) ? 0x88 : 0x70);
    else if (!strcmp(what, "non_main_arena_flag")) ((size_t *)victim)[-1] |= 4;
    else if (!strcmp(what, "large_nextsize")) ((uintptr_t *)l1)[2] = 0x4141414141414140ull;
    else _exit(3);
    hs_end_and_wait();
    return 0;
}
