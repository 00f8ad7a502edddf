/* A shared library with a TLS variable: TestTargets/typed.c calls lib_blob_make() in two threads;
 * the chunk each gets is typed through this library's TLS block (module id 2 or later). */
#include <stdlib.h>
struct blob { long serial; struct blob *self; };
__thread struct blob *lib_blob; const int lib_blob_line = __LINE__;
struct blob *lib_blob_make(long serial) {
    lib_blob = malloc(sizeof *lib_blob);
    lib_blob->serial = serial;
    lib_blob->self = lib_blob;
    return lib_blob;
}
