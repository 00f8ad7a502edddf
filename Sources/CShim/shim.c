#define _GNU_SOURCE
#include "cshim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

_Static_assert(sizeof(struct user_regs_struct) == 27 * 8, "x86_64 user_regs_struct layout");

static int ret(long r) { return r < 0 ? -errno : (int)r; }

int hs_ptrace_seize(pid_t tid, int trace_clone) {
    long opts = trace_clone ? PTRACE_O_TRACECLONE : 0;
    return ret(ptrace(PTRACE_SEIZE, tid, 0, (void *)opts));
}
int hs_ptrace_interrupt(pid_t tid) { return ret(ptrace(PTRACE_INTERRUPT, tid, 0, 0)); }
int hs_ptrace_detach(pid_t tid, int signal) {
    return ret(ptrace(PTRACE_DETACH, tid, 0, (void *)(long)signal));
}
int hs_ptrace_geteventmsg(pid_t tid, unsigned long *msg) {
    return ret(ptrace(PTRACE_GETEVENTMSG, tid, 0, msg));
}
int hs_ptrace_getregs(pid_t tid, struct user_regs_struct *regs) {
    return ret(ptrace(PTRACE_GETREGS, tid, 0, regs));
}

pid_t hs_waitpid(pid_t tid, int *status, int nohang) {
    for (;;) {
        pid_t r = waitpid(tid, status, __WALL | (nohang ? WNOHANG : 0));
        if (r >= 0) return r;
        if (errno != EINTR) return -errno;
    }
}
int hs_wifexited(int s) { return WIFEXITED(s); }
int hs_wexitstatus(int s) { return WEXITSTATUS(s); }
int hs_wifsignaled(int s) { return WIFSIGNALED(s); }
int hs_wtermsig(int s) { return WTERMSIG(s); }
int hs_wifstopped(int s) { return WIFSTOPPED(s); }
int hs_wstopsig(int s) { return WSTOPSIG(s); }
int hs_wptrace_event(int s) { return (s >> 16) & 0xffff; }

ssize_t hs_read_remote(pid_t pid, void *dst, uint64_t remote_addr, size_t len) {
    struct iovec l = { dst, len }, r = { (void *)(uintptr_t)remote_addr, len };
    for (;;) {
        ssize_t n = process_vm_readv(pid, &l, 1, &r, 1, 0);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
}
ssize_t hs_readv_remote(pid_t pid, const struct iovec *local, unsigned long nlocal,
                        const struct iovec *remote, unsigned long nremote) {
    for (;;) {
        ssize_t n = process_vm_readv(pid, local, nlocal, remote, nremote, 0);
        if (n >= 0) return n;
        if (errno != EINTR) return -errno;
    }
}

static void termination_set(sigset_t *s) {
    sigemptyset(s);
    sigaddset(s, SIGINT); sigaddset(s, SIGTERM); sigaddset(s, SIGHUP); sigaddset(s, SIGQUIT);
}
void hs_block_termination_signals(int block) {
    sigset_t s; termination_set(&s);
    pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &s, 0);
}
int hs_pending_termination_signal(void) {
    sigset_t p;
    if (sigpending(&p) != 0) return 0;
    int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
    for (unsigned i = 0; i < 4; i++) if (sigismember(&p, sigs[i])) return sigs[i];
    return 0;
}

static volatile sig_atomic_t stop_signal;
static void on_stop(int sig) { stop_signal = sig; }
void hs_catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, 0); sigaction(SIGTERM, &sa, 0); sigaction(SIGHUP, &sa, 0);
}
int hs_stop_signal(void) { return stop_signal; }

uint64_t hs_monotonic_ns(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Temporary output files to remove if heapscope is ended by a signal while writing them. The
 * handler only calls unlink(2), signal(2) and raise(2), which are async-signal-safe. */
#define HS_CLEANUP_SLOTS 8
static char cleanup_paths[HS_CLEANUP_SLOTS][4096];
static volatile sig_atomic_t cleanup_used[HS_CLEANUP_SLOTS];

static void on_fatal_signal(int sig) {
    for (int i = 0; i < HS_CLEANUP_SLOTS; i++)
        if (cleanup_used[i]) unlink(cleanup_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

int hs_cleanup_add(const char *path) {
    if (strlen(path) >= sizeof cleanup_paths[0]) return -1;
    static int installed;
    if (!installed) {
        installed = 1;
        int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
        for (unsigned i = 0; i < 4; i++) {
            struct sigaction old;
            /* A handler installed already (watch's stop flag) stays: it ends the program itself,
             * and the writer removes its file on the way out. */
            if (sigaction(sigs[i], 0, &old) == 0 && old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN) continue;
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_fatal_signal;
            sigemptyset(&sa.sa_mask);
            sigaction(sigs[i], &sa, 0);
        }
    }
    for (int i = 0; i < HS_CLEANUP_SLOTS; i++) {
        if (!cleanup_used[i]) {
            strcpy(cleanup_paths[i], path);
            cleanup_used[i] = 1;
            return i;
        }
    }
    return -1;
}

void hs_cleanup_remove(int slot) {
    if (slot >= 0 && slot < HS_CLEANUP_SLOTS) cleanup_used[slot] = 0;
}

/* PTRACE_SECCOMP_GET_FILTER (Linux 4.4+, CAP_SYS_ADMIN): the index-th seccomp filter of a stopped
 * tracee (0 = the newest) into `buf` (8 bytes per instruction, struct sock_filter), at most
 * `count` instructions. Returns the filter's length in instructions, or -errno (-ENOENT: no such
 * filter). With count 0 only the length is returned. */
long hs_ptrace_seccomp_filter(pid_t tid, unsigned long index, void *buf, unsigned long count) {
    long n = ptrace(0x420c /* PTRACE_SECCOMP_GET_FILTER */, tid, (void *)index, (void *)0);
    if (n < 0) return -errno;
    if (count == 0 || buf == 0) return n;
    if ((unsigned long)n > count) return -ENOSPC;
    long m = ptrace(0x420c, tid, (void *)index, buf);
    return m < 0 ? -errno : m;
}

/* Look at tid's next wait event without consuming it: waitid(P_PID, tid, WEXITED | WSTOPPED |
 * __WALL | WNOHANG | WNOWAIT). A ptrace stop left unconsumed keeps the signal it intercepted in
 * the tracee (wait consumes it: exit_code = 0), so if heapscope dies before PTRACE_DETACH, even by
 * SIGKILL, the kernel's detach delivers that signal instead of dropping it. Returns tid, 0 (no
 * event yet) or -errno; *status is encoded as wait(2) would. */
pid_t hs_peek_wait(pid_t tid, int *status) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    for (;;) {
        if (waitid(P_PID, (id_t)tid, &si, WEXITED | WSTOPPED | __WALL | WNOHANG | WNOWAIT) == 0) break;
        if (errno != EINTR) return -errno;
    }
    if (si.si_pid == 0) return 0;
    switch (si.si_code) {
    case CLD_EXITED: *status = (si.si_status & 0xff) << 8; break;
    case CLD_KILLED: case CLD_DUMPED: *status = si.si_status & 0x7f; break;
    /* si_status is the whole exit code: the signal, and a PTRACE_EVENT_* in bits 8-15 */
    case CLD_TRAPPED: case CLD_STOPPED: *status = (si.si_status << 8) | 0x7f; break;
    default: *status = 0; break;
    }
    return si.si_pid;
}

/* Output that could not be written (a full disk, /dev/full, a closed pipe with SIGPIPE ignored)
 * must not end in exit 0: at exit, if a write to stdout failed, say so and exit 1. */
static volatile int output_errno;
void hs_output_failed(int err) { if (!output_errno) output_errno = err ? err : EIO; }
static void check_output_at_exit(void) {
    if (fflush(stdout) != 0 || ferror(stdout)) hs_output_failed(errno);
    if (output_errno) {
        char msg[256];
        int n = snprintf(msg, sizeof msg, "heapscope: cannot write the output: %s\n", strerror(output_errno));
        if (n > 0) { ssize_t w = write(2, msg, (size_t)n); (void)w; }
        _exit(1);
    }
}
void hs_check_output_at_exit(void) { atexit(check_output_at_exit); }

/* SIGINT, SIGTERM and SIGQUIT ignored on entry (a supervisor's or a script's inheritance) still
 * end heapscope the documented way: back to their default action. SIGHUP stays as it came (nohup). */
void hs_honor_termination_signals(void) {
    int sigs[] = { SIGINT, SIGTERM, SIGQUIT };
    for (unsigned i = 0; i < 3; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], 0, &old) == 0 && old.sa_handler == SIG_IGN) signal(sigs[i], SIG_DFL);
    }
}
