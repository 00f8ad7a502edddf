/* Leaked chunks typed by resemblance. Two structs of the same size (40 bytes, one chunk size)
 * with different layouts; reachable ones of each from typed globals, and leaked ones of each that
 * no typed pointer reaches:
 *   - a leaked list of struct alpha (pointer, text, number): resembles struct alpha;
 *   - a leaked tree of struct beta (numbers, two pointers): resembles struct beta;
 *   - struct alphas reused from malloc's free list whose `next` was never written (it still holds
 *     the free list's link, encoded by glibc 2.32+): resembles struct alpha;
 *   - zero-filled chunks of that size: fit both equally, so "ambiguous struct alpha | struct beta".
 * Every program chunk is noted as "type ADDR CONFIDENCE NAME", as typed.c does. */
#include "manifest.h"

struct alpha { struct alpha *next; char name[24]; long serial; };
struct beta { long id; double weight; struct beta *left, *right; long flags; };

struct alpha *alphas;       /* 30 reachable */
struct beta *betas;         /* 20 reachable, a chain through left */

static void note(void *p, const char *label) { hs_note("type", p, label); }

static __attribute__((noinline)) void reachable(void) {
    for (int i = 0; i < 30; i++) {
        struct alpha *a = t_malloc(sizeof *a);
        memset(a, 0, sizeof *a);
        snprintf(a->name, sizeof a->name, "alpha-%d", i);
        a->serial = i; a->next = alphas; alphas = a;
        note(a, "declared struct alpha");
    }
    for (int i = 0; i < 20; i++) {
        struct beta *b = t_malloc(sizeof *b);
        memset(b, 0, sizeof *b);
        b->id = 100 + i; b->weight = i * 0.5; b->left = betas; betas = b;
        note(b, "declared struct beta");
    }
}

static __attribute__((noinline)) void leak_alphas(int n) {
    struct alpha *head = 0;
    for (int i = 0; i < n; i++) {
        struct alpha *a = t_malloc(sizeof *a);
        memset(a, 0, sizeof *a);
        snprintf(a->name, sizeof a->name, "leaked-alpha-%02d", i);
        a->serial = 1000 + i; a->next = head; head = a;
        note(a, "resembles struct alpha");
    }
}

static __attribute__((noinline)) struct beta *leak_tree(int depth, long *id) {
    if (depth == 0) return 0;
    struct beta *b = t_malloc(sizeof *b);
    memset(b, 0, sizeof *b);
    b->id = (*id)++; b->weight = 1.25 * depth; b->flags = 7;
    b->left = leak_tree(depth - 1, id); b->right = leak_tree(depth - 1, id);
    note(b, "resembles struct beta");
    return b;
}

static __attribute__((noinline)) void leak_reused(int n) {
    for (int i = 0; i < n; i++) {
        void *x = t_malloc(sizeof(struct alpha));
        t_free(x);                                       /* into the tcache... */
        struct alpha *a = t_malloc(sizeof *a);            /* ...and out again: `next` holds its link */
        snprintf(a->name, sizeof a->name, "reused-alpha-%d", i);
        a->serial = 2000 + i;
        note(a, "resembles struct alpha");
    }
}

static __attribute__((noinline)) void leak_zeros(int n) {
    for (int i = 0; i < n; i++) {
        void *z = t_malloc(sizeof(struct alpha));
        memset(z, 0, sizeof(struct alpha));
        note(z, "ambiguous struct alpha | struct beta");
    }
}

static __attribute__((noinline)) void scrub(void) {
    volatile char buf[1 << 16];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = 0;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    reachable();
    leak_alphas(12);
    long id = 500;
    (void)leak_tree(3, &id);                          /* 7 betas */
    leak_reused(4);
    leak_zeros(5);
    scrub();
    hs_write_manifest(1);
    hs_end_and_wait();
    return 0;
}
