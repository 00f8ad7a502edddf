/* Chunks whose type can be told from their contents: C++ objects with virtual methods (the first
 * word points into "vtable for X"), with multiple inheritance (the most derived class's vtable
 * comes first), and NUL-terminated strings. Noted in the manifest as "type ADDR NAME CONFIDENCE";
 * plain structs and arrays of numbers are noted "type ADDR - unknown". */
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
#include <new>
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
template <typename T> static T *make(const char *type) {
    T *p = new T();
    keep[nkeep++] = p;
    hs_note("type", p, type);
    return p;
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    for (int i = 0; i < 5; i++) make<shapes::Circle>("shapes::Circle");
    for (int i = 0; i < 3; i++) make<shapes::Box<int>>("shapes::Box<int>");
    for (int i = 0; i < 4; i++) make<Both>("Both");
    for (int i = 0; i < 2; i++) make<Named>("Named");
    for (int i = 0; i < 6; i++) {
        char *s = (char *)t_malloc(24);
        snprintf(s, 24, "string number %d", i);
        keep[nkeep++] = s;
        hs_note("type", s, "char[]");
    }
    for (int i = 0; i < 3; i++) { Plain *p = make<Plain>("-"); p->a = i; p->b = -1; p->c = 0x10000; }
    hs_write_manifest_and_wait(1);
    return 0;
}
