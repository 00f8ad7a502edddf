/* A deliberately corrupted heap: one chunk's size field overwritten with garbage, and a tcache
 * list turned into a cycle. heapscope must name both, finish, and not hang. The program makes no
 * malloc call after corrupting (it would abort). */
#include "manifest.h"

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    void *a[4], *victim, *after, *t1, *t2;
    for (int i = 0; i < 4; i++) a[i] = t_malloc(0x38);
    victim = t_malloc(0x88);
    after = t_malloc(0x18);
    t1 = t_malloc(0x68); t_malloc(24);
    t2 = t_malloc(0x68); t_malloc(24);
    /* the free list to loop: tcache bin 0x70 holds t2 -> t1 (LIFO) */
    hs_free_expect(t1, "tcache");
    hs_free_expect(t2, "tcache");
    /* Bad size field: 0x...7 is misaligned. The chunk header sits 16 bytes below the pointer. */
    hs_note("corrupt", (char *)victim - 16, "corrupt_chunk");
    /* Cycle: t1->next := t2 (safe-linked with t1's address), so t2 -> t1 -> t2 -> ... */
    hs_note("corrupt", (char *)t1 - 16, "list_cycle");
    hs_write_manifest(1);                 /* the truth, before the damage */
    ((size_t *)victim)[-1] = 0x1237;
    *(uintptr_t *)t1 = ((uintptr_t)t1 >> 12) ^ (uintptr_t)t2;
    (void)after; (void)a;
    hs_end_and_wait();
    return 0;
}
