/* A non-contiguous main arena: a PROT_NONE mapping placed right after the program break makes
 * brk fail, so glibc continues the main arena in mmap'd regions of >= 1 MiB (NONCONTIGUOUS_BIT),
 * capping each old top with two fenceposts. Enough is allocated to span the brk heap and three
 * mmap'd regions; every region keeps some freed chunks. */
#include "manifest.h"
#include <sys/mman.h>

#define N 3000
static void *p[N];

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    void *first = t_malloc(100);
    (void)first;
    uintptr_t brk_end = ((uintptr_t)sbrk(0) + 4095) & ~(uintptr_t)4095;
    void *block = mmap((void *)brk_end, 1 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (block == MAP_FAILED) return 4;
    for (int i = 0; i < N; i++) p[i] = t_malloc(1000);        /* chunks of 0x3f0: ~3 MiB */
    /* every 10th is freed (never the last ones, which border top): 7 fill tcache, the rest
     * go to the unsorted bin (no malloc follows to sort them) */
    int freed = 0;
    for (int i = 5; i < N - 50; i += 10) hs_free_expect(p[i], freed++ < 7 ? "tcache" : "unsorted");
    hs_write_manifest_and_wait(1);
    return 0;
}
