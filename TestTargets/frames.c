/* A known call chain for pasted backtraces: main -> outer -> middle -> inner, each call on a line
 * marked "CALL name" and followed by a statement of its own (so a return address belongs to the
 * next line: looked up as given, a caller frame lands one line late). argv[1] says what inner does:
 *   bt     glibc backtrace_symbols_fd of the chain to standard output, then "end";
 *   crash  reads one byte past an 8-byte chunk (AddressSanitizer and Valgrind report it);
 *   spin   computes for about a second (perf samples it);
 * then it prints "ready" and waits in read(2) until standard input closes (gdb attaches there). */
#define _GNU_SOURCE
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile int sink;

__attribute__((noinline)) void inner(const char *mode) {
    if (!strcmp(mode, "bt")) {
        void *pcs[16];
        int n = backtrace(pcs, 16); /* CALL backtrace */
        backtrace_symbols_fd(pcs, n, 1);
        printf("end\n");
    } else if (!strcmp(mode, "crash")) {
        char *p = malloc(8);
        volatile int past = 8;
        memset(p, 1, 8);
        sink = p[past]; /* CALL overflow */
        free(p);
    } else if (!strcmp(mode, "spin")) {
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do {
            for (int i = 0; i < 100000; i++) sink += i; /* CALL spin */
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 1000000000L);
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {} /* CALL read */
}

__attribute__((noinline)) void middle(const char *mode) {
    inner(mode); /* CALL inner */
    sink += 1;
}

__attribute__((noinline)) void outer(const char *mode) {
    middle(mode); /* CALL middle */
    sink += 2;
}

int main(int argc, char **argv) {
    outer(argc > 1 ? argv[1] : "bt"); /* CALL outer */
    sink += 3;
    return 0;
}
