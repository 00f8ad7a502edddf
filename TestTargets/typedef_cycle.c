/* A typedef met again through its own members (as CPython's AST: expr_ty in struct _expr, through
 * a const typedef): reading the declared types must not trap. Two chunks, both struct _expr, held
 * by the global `root` and by root->right. Manifest: pid, "chunk ADDR" per chunk, end. */
#include "manifest.h"
typedef struct _expr *expr_ty;
typedef const expr_ty cexpr_ty;
struct _expr { int kind; cexpr_ty left; expr_ty right; };
expr_ty root;
int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    root = malloc(sizeof *root);
    root->kind = 1;
    root->right = malloc(sizeof *root);
    hs_printf("pid %d\nchunk %lx\nchunk %lx\n", (int)getpid(), (unsigned long)root, (unsigned long)root->right);
    hs_end_and_wait();
    return 0;
}
