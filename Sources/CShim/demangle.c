// Demanglers live in the runtimes heapscope already links: libstdc++ (__cxa_demangle) and the
// Swift runtime (swift_demangle). Declared here because neither has a C header to import.
#include "cshim.h"
#include <stdlib.h>

extern char *__cxa_demangle(const char *mangled, char *out, size_t *len, int *status);
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
