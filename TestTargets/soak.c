/* The soak test's target: everything at once that heapscope must not disturb.
 * - 4 threads malloc, fill, verify and free in a loop (a stray write or a lost resume shows up as
 *   a checksum error or a stalled counter);
 * - a thread creates and joins short-lived threads; another forks children that exit at once;
 * - a SIGUSR1 handler counts signals (the test sends one at a time and checks none is lost);
 * - threads sleep in nanosleep (100 ms), in a timed condition wait (100 ms), in epoll_wait and in
 *   read on a pipe, and count what a correct restart never shows: a sleep or timed wait that ends
 *   early, a read that fails. (epoll_wait's EINTRs are expected: counted, not errors.)
 * Counters live in a shared file (argv[2]) the test reads: u64 [0] signals, [1] malloc ops,
 * [2] early sleeps, [3] early timed waits, [4] read errors, [5] epoll EINTRs, [6] forks,
 * [7] threads created, [8] checksum errors, [9] sleeps done, [10] timed waits done.
 * Manifest (argv[1]): "pid N", "end". On stdin EOF: prints the counters, exits 0. */
#include "manifest.h"
#include <signal.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

static volatile uint64_t *shared;
static atomic_int stop;
static int pipefd[2];

static void bump(int i) { __atomic_add_fetch(&shared[i], 1, __ATOMIC_SEQ_CST); }
static void on_usr1(int s) { (void)s; bump(0); }
static long long now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ll + t.tv_nsec; }

static void *work(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1;
    void *held[64] = {0};
    size_t held_n[64] = {0};
    while (!atomic_load(&stop)) {
        int k = (int)(rand_r(&seed) % 64);
        if (held[k]) {
            unsigned char *p = held[k];
            for (size_t i = 0; i < held_n[k]; i++) if (p[i] != (unsigned char)(i * 31 + k)) { bump(8); break; }
            free(held[k]); held[k] = 0;
        } else {
            size_t n = 16 + rand_r(&seed) % (rand_r(&seed) % 16 == 0 ? 200000 : 2000);
            unsigned char *p = malloc(n);
            for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i * 31 + k);
            held[k] = p; held_n[k] = n;
        }
        bump(1);
    }
    for (int k = 0; k < 64; k++) free(held[k]);
    return 0;
}

static void *brief(void *a) { free(malloc(64 + (size_t)(uintptr_t)a)); return 0; }
static void *churn(void *a) {
    (void)a;
    for (uintptr_t i = 0; !atomic_load(&stop); i++) {
        pthread_t t;
        if (pthread_create(&t, 0, brief, (void *)(i % 512)) == 0) { pthread_join(t, 0); bump(7); }
    }
    return 0;
}

static void *forker(void *a) {
    (void)a;
    while (!atomic_load(&stop)) {
        pid_t c = fork();
        if (c == 0) _exit(0);
        if (c > 0) { while (waitpid(c, 0, 0) < 0) {} bump(6); }
        usleep(20000);
    }
    return 0;
}

/* The sleeping threads block SIGUSR1: a signal handler ends nanosleep and epoll_wait with EINTR
 * by design, and what is measured here is what a ptrace stop does. */
static void quiet(void) {
    sigset_t s; sigemptyset(&s); sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, 0);
}

static void *sleeper(void *a) {
    (void)a;
    quiet();
    while (!atomic_load(&stop)) {
        long long t0 = now_ns();
        struct timespec d = { 0, 100000000 };
        if (nanosleep(&d, 0) != 0 || now_ns() - t0 < 100000000) bump(2);
        bump(9);
    }
    return 0;
}

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static void *waiter(void *a) {
    (void)a;
    quiet();
    pthread_mutex_lock(&m);
    while (!atomic_load(&stop)) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += 100000000;
        if (dl.tv_nsec >= 1000000000) { dl.tv_sec++; dl.tv_nsec -= 1000000000; }
        int r = pthread_cond_timedwait(&never, &m, &dl);
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        if (r != 110 /* ETIMEDOUT */ || t.tv_sec < dl.tv_sec || (t.tv_sec == dl.tv_sec && t.tv_nsec < dl.tv_nsec)) bump(3);
        bump(10);
    }
    pthread_mutex_unlock(&m);
    return 0;
}

static void *poller(void *a) {
    (void)a;
    quiet();
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN };
    epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &ev);
    for (;;) {
        struct epoll_event out;
        if (epoll_wait(ep, &out, 1, -1) < 0) bump(5); else return 0;
    }
}

static void *reader(void *a) {
    (void)a;
    quiet();
    char c;
    ssize_t n;
    while ((n = read(pipefd[0], &c, 1)) < 0) bump(4);
    return 0;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    if (argc < 3 || pipe(pipefd) != 0) return 2;
    int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0) return 3;
    shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (shared == MAP_FAILED) return 4;
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, 0);
    void *(*fns[])(void *) = { work, work, work, work, churn, forker, sleeper, waiter, poller, reader };
    enum { N = sizeof fns / sizeof fns[0] };
    pthread_t t[N];
    for (long i = 0; i < N; i++) pthread_create(&t[i], 0, fns[i], (void *)i);
    hs_printf("pid %d\n", (int)getpid());
    hs_end_and_wait();
    atomic_store(&stop, 1);
    if (write(pipefd[1], "xy", 2) != 2) return 5;
    for (int i = 0; i < N; i++) pthread_join(t[i], 0);
    static const char *names[] = { "signals", "ops", "early_sleeps", "early_waits", "read_errors", "epoll_eintr",
                                   "forks", "threads", "checksum_errors", "sleeps", "waits" };
    for (int i = 0; i < 11; i++) printf("%s=%lu\n", names[i], (unsigned long)shared[i]);
    return 0;
}
