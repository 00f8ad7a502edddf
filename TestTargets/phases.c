/* A heap that changes in three phases, each started by SIGUSR1, for snapshot diffs. After each
 * phase the program rewrites its manifest (atomically: temporary file + rename) with "phase N",
 * then "record ADDR CHUNK" for every live struct record, "leak ADDR CHUNK" for every chunk it
 * leaked, "dtv ADDR CHUNK" for the thread-library block (the dtv, calloc'ed by pthread_create)
 * of every thread it abandoned, "exited DESCRIPTOR START END" for every thread that exited without
 * being joined (its stack block, guard page included, from pthread_getattr_np), its mallinfo2 and
 * "end". CHUNK = malloc_usable_size + 8, the chunk's size.
 *   phase 1: a tree of struct node and a few strings (global roots);
 *   phase 2: N struct record on a global list, and M chunks of S bytes leaked (no pointer kept);
 *   phase 3: F records freed, K threads started that exit and are never joined.
 * Nothing else allocates after phase 1: the manifest is written with write(2) from static buffers,
 * signals are taken with sigtimedwait; only pthread_getattr_np (phase 3) mallocs and frees. */
#include "manifest.h"
#include <signal.h>
#include <poll.h>
#include <sys/syscall.h>

enum { N = 40, M = 5, S = 200, F = 15, K = 3 };
struct node { struct node *left, *right; char *name; long key; };
struct record { struct record *next; long id; char payload[32]; };

struct node *tree;
struct record *records;
static uintptr_t leaked[M];             /* ^ HS_KEY: the program keeps no pointer to them */
static pthread_t abandoned[K];
static volatile int exited_tid[K];
static int phase;
static const char *manifest;

static struct node *build(int depth, long *key) {
    if (depth == 0) return NULL;
    struct node *n = t_malloc(sizeof *n);
    n->key = (*key)++;
    n->name = t_malloc(24);
    snprintf(n->name, 24, "node-%ld", n->key);
    n->left = build(depth - 1, key);
    n->right = build(depth - 1, key);
    return n;
}

static size_t chunk(void *p) { return malloc_usable_size(p) + 8; }

__attribute__((noinline)) static void leak_some(void) {
    for (int i = 0; i < M; i++) {
        char *p = t_malloc(S);
        memset(p, 'x', S);
        leaked[i] = (uintptr_t)p ^ HS_KEY;
    }
}
/* Overwrite the dead part of the stack so no stale copy of a leaked pointer roots it. */
__attribute__((noinline)) static void scrub(void) {
    volatile char junk[16384];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = 0;
}

static void *quit_early(void *arg) {
    int i = (int)(intptr_t)arg;
    exited_tid[i] = (int)gettid();
    return NULL;
}

/* Thread i's stack block as glibc made it (guard included), from pthread_getattr_np on the exited,
 * unjoined thread: stackaddr - guardsize .. stackaddr + stacksize. (Not /proc/self/maps: from
 * glibc 2.43 neighbouring stacks share one mapping.) Its cpuset buffer is malloc'ed and freed. */
static unsigned long stack_lo[K], stack_hi[K];
static void stack_block(int i) {
    pthread_attr_t a;
    void *addr; size_t size, guard;
    if (pthread_getattr_np(abandoned[i], &a) != 0 || pthread_attr_getstack(&a, &addr, &size) != 0 ||
        pthread_attr_getguardsize(&a, &guard) != 0) _exit(5);
    pthread_attr_destroy(&a);
    stack_lo[i] = (unsigned long)addr - guard;
    stack_hi[i] = (unsigned long)addr + size;
}

static void write_manifest(void) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", manifest);
    hs_fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (hs_fd < 0) _exit(3);
    hs_printf("phase %d\n", phase);
    for (struct record *r = records; r; r = r->next) hs_printf("record %lx %zu\n", (unsigned long)r, chunk(r));
    if (phase >= 2) for (int i = 0; i < M; i++) hs_printf("leak %lx %zu\n", (unsigned long)(leaked[i] ^ HS_KEY), chunk((void *)(leaked[i] ^ HS_KEY)));
    if (phase >= 3) for (int i = 0; i < K; i++) {
        /* tcbhead_t { void *tcb; dtv_t *dtv; ... }: the dtv pointer is one dtv_t (16 bytes) into its block */
        char *dtv = ((char **)abandoned[i])[1] - 16;
        hs_printf("dtv %lx %zu\nexited %lx %lx %lx\n", (unsigned long)dtv, chunk(dtv), (unsigned long)abandoned[i], stack_lo[i], stack_hi[i]);
    }
    hs_write_manifest(1);
    hs_printf("end\n");
    hs_flush();
    close(hs_fd);
    if (rename(tmp, manifest) != 0) _exit(3);
}

int main(int argc, char **argv) {
    if (argc < 2) _exit(2);
    manifest = argv[1];
    sigset_t set; sigemptyset(&set); sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);

    long key = 0;
    tree = build(4, &key);
    phase = 1;
    write_manifest();
    for (;;) {
        struct pollfd in = { .fd = 0, .events = POLLIN };
        if (poll(&in, 1, 0) > 0) return 0;                 /* stdin closed or written: done */
        struct timespec tick = { 0, 50 * 1000 * 1000 };
        if (sigtimedwait(&set, NULL, &tick) != SIGUSR1 || phase >= 3) continue;
        phase++;
        if (phase == 2) {
            for (int i = 0; i < N; i++) {
                struct record *r = t_malloc(sizeof *r);
                r->id = i; memset(r->payload, 'r', sizeof r->payload);
                r->next = records; records = r;
            }
            leak_some();
            scrub();
        } else {
            /* free every other record from the head until F are gone */
            struct record **at = &records;
            for (int freed = 0; freed < F && *at; ) {
                struct record *r = *at;
                if (r->id % 2 == 0) { *at = r->next; t_free(r); freed++; } else at = &r->next;
            }
            for (int i = 0; i < K; i++) pthread_create(&abandoned[i], NULL, quit_early, (void *)(intptr_t)i);
            /* wait until the kernel has reaped each thread (its tid is gone) */
            for (int i = 0; i < K; i++) {
                while (!exited_tid[i]) usleep(1000);
                while (syscall(SYS_tgkill, getpid(), exited_tid[i], 0) == 0) usleep(1000);
            }
            for (int i = 0; i < K; i++) stack_block(i);
        }
        write_manifest();
    }
}
