/* Ground truth for heapscope's tests.
 *
 * A target records every live allocation of the process (with -DINTERPOSE, malloc & co. are
 * wrapped and forward to glibc's exported __libc_* functions, so libc's own allocations such as a
 * new thread's DTV are recorded too; without it, only the program's t_* calls are). It writes a
 * manifest with write(2) from a static buffer, so writing it allocates nothing:
 *
 *   pid N | glibc V | threads N
 *   live USER_ADDR USABLE_SIZE          every outstanding chunk (usable = malloc_usable_size)
 *   freed USER_ADDR KIND                a chunk the program freed on purpose, and the bin kind
 *                                       glibc 2.36 puts it in (tcache fastbin unsorted small large)
 *   mmapped USER_ADDR USABLE_SIZE       also listed as live; says it must be an mmapped chunk
 *   corrupt CHUNK_ADDR KIND             a chunk the program corrupted on purpose (warning kind)
 *   mallinfo2 arena=.. ordblks=.. ...   the program's own mallinfo2()
 *   end
 *
 * Then it blocks until its standard input closes (or a byte arrives), and exits 0.
 */
#ifndef HS_MANIFEST_H
#define HS_MANIFEST_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- live-allocation table: open addressing, static, no malloc ----
 * Entries are stored xor'ed with HS_KEY, so that the table does not make every chunk reachable
 * (leak checks scan .bss); 0 = empty, 1 = tombstone (no real pointer xor HS_KEY is either). */
#define HS_SLOTS (1u << 20)
#define HS_KEY ((uintptr_t)0xa5a5a5a5a5a5a5a5ull)
static uintptr_t hs_live[HS_SLOTS];
static pthread_mutex_t hs_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t hs_count;

static unsigned hs_hash(uintptr_t p) { return (unsigned)((p >> 4) * 2654435761u) & (HS_SLOTS - 1); }
static void hs_add(void *p) {
    if (!p) return;
    pthread_mutex_lock(&hs_lock);
    unsigned h = hs_hash((uintptr_t)p);
    while (hs_live[h] && hs_live[h] != 1) h = (h + 1) & (HS_SLOTS - 1);
    hs_live[h] = (uintptr_t)p ^ HS_KEY; hs_count++;
    pthread_mutex_unlock(&hs_lock);
}
static void hs_del(void *p) {
    if (!p) return;
    pthread_mutex_lock(&hs_lock);
    unsigned h = hs_hash((uintptr_t)p);
    while (hs_live[h]) {
        if (hs_live[h] == ((uintptr_t)p ^ HS_KEY)) { hs_live[h] = 1; hs_count--; break; }   /* 1 = tombstone */
        h = (h + 1) & (HS_SLOTS - 1);
    }
    pthread_mutex_unlock(&hs_lock);
}

#ifdef INTERPOSE
extern void *__libc_malloc(size_t), *__libc_calloc(size_t, size_t), *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
void *malloc(size_t n) { void *p = __libc_malloc(n); hs_add(p); return p; }
void *calloc(size_t a, size_t b) { void *p = __libc_calloc(a, b); hs_add(p); return p; }
void free(void *p) { hs_del(p); __libc_free(p); }
void *realloc(void *o, size_t n) {
    void *p = __libc_realloc(o, n);
    if (p || n == 0) { hs_del(o); hs_add(p); }
    return p;
}
void *memalign(size_t a, size_t n) { void *p = __libc_memalign(a, n); hs_add(p); return p; }
void *aligned_alloc(size_t a, size_t n) { return memalign(a, n); }
int posix_memalign(void **r, size_t a, size_t n) { void *p = memalign(a, n); if (!p) return 12; *r = p; return 0; }
static inline void *t_malloc(size_t n) { return malloc(n); }
static inline void t_free(void *p) { free(p); }
static inline void *t_memalign(size_t a, size_t n) { return memalign(a, n); }
#elif defined(WRAP)
/* Static builds: the linker's --wrap sends every call of malloc & co. (libc.a's own included) here. */
void *__real_malloc(size_t), *__real_calloc(size_t, size_t), *__real_realloc(void *, size_t), *__real_memalign(size_t, size_t);
void __real_free(void *);
void *__wrap_malloc(size_t n) { void *p = __real_malloc(n); hs_add(p); return p; }
void *__wrap_calloc(size_t a, size_t b) { void *p = __real_calloc(a, b); hs_add(p); return p; }
void __wrap_free(void *p) { hs_del(p); __real_free(p); }
void *__wrap_realloc(void *o, size_t n) { void *p = __real_realloc(o, n); if (p || n == 0) { hs_del(o); hs_add(p); } return p; }
void *__wrap_memalign(size_t a, size_t n) { void *p = __real_memalign(a, n); hs_add(p); return p; }
static inline void *t_malloc(size_t n) { return malloc(n); }
static inline void t_free(void *p) { free(p); }
static inline void *t_memalign(size_t a, size_t n) { return memalign(a, n); }
#else
static void *t_malloc(size_t n) { void *p = malloc(n); hs_add(p); return p; }
static void t_free(void *p) { hs_del(p); free(p); }
static void *t_memalign(size_t a, size_t n) { void *p = memalign(a, n); hs_add(p); return p; }
#endif

/* ---- manifest writer ---- */
static char hs_buf[1 << 16];
static size_t hs_len;
static int hs_fd = -1;
static void hs_flush(void) {
    size_t off = 0;
    while (off < hs_len) { ssize_t n = write(hs_fd, hs_buf + off, hs_len - off); if (n <= 0) break; off += (size_t)n; }
    hs_len = 0;
}
static void hs_printf(const char *fmt, ...) {
    if (hs_len > sizeof hs_buf - 512) hs_flush();
    va_list ap; va_start(ap, fmt);
    int n = vsnprintf(hs_buf + hs_len, sizeof hs_buf - hs_len, fmt, ap);
    va_end(ap);
    if (n > 0) hs_len += (size_t)n;
}

/* Freed chunks and deliberate corruptions the program wants checked. */
#define HS_MAXNOTES 4096
static struct { uintptr_t p; const char *what; const char *kind; } hs_notes[HS_MAXNOTES];   /* p ^ HS_KEY */
static int hs_nnotes;
static void hs_note(const char *what, void *p, const char *kind) {
    pthread_mutex_lock(&hs_lock);   /* threads note their frees at the same time */
    if (hs_nnotes < HS_MAXNOTES) { hs_notes[hs_nnotes].p = (uintptr_t)p ^ HS_KEY; hs_notes[hs_nnotes].what = what; hs_notes[hs_nnotes].kind = kind; hs_nnotes++; }
    pthread_mutex_unlock(&hs_lock);
}
/* Free p on purpose and record the bin kind glibc 2.36 is expected to put it in. */
static void hs_free_expect(void *p, const char *kind) { hs_note("freed", p, kind); t_free(p); }

/* The running glibc's version ("2.36"). With HS_NO_BANNER it comes from confstr, so that a static
 * build does not link glibc's version banner (as most static programs do not: gnu_get_libc_version
 * lives beside it and would pull it in). */
static const char *hs_libc_version(void) {
#ifdef HS_NO_BANNER
    static char v[64];
    if (!v[0] && confstr(_CS_GNU_LIBC_VERSION, v, sizeof v) == 0) v[0] = '?';
    return strncmp(v, "glibc ", 6) == 0 ? v + 6 : v;
#else
    return gnu_get_libc_version();
#endif
}

/* Whether the running glibc is 2.MINOR or newer (no allocation). */
static int hs_glibc_at_least(int minor) {
    const char *v = hs_libc_version();
    return v[0] > '2' || (v[0] == '2' && v[1] == '.' && atoi(v + 2) >= minor);
}

/* Where a small chunk freed with its tcache bin full goes: a fastbin (<= 0x80), or, from 2.43
 * (which removed fastbins), straight to its small bin. */
static const char *hs_fast_kind(void) { return hs_glibc_at_least(43) ? "small" : "fastbin"; }

/* One-letter state of a thread of this process ('R', 'S', 'D', 'Z', ...; '?' if unknown), from
 * /proc/self/task/TID/stat (read with open/read: no allocation). */
static char hs_thread_state(pid_t tid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return '?';
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] && p[2] ? p[2] : '?';
}

/* Write the manifest (without its final "end" line). */
static void hs_write_manifest(int threads) {
#if __GLIBC__ == 2 && __GLIBC_MINOR__ < 33
    /* mallinfo2 came with glibc 2.33; mallinfo's int fields hold the same numbers for small heaps. */
    struct mallinfo m1 = mallinfo();
    struct { size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost; } mi = {
        (size_t)m1.arena, (size_t)m1.ordblks, (size_t)m1.smblks, (size_t)m1.hblks, (size_t)m1.hblkhd, (size_t)m1.usmblks,
        (size_t)m1.fsmblks, (size_t)m1.uordblks, (size_t)m1.fordblks, (size_t)m1.keepcost };
#else
    struct mallinfo2 mi = mallinfo2();
#endif
    hs_printf("pid %d\nglibc %s\nthreads %d\n", (int)getpid(), hs_libc_version(), threads);
    pthread_mutex_lock(&hs_lock);
    for (unsigned i = 0; i < HS_SLOTS; i++) {
        if (hs_live[i] > 1) {
            uintptr_t p = hs_live[i] ^ HS_KEY;
            size_t u = malloc_usable_size((void *)p);
            size_t sz = ((size_t *)p)[-1];
            hs_printf("%s %lx %zu\n", (sz & 2) ? "mmapped" : "live", (unsigned long)p, u);
        }
    }
    pthread_mutex_unlock(&hs_lock);
    for (int i = 0; i < hs_nnotes; i++) hs_printf("%s %lx %s\n", hs_notes[i].what, (unsigned long)(hs_notes[i].p ^ HS_KEY), hs_notes[i].kind);
    hs_printf("mallinfo2 arena=%zu ordblks=%zu smblks=%zu hblks=%zu hblkhd=%zu usmblks=%zu fsmblks=%zu uordblks=%zu fordblks=%zu keepcost=%zu\n",
              mi.arena, mi.ordblks, mi.smblks, mi.hblks, mi.hblkhd, mi.usmblks, mi.fsmblks, mi.uordblks, mi.fordblks, mi.keepcost);
    hs_flush();
}
/* Finish the manifest with "end", then block until stdin has a byte or closes. */
static void hs_end_and_wait(void) {
    hs_printf("end\n");
    hs_flush();
    close(hs_fd);
    char c;
    while (read(0, &c, 1) < 0) {}
}
static inline void hs_write_manifest_and_wait(int threads) { hs_write_manifest(threads); hs_end_and_wait(); }

/* Call first in main: opens the manifest file given as argv[1] (the open itself does not allocate). */
static void hs_open_manifest(int argc, char **argv) {
    if (argc < 2) { static const char m[] = "usage: target MANIFEST\n"; write(2, m, sizeof m - 1); _exit(2); }
    hs_fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (hs_fd < 0) _exit(3);
}
#endif
