/* C++ chunks: objects with virtual methods (the first word points into "vtable for X"), with
 * multiple inheritance (the most derived class's vtable comes first), NUL-terminated strings,
 * a std::vector and a std::map of class pointers held by typed globals, and a base-class pointer
 * into the middle of an object. Noted in the manifest as "type ADDR CONFIDENCE NAME"; chunks only
 * a void * points to are "unknown -". */
// manifest.h is C: its system headers first (C++ declarations), then it with C linkage, so that
// its malloc replaces libc's for operator new too.
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
#include <map>
#include <new>
#include <vector>
extern "C" {
#include "manifest.h"
}

namespace shapes {
struct Shape { virtual ~Shape() {} virtual double area() const = 0; int id = 0; };
struct Circle : Shape { double r = 1; double area() const override { return 3.14159 * r * r; } };
template <typename T> struct Box : Shape { T w{}, h{}; double area() const override { return double(w) * double(h); } };
}
struct Named { virtual const char *name() const { return "named"; } long tag = 7; };
struct Both : shapes::Circle, Named { long extra = 3; };
struct Plain { long a, b, c; };

static void *keep[256];
static int nkeep;
std::vector<shapes::Shape *> by_area;     // its buffer: shapes::Shape*[n]; the objects by vtable
std::map<int, Named *> by_id;             // its nodes: declared through the tree's base pointers
Named *as_named;                          // points into the middle of a Both (interior: no vote)
static char labels[128][96];
static int nlabels;
static void note(void *p, const char *l) {
    snprintf(labels[nlabels], sizeof labels[0], "%s", l);
    hs_note("type", p, labels[nlabels++]);
}
template <typename T> static T *make(const char *type) {
    T *p = new T();
    keep[nkeep++] = p;
    hs_note("type", p, type);
    return p;
}

/* Two objects nothing points to (definitely lost), made in a frame that is then overwritten. */
__attribute__((noinline)) static void leak_two() {
    for (int i = 0; i < 2; i++) note(new shapes::Circle(), "vtable shapes::Circle");
}
__attribute__((noinline)) static void scrub_stack() {
    volatile char junk[4096];
    for (unsigned i = 0; i < sizeof junk; i++) junk[i] = 0;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    for (int i = 0; i < 5; i++) make<shapes::Circle>("vtable shapes::Circle");
    for (int i = 0; i < 3; i++) make<shapes::Box<int>>("vtable shapes::Box<int>");
    for (int i = 0; i < 4; i++) make<Both>("vtable Both");
    for (int i = 0; i < 2; i++) make<Named>("vtable Named");
    for (int i = 0; i < 6; i++) {
        char *s = (char *)t_malloc(24);
        snprintf(s, 24, "string number %d", i);
        keep[nkeep++] = s;
        hs_note("type", s, "heuristic char[]");
    }
    for (int i = 0; i < 3; i++) { Plain *p = make<Plain>("unknown -"); p->a = i; p->b = -1; p->c = 0x10000; }
    // A vector of base-class pointers (reserved once: one buffer), a map of class pointers.
    by_area.reserve(5);
    for (int i = 0; i < 5; i++) {
        shapes::Circle *c = new shapes::Circle();
        note(c, "vtable shapes::Circle");
        by_area.push_back(c);
    }
    char l[96];
    snprintf(l, sizeof l, "declared shapes::Shape*[%zu]", malloc_usable_size(by_area.data()) / sizeof(void *));
    note(by_area.data(), l);
    for (int i = 0; i < 4; i++) {
        Named *n = new Named();
        note(n, "vtable Named");
        by_id[i] = n;
    }
    for (auto it = by_id.begin(); it != by_id.end(); ++it) note(it._M_node, "declared std::_Rb_tree_node<std::pair<int const, Named*> >");
    as_named = new Both();
    note(dynamic_cast<Both *>(as_named), "vtable Both");
    leak_two();
    scrub_stack();
    hs_write_manifest_and_wait(1);
    return 0;
}
