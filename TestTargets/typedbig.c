/* Benchmark target for typing: argv[2] (default 1000000) chunks in linked structures reachable
 * from typed globals: half of them list nodes, each pointing to a payload struct (the other
 * half); or, with argv[3] = "tree", a binary tree of that many nodes. Writes "pid N" and "end"
 * to argv[1] when done, waits for stdin to close. */
#include "manifest.h"

struct payload { long id; double weight; struct item *back; };
struct item { struct item *next; struct payload *data; long key; };
struct tnode { struct tnode *left, *right; long key; };

struct item *items;
struct tnode *tree;

static struct tnode *build(long lo, long hi) {
    if (lo >= hi) return NULL;
    long mid = (lo + hi) / 2;
    struct tnode *t = malloc(sizeof *t);
    t->key = mid;
    t->left = build(lo, mid);
    t->right = build(mid + 1, hi);
    return t;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    long n = argc > 2 ? atol(argv[2]) : 1000000;
    if (argc > 3 && strcmp(argv[3], "tree") == 0) {
        tree = build(0, n);
    } else {
        for (long i = 0; i < n / 2; i++) {
            struct item *it = malloc(sizeof *it);
            it->data = malloc(sizeof *it->data);
            it->data->id = i; it->data->weight = i * 0.5; it->data->back = it;
            it->key = i; it->next = items; items = it;
        }
    }
    hs_printf("pid %d\n", (int)getpid());
    hs_end_and_wait();
    return 0;
}
