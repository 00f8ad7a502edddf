/* Processes that are hard to stop or hold, for the stop-budget and thread-holding tests.
 * argv[2] is the mode:
 *   vfork        a thread calls vfork(); the child waits for stdin to close, so the parent thread
 *                sleeps uninterruptibly (state D) until then. Manifest: "vforker TID".
 *   leader-exit  main calls pthread_exit() after starting a thread that allocates, writes the
 *                manifest and waits: a zombie leader with a live thread.
 *   threads      three threads that sleep in pause(). Manifest: "thread TID" for each.
 * Every mode writes "pid N", the lines above, and "end" to argv[1], then waits for stdin to close. */
#include "manifest.h"
#include <signal.h>
#include <sys/syscall.h>

static void *keep[64];
static pid_t tids[3];
static pthread_barrier_t ready;

static void allocate(void) { for (int i = 0; i < 64; i++) keep[i] = t_malloc(32 + 16 * (size_t)i); }

static void *vforker(void *a) {
    (void)a;
    tids[0] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&ready);
    pid_t c = vfork();
    if (c == 0) {
        char ch;
        while (read(0, &ch, 1) > 0) {}
        _exit(0);
    }
    return 0;
}

static void *survivor(void *a) {
    (void)a;
    allocate();
    while (hs_thread_state(getpid()) != 'Z') usleep(1000);   /* main has finished pthread_exit */
    hs_printf("pid %d\n", (int)getpid());
    hs_end_and_wait();
    exit(0);
}

static void *sleeper(void *a) {
    tids[(long)a] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&ready);
    for (;;) pause();
    return 0;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "";
    pthread_t t;
    if (!strcmp(mode, "vfork")) {
        allocate();
        pthread_barrier_init(&ready, 0, 2);
        pthread_create(&t, 0, vforker, 0);
        pthread_barrier_wait(&ready);
        while (hs_thread_state(tids[0]) != 'D') usleep(1000);
        hs_printf("pid %d\nvforker %d\n", (int)getpid(), (int)tids[0]);
        hs_end_and_wait();
        return 0;
    }
    if (!strcmp(mode, "leader-exit")) {
        pthread_create(&t, 0, survivor, 0);
        pthread_exit(0);
    }
    if (!strcmp(mode, "threads")) {
        allocate();
        pthread_barrier_init(&ready, 0, 4);
        for (long i = 0; i < 3; i++) pthread_create(&t, 0, sleeper, (void *)i);
        pthread_barrier_wait(&ready);
        hs_printf("pid %d\n", (int)getpid());
        for (int i = 0; i < 3; i++) hs_printf("thread %d\n", (int)tids[i]);
        hs_end_and_wait();
        return 0;
    }
    return 2;
}
