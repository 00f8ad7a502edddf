/* Leak classes with known answers (Valgrind memcheck's rules). Each chunk made on purpose is
 * noted in the manifest as "leak ADDR CLASS"; every other live chunk is still reachable.
 * A reachable one is noted "CLASS/ROOT" with the root `why` must name: module_data:SYMBOL, tls,
 * anonymous, stack, register, or chunk (through another chunk).
 * Raw pointers exist only inside the noinline makers, in registers that later calls reuse; the
 * stack below main's frame is scrubbed before waiting. The pointer only in a register lives in
 * r12 of a thread blocked in a raw pause() syscall.
 *   definitely_lost        a single chunk; the head of a leaked list; one of a leaked cycle;
 *                          a chunk whose address is only stored xor'ed; a chunk holding a
 *                          function's and a global's address; a string
 *   indirectly_lost        the rest of the list; the other of the cycle
 *   possibly_lost          a chunk referenced only by an interior pointer (from .data); the
 *                          thread's dtv (glibc points to its second element)
 *   still_reachable        from .bss, from main's stack, from TLS, from an mmap'd pool, from a
 *                          register only, and a chain global -> a -> b */
#include "manifest.h"
#include <sys/mman.h>
#include <sys/syscall.h>

#define KEY ((uintptr_t)0x5a5a5a5a5a5a5a5aull)
struct node { struct node *next; char pad[40]; };

static void *bss_ptr;                 /* .bss root */
static __thread void *tls_ptr;        /* TLS root */
static void **pool;                   /* -> an mmap'd page holding a pointer */
void *data_interior = (void *)1;      /* .data: an interior pointer */
static uintptr_t disguised;           /* an address xor KEY */
static void *chain_head;              /* global -> a -> b */

static __attribute__((noinline)) uintptr_t make(size_t n, const char *cls) {
    void *p = t_malloc(n);
    memset(p, 0, n);
    hs_note("leak", p, cls);
    return (uintptr_t)p ^ KEY;
}
static inline void *un(uintptr_t d) { return (void *)(d ^ KEY); }

static __attribute__((noinline)) uintptr_t make_list(int n) {
    struct node *head = 0;
    for (int i = 0; i < n; i++) {
        struct node *x = t_malloc(sizeof *x);
        memset(x, 0, sizeof *x);
        x->next = head;
        head = x;
    }
    hs_note("leak", head, "definitely_lost");
    for (struct node *x = head->next; x; x = x->next) hs_note("leak", x, "indirectly_lost");
    return (uintptr_t)head ^ KEY;
}
static __attribute__((noinline)) void make_cycle(void) {
    struct node *a = t_malloc(sizeof *a), *b = t_malloc(sizeof *b);
    memset(a, 0, sizeof *a); memset(b, 0, sizeof *b);
    a->next = b; b->next = a;
    hs_note("leak", a, "cycle"); hs_note("leak", b, "cycle");
}
static __attribute__((noinline)) void make_chain(void) {
    void **a = t_malloc(32), **b = t_malloc(32);
    memset(a, 0, 32); memset(b, 0, 32);
    a[1] = b; chain_head = a;
    hs_note("leak", a, "still_reachable/module_data:chain_head"); hs_note("leak", b, "still_reachable/chunk");
}
/* Leaked chunks whose contents say what they are: a function and a global's address (leaks
 * groups them by those symbols), and a string. */
static __attribute__((noinline)) void make_described(void) {
    void **d = t_malloc(48);
    memset(d, 0, 48);
    d[0] = (void *)make; d[1] = &bss_ptr;
    hs_note("leak", d, "definitely_lost/signature:make,bss_ptr");
    char *t = t_malloc(32);
    strcpy(t, "a leaked string");
    hs_note("leak", t, "definitely_lost/signature:text");
}
static __attribute__((noinline)) void scrub(void) {
    volatile char buf[1 << 16];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = 0;
}

static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ready_cond = PTHREAD_COND_INITIALIZER;
static int ready;
static pid_t register_tid;
/* True once thread `tid` is blocked in pause() (so its chunk is held in r12 only). */
static int blocked_in_pause(pid_t tid) {
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    return atoi(buf) == SYS_pause;
}
/* Holds its chunk in r12 only, blocked in pause() forever (the process ends with main). */
static void *register_thread(void *arg) {
    (void)arg;
    uintptr_t d = make(72, "still_reachable/register");
    /* glibc keeps this thread's dtv (calloc'ed by pthread_create) only as dtv + 1 in the TCB
     * (tcbhead_t.dtv at fs:8): an interior pointer, so possibly lost, as Valgrind reports it. */
    uintptr_t dtv1;
    __asm__("mov %%fs:8, %0" : "=r"(dtv1));
    hs_note("leak", (void *)(dtv1 - 16), "possibly_lost/stack");
    dtv1 = 0;
    scrub();
    register_tid = (pid_t)syscall(SYS_gettid);
    pthread_mutex_lock(&ready_lock); ready = 1; pthread_cond_signal(&ready_cond); pthread_mutex_unlock(&ready_lock);
    register uintptr_t r12 __asm__("r12") = d ^ KEY;
    for (;;) {
        register long rax __asm__("rax") = SYS_pause;
        __asm__ volatile("syscall" : "+r"(rax) : "r"(r12) : "rcx", "r11", "memory");
    }
    return 0;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    uintptr_t single = make(40, "definitely_lost"); (void)single;
    disguised = make(56, "definitely_lost");
    (void)make_list(4);
    make_cycle();
    data_interior = (char *)un(make(64, "possibly_lost/module_data:data_interior")) + 16;
    bss_ptr = un(make(24, "still_reachable/module_data:bss_ptr"));
    tls_ptr = un(make(88, "still_reachable/tls"));
    pool = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    pool[3] = un(make(104, "still_reachable/anonymous"));
    make_chain();
    make_described();
    void *volatile on_stack = un(make(120, "still_reachable/stack"));
    pthread_t t;
    pthread_create(&t, 0, register_thread, 0);
    pthread_mutex_lock(&ready_lock);
    while (!ready) pthread_cond_wait(&ready_cond, &ready_lock);
    pthread_mutex_unlock(&ready_lock);
    while (!blocked_in_pause(register_tid)) usleep(1000);
    scrub();
    hs_write_manifest(2);
    scrub();
    hs_end_and_wait();
    (void)on_stack;
    return 0;
}
