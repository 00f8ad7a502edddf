/* A heap caught "mid-update": a thread calls malloc_stats(), which holds main_arena's mutex while
 * it writes to stderr, and stderr is a full pipe, so the thread blocks with the lock held. The heap
 * itself is consistent (malloc_stats only reads), so heapscope must retry, give up after its
 * bounded attempts, say so, and still report the exact heap. Released: drain the pipe, join, exit. */
#include "manifest.h"
#include <errno.h>
#include <sys/stat.h>

static int pipefd[2];
static void *stats(void *a) { (void)a; malloc_stats(); return 0; }

static pid_t stats_tid;
static pthread_barrier_t go;
static void *stats_wrapper(void *a) { stats_tid = gettid(); pthread_barrier_wait(&go); return stats(a); }

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    void *keep[20];
    for (int i = 0; i < 20; i++) keep[i] = t_malloc(32 + 16 * (size_t)i);
    for (int i = 0; i < 5; i++) hs_free_expect(keep[i], "tcache");
    /* stderr -> a pipe nobody reads, filled to the brim */
    if (pipe(pipefd) != 0) return 2;
    dup2(pipefd[1], 2);
    fcntl(2, F_SETFL, O_NONBLOCK);
    char junk[4096]; memset(junk, 'x', sizeof junk);
    while (write(2, junk, sizeof junk) > 0) {}
    while (write(2, junk, 1) > 0) {}
    fcntl(2, F_SETFL, 0);
    pthread_t t;
    pthread_barrier_init(&go, 0, 2);
    pthread_create(&t, 0, stats_wrapper, 0);   /* allocates its DTV now, before the manifest */
    hs_write_manifest(2);          /* the truth, while nothing holds a lock */
    pthread_barrier_wait(&go);
    /* wait until the thread is blocked in write(2) holding the lock */
    for (int i = 0; i < 2000 && (stats_tid == 0 || hs_thread_state(stats_tid) != 'S'); i++) usleep(1000);
    usleep(20000);
    hs_end_and_wait();
    /* release: drain the pipe until the thread finishes */
    fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
    for (;;) {
        while (read(pipefd[0], junk, sizeof junk) > 0) {}
        if (hs_thread_state(stats_tid) == '?' ) break;
        usleep(1000);
        if (pthread_tryjoin_np(t, 0) == 0) return 0;
    }
    pthread_join(t, 0);
    return 0;
}
