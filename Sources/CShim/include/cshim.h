// heapscope's C shim: only what Swift cannot call directly.
// - ptrace(2) is variadic, so each request heapscope uses gets a fixed-signature wrapper.
// - The wait(2) status macros (WIFSTOPPED, ...) are macros, so they are wrapped as functions.
// - The target is only ever READ: there is deliberately no wrapper for PTRACE_POKE*,
//   PTRACE_SETREGS or process_vm_writev.
#ifndef HEAPSCOPE_CSHIM_H
#define HEAPSCOPE_CSHIM_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/user.h>

/// A hint that `p` will be read soon (never faults, whatever `p` is).
static inline void hs_prefetch(const void *p) { __builtin_prefetch(p, 0, 0); }

/// PTRACE_SEIZE with options (PTRACE_O_TRACECLONE when `trace_clone`). Returns 0 or -errno.
int hs_ptrace_seize(pid_t tid, int trace_clone);
/// PTRACE_INTERRUPT. Returns 0 or -errno.
int hs_ptrace_interrupt(pid_t tid);
/// PTRACE_DETACH, re-delivering `signal` (0 for none). Returns 0 or -errno.
int hs_ptrace_detach(pid_t tid, int signal);
/// PTRACE_GETEVENTMSG (the new thread id after a clone event). Returns 0 or -errno.
int hs_ptrace_geteventmsg(pid_t tid, unsigned long *msg);
/// PTRACE_GETREGS into `regs`. Returns 0 or -errno.
int hs_ptrace_getregs(pid_t tid, struct user_regs_struct *regs);

/// waitpid(tid, &status, __WALL | (nohang ? WNOHANG : 0)); retries EINTR. Returns pid, 0, or -errno.
pid_t hs_waitpid(pid_t tid, int *status, int nohang);
/// Look at tid's next wait event without consuming it (waitid ... WNOWAIT), so that a signal a
/// ptrace stop intercepted stays with the tracee if heapscope dies. Returns tid, 0 or -errno.
pid_t hs_peek_wait(pid_t tid, int *status);
int hs_wifexited(int status);
int hs_wexitstatus(int status);
int hs_wifsignaled(int status);
int hs_wtermsig(int status);
int hs_wifstopped(int status);
int hs_wstopsig(int status);
/// The PTRACE_EVENT_* number in a stop status (status >> 16), 0 if none.
int hs_wptrace_event(int status);

enum {
    HS_PTRACE_EVENT_CLONE = 3,
    HS_PTRACE_EVENT_EXIT = 6,
    HS_PTRACE_EVENT_STOP = 128,
};

/// process_vm_readv of one remote range into `dst`. Returns bytes read or -errno.
ssize_t hs_read_remote(pid_t pid, void *dst, uint64_t remote_addr, size_t len);
/// process_vm_readv with many iovecs at once. Returns bytes read or -errno.
ssize_t hs_readv_remote(pid_t pid, const struct iovec *local, unsigned long nlocal,
                        const struct iovec *remote, unsigned long nremote);

/// Block (block=1) or unblock (block=0) SIGINT, SIGTERM, SIGHUP and SIGQUIT in this thread,
/// so that heapscope always detaches before it dies of one of them.
void hs_block_termination_signals(int block);
/// The first of SIGINT, SIGTERM, SIGHUP, SIGQUIT that is pending, or 0.
int hs_pending_termination_signal(void);
/* For long-running commands (watch): SIGINT, SIGTERM and SIGHUP set a flag instead of ending
 * heapscope (no SA_RESTART: a sleep returns early). hs_stop_signal() is the signal, or 0. */
void hs_catch_stop_signals(void);
int hs_stop_signal(void);

/* Output files: `path` (a temporary file being written) is removed if SIGINT, SIGTERM, SIGHUP or
 * SIGQUIT ends heapscope before hs_cleanup_remove(slot). Installs the handlers on first use, where
 * no handler is set yet, and re-raises the signal after removing. Returns the slot, or -1. */
int hs_cleanup_add(const char *path);
/* A write to stdout failed (errno); at exit, heapscope then says so and exits 1. */
void hs_output_failed(int err);
/* Install that check (once, at start). */
void hs_check_output_at_exit(void);
/* SIGINT, SIGTERM, SIGQUIT ignored on entry go back to their default action (SIGHUP stays). */
void hs_honor_termination_signals(void);
void hs_cleanup_remove(int slot);

/// PTRACE_SECCOMP_GET_FILTER of a stopped tracee: filter `index` (0 = newest) into `buf`
/// (struct sock_filter, 8 bytes each, at most `count`); count 0 asks only its length.
/// Returns the length in instructions or -errno (-ENOENT: no filter with that index).
long hs_ptrace_seccomp_filter(pid_t tid, unsigned long index, void *buf, unsigned long count);

/// Monotonic clock in nanoseconds.
uint64_t hs_monotonic_ns(void);

#endif

/// Demangle an Itanium C++ (and legacy Rust) symbol with the C++ runtime's __cxa_demangle.
/// Returns a malloc'd string or NULL; the caller frees it.
char *hs_demangle_cxx(const char *mangled);
/// Demangle a Swift symbol with the Swift runtime's swift_demangle. malloc'd or NULL.
char *hs_demangle_swift(const char *mangled, size_t len);
/// Rust v0 (`_R...`) demangling; malloc'ed result or NULL.
char *hs_demangle_rust(const char *mangled);
