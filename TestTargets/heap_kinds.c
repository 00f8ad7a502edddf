/* One thread, a chunk in every bin kind: tcache, fastbin, unsorted, small, large, plus top,
 * three mmapped chunks (one memalign'd, one calloc'd and never written). The frees are ordered so
 * glibc's placement is certain (from 2.41 a freed small chunk goes straight to its small bin, not
 * to the unsorted bin: the notes say so):
 * - a size's first 7 frees fill its tcache bin; later frees of it go to fastbins (<= 0x80) or the
 *   unsorted bin;
 * - a malloc that finds no fit sorts the unsorted bin into small and large bins;
 * - live guard chunks between freed ones stop coalescing. */
#include "manifest.h"

static void *guard(void) { return t_malloc(24); }

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    void *tc[8], *fill[4][7];
    /* mmapped chunks first (request >= mmap threshold 128 KiB) */
    void *big = t_malloc(0x300000); memset(big, 0xab, 64);
    void *aligned = t_memalign(0x10000, 0x300000); memset(aligned, 0xcd, 64);
    void *zeroed = calloc(1, 0x400000);   /* all zero: its pages after the first are not resident */
    (void)big; (void)aligned; (void)zeroed;

    /* chunks to go to the small, large and (later) unsorted bins, each behind a guard */
    void *small_a = t_malloc(0x100); guard();        /* chunk 0x110 */
    void *large_b = t_malloc(0x600); guard();        /* chunk 0x610 > tcache range */
    void *unsorted_c = t_malloc(0x200); guard();     /* chunk 0x210 */
    void *unsorted_d = t_malloc(0x700); guard();     /* chunk 0x710 */
    /* fillers to fill the tcache bins of 0x110, 0x210 and 0x30 */
    for (int i = 0; i < 7; i++) { fill[0][i] = t_malloc(0x100); guard(); }
    for (int i = 0; i < 7; i++) { fill[1][i] = t_malloc(0x200); guard(); }
    for (int i = 0; i < 7; i++) { fill[2][i] = t_malloc(0x28); guard(); }
    void *fast[3];
    for (int i = 0; i < 3; i++) { fast[i] = t_malloc(0x28); guard(); }
    for (int i = 0; i < 5; i++) { tc[i] = t_malloc(0x48); guard(); }   /* chunk 0x50: tcache only */

    /* small and large: fill tcache 0x110, free a and b into unsorted, then a malloc sorts them */
    for (int i = 0; i < 7; i++) hs_free_expect(fill[0][i], "tcache");
    hs_free_expect(small_a, "small");
    hs_free_expect(large_b, "large");
    void *sorter = t_malloc(0x1000); (void)sorter;   /* no fit: unsorted -> small/large bins */

    /* unsorted: fill tcache 0x210, then free c; d is beyond tcache sizes */
    for (int i = 0; i < 7; i++) hs_free_expect(fill[1][i], "tcache");
    hs_free_expect(unsorted_c, hs_glibc_at_least(41) ? "small" : "unsorted");
    hs_free_expect(unsorted_d, "unsorted");

    /* fastbin: fill tcache 0x30, then three more frees of 0x30 */
    for (int i = 0; i < 7; i++) hs_free_expect(fill[2][i], "tcache");
    for (int i = 0; i < 3; i++) hs_free_expect(fast[i], hs_fast_kind());

    /* tcache only */
    for (int i = 0; i < 5; i++) hs_free_expect(tc[i], "tcache");

    hs_write_manifest_and_wait(1);
    return 0;
}
