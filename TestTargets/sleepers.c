/* Threads asleep in the calls a ptrace stop affects differently, to show each effect exactly.
 * argv[2]: "plain" (no seccomp filter), "allow" (a filter that allows every call) or "deny" (a
 * filter that kills the process on restart_syscall, as a sandbox listing only the calls it makes).
 * Threads: one in nanosleep (resumes through restart_syscall), one in epoll_wait with no timeout
 * (returns EINTR after a stop: it counts each one), one in read on a pipe (restarted).
 * Manifest: pid, "nanosleep TID", "epoll TID", "read TID", end. On stdin close it writes
 * "eintr N" (epoll_wait's EINTR count) and "slept NS" (how long nanosleep(3 s) took) to stdout. */
#include "manifest.h"
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

static pid_t tids[3];
static volatile int eintr, started;
static long long slept_ns;
static int pipefd[2];
static pthread_barrier_t ready;

static long long now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000ll + t.tv_nsec; }

static void *sleeper(void *a) {
    (void)a;
    tids[0] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&ready);
    long long t0 = now_ns();
    struct timespec d = { 3, 0 };
    while (nanosleep(&d, &d) != 0) {}
    slept_ns = now_ns() - t0;
    for (;;) pause();
    return 0;
}

static void *poller(void *a) {
    (void)a;
    tids[1] = (pid_t)syscall(SYS_gettid);
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN };
    epoll_ctl(ep, EPOLL_CTL_ADD, pipefd[0], &ev);
    pthread_barrier_wait(&ready);
    for (;;) {
        struct epoll_event out;
        if (epoll_wait(ep, &out, 1, -1) < 0) eintr++;
        else return 0;
    }
}

static void *reader(void *a) {
    (void)a;
    tids[2] = (pid_t)syscall(SYS_gettid);
    pthread_barrier_wait(&ready);
    char c;
    while (read(pipefd[0], &c, 1) < 0) {}
    return 0;
}

static void install(int deny) {
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_restart_syscall, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, deny ? SECCOMP_RET_KILL_PROCESS : SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fp = { sizeof prog / sizeof prog[0], prog };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp) != 0) _exit(9);
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    const char *mode = argc > 2 ? argv[2] : "plain";
    void *keep = malloc(100);
    (void)keep;
    if (pipe(pipefd) != 0) return 3;
    if (strcmp(mode, "plain")) install(!strcmp(mode, "deny"));
    pthread_barrier_init(&ready, 0, 4);
    pthread_t t[3];
    pthread_create(&t[0], 0, sleeper, 0);
    pthread_create(&t[1], 0, poller, 0);
    pthread_create(&t[2], 0, reader, 0);
    pthread_barrier_wait(&ready);
    usleep(50000);   /* into their calls */
    hs_printf("pid %d\nnanosleep %d\nepoll %d\nread %d\n", (int)getpid(), (int)tids[0], (int)tids[1], (int)tids[2]);
    hs_end_and_wait();
    /* Wake the epoll and read threads, wait for the sleeper's 3 s to end, report. */
    if (write(pipefd[1], "xy", 2) != 2) return 4;
    pthread_join(t[1], 0);
    pthread_join(t[2], 0);
    while (!slept_ns) usleep(10000);
    printf("eintr %d\nslept %lld\n", eintr, slept_ns);
    return 0;
}
