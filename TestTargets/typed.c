/* Chunks whose types the debug info declares: reached from typed globals, TLS variables and the
 * locals and parameters of frames of two threads, through pointer members, arrays and a union.
 * Every chunk is noted in the manifest as "type ADDR CONFIDENCE NAME" (NAME as heapscope spells
 * a C type; "T[n]" for an array chunk, n = malloc_usable_size / sizeof(T), as heapscope counts;
 * "NAME (via union)" for a chunk reached only through a union member; "unknown -" for a chunk
 * only a void * points to). "owner ADDR ROOT" names the root variable that reaches a chunk first
 * (locals of inner frames before outer ones). Built with -O0 -g: locals live in their frames. */
#include "manifest.h"
#include <signal.h>

struct node { long key; struct node *next; char *name; };
struct tree { struct tree *left, *right; int value; };
struct entry { char *key; long value; struct entry *chain; };
struct table { struct entry **buckets; int nbuckets; };
struct point { double x, y; struct node *tag; };
union value { struct tree *t; struct node *n; long raw; };
struct holder { int kind; union value v; };
typedef struct { int id; struct node *first; } anon_t;   /* anonymous: labelled by its typedef */

struct node *list_head;            /* a linked list */
struct node *second_list;          /* shares its tail with list_head: the tail is a struct node by 2 votes */
struct tree *tree_root;            /* a binary tree */
struct tree *confused;             /* points at that tail too: outvoted */
struct table table; static const int table_line = __LINE__;   /* a hash table of struct pointers */
struct point *points;              /* an array of structs in one chunk */
struct holder holder;              /* a union */
anon_t *anon;
void *opaque;                      /* a void *: its chunk stays unknown */
__thread struct node *tls_list;    /* one list per thread */
__thread struct tree *tls_tree; static const int tls_tree_line = __LINE__;

/* TestTargets/typedlib.c: a shared library's TLS variable (heapscope reads its DWARF too). */
struct blob;
struct blob *lib_blob_make(long serial);
extern const int lib_blob_line;
static char labels[256][64];
static int nlabels;
/* Note `p` with a label built by printf (kept in static storage: notes keep the pointer). */
static void note(void *p, const char *fmt, ...) {
    if (nlabels >= 256) _exit(4);
    char *l = labels[nlabels++];
    va_list ap; va_start(ap, fmt); vsnprintf(l, 64, fmt, ap); va_end(ap);
    hs_note("type", p, l);
}

static char owners[16][96];
static int nowners;
static void owner(void *p, const char *fmt, ...) {
    char *l = owners[nowners++];
    va_list ap; va_start(ap, fmt); vsnprintf(l, 96, fmt, ap); va_end(ap);
    hs_note("owner", p, l);
}

static void blob(long serial) {
    struct blob *b = lib_blob_make(serial);
    hs_add(b);   /* malloc'ed by the library: record it by hand */
    note(b, "declared struct blob");
    owner(b, "lib_blob (typedlib.c:%d) (thread %d)", lib_blob_line, (int)gettid());
}

static char *text(const char *s) {
    char *p = t_malloc(strlen(s) + 1);
    strcpy(p, s);
    note(p, "declared char[]");
    return p;
}

static struct node *make_list(int n, long base, struct node *tail) {
    struct node *head = tail;
    for (int i = n - 1; i >= 0; i--) {
        struct node *x = t_malloc(sizeof *x);
        char name[32];
        snprintf(name, sizeof name, "node-%ld", base + i);
        x->key = base + i; x->next = head; x->name = text(name);
        note(x, "declared struct node");
        head = x;
    }
    return head;
}

static struct tree *make_tree(int depth, int *counter) {
    if (depth == 0) return NULL;
    struct tree *t = t_malloc(sizeof *t);
    t->value = (*counter)++;
    t->left = make_tree(depth - 1, counter);
    t->right = make_tree(depth - 1, counter);
    note(t, "declared struct tree");
    return t;
}

static volatile int worker_ready;

static void level2(struct node *from_level1) {
    long *numbers = t_malloc(8 * sizeof(long));          /* a local of the innermost frame */
    for (int i = 0; i < 8; i++) numbers[i] = i * 1000;
    note(numbers, "declared long int[%zu]", malloc_usable_size(numbers) / sizeof(long));
    owner(numbers, "numbers in level2 (thread %d)", (int)gettid());
    owner(from_level1, "from_level1 in level2 (thread %d)", (int)gettid());
    worker_ready = 1;
    for (;;) pause();
    (void)from_level1;
}

static void level1(void) {
    struct node *mine = make_list(2, 500, NULL);         /* a local two frames up */
    level2(mine);
}

static void *worker(void *arg) {
    (void)arg;
    tls_list = make_list(2, 300, NULL);
    int c = 100;
    tls_tree = make_tree(1, &c);
    blob(2);
    owner(tls_tree, "tls_tree (typed.c:%d) (thread %d)", tls_tree_line, (int)gettid());
    level1();
    return NULL;
}

static void hold(struct tree *param) {                   /* a parameter of main's callee */
    struct entry *local_entry = t_malloc(sizeof *local_entry);   /* and a local */
    local_entry->key = text("local key"); local_entry->value = 1; local_entry->chain = NULL;
    note(local_entry, "declared struct entry");
    owner(local_entry, "local_entry in hold (thread %d)", (int)gettid());
    owner(param, "param in hold (thread %d)", (int)gettid());
    hs_write_manifest_and_wait(2);
    (void)param;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);

    struct node *tail = make_list(1, 99, NULL);
    list_head = make_list(4, 0, tail);
    second_list = make_list(1, 50, tail);
    confused = (struct tree *)tail;                                    /* a struct tree * at a struct node */

    int counter = 0;
    tree_root = make_tree(3, &counter);                   /* 7 nodes */

    table.nbuckets = 16;
    table.buckets = t_malloc(table.nbuckets * sizeof(struct entry *));
    memset(table.buckets, 0, table.nbuckets * sizeof(struct entry *));
    note(table.buckets, "declared struct entry*[%zu]", malloc_usable_size(table.buckets) / sizeof(struct entry *));
    owner(table.buckets, "table (typed.c:%d)", table_line);
    for (int i = 0; i < 6; i++) {
        struct entry *e = t_malloc(sizeof *e);
        char k[16];
        snprintf(k, sizeof k, "key%d", i);
        e->key = text(k); e->value = i;
        e->chain = table.buckets[i % 4];                  /* chains of 1 and 2 */
        table.buckets[i % 4] = e;
        note(e, "declared struct entry");
    }

    points = t_malloc(10 * sizeof(struct point));
    for (int i = 0; i < 10; i++) { points[i].x = i; points[i].y = -i; points[i].tag = NULL; }
    note(points, "declared struct point[%zu]", malloc_usable_size(points) / sizeof(struct point));
    points[3].tag = make_list(1, 700, NULL);              /* reached through element 3 */
    points[9].tag = make_list(1, 900, NULL);

    holder.kind = 1;
    holder.v.t = t_malloc(sizeof(struct tree));
    memset(holder.v.t, 0, sizeof(struct tree));
    note(holder.v.t, "declared struct tree (via union)");

    anon = t_malloc(sizeof *anon);
    anon->id = 5; anon->first = make_list(1, 800, NULL);
    note(anon, "declared anon_t");

    opaque = t_malloc(40);
    memset(opaque, 0x11, 40);
    note(opaque, "unknown -");

    tls_list = make_list(3, 200, NULL);
    blob(1);

    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    while (!worker_ready) usleep(1000);

    struct node *local_list = make_list(2, 400, NULL);   /* a local of main */
    owner(local_list, "local_list in main (thread %d)", (int)gettid());
    int c = 50;
    hold(make_tree(1, &c));
    (void)local_list;
    return 0;
}
