// Demanglers: C++ and legacy Rust from libstdc++ (__cxa_demangle), Swift from the Swift runtime
// (swift_demangle), both already linked; Rust v0 (`_R`) from GNU libiberty (libiberty-dev, the
// demangler binutils' c++filt uses). Declared here to keep their headers out of Swift's view.
#include "cshim.h"
#include <stdlib.h>

extern char *__cxa_demangle(const char *mangled, char *out, size_t *len, int *status);
extern char *rust_demangle(const char *mangled, int options);
extern char *swift_demangle(const char *mangled, size_t len, char *out, size_t *outlen, unsigned flags);

char *hs_demangle_cxx(const char *mangled) {
    int status = 0;
    char *r = __cxa_demangle(mangled, 0, 0, &status);
    if (status != 0) { free(r); return 0; }
    return r;
}

char *hs_demangle_swift(const char *mangled, size_t len) {
    return swift_demangle(mangled, len, 0, 0, 0);
}

/* Without DMGL_VERBOSE: no crate disambiguators, as llvm-symbolizer and rustc-demangle print. */
char *hs_demangle_rust(const char *mangled) {
    return rust_demangle(mangled, 0);
}
