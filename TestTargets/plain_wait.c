/* A minimal program for "which allocator?" tests: allocates a little, writes "pid N" and "end" to
 * argv[1], waits for stdin to close. Built with glibc (run with LD_PRELOAD=libjemalloc) and with
 * musl (musl-gcc -static). Built with -DNO_MALLOC it never calls malloc (heapscope: exit 7). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
#ifndef NO_MALLOC
    void *volatile p = malloc(100);
    (void)p;
#endif
    char buf[64];
    int n = snprintf(buf, sizeof buf, "pid %d\nend\n", (int)getpid());
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, buf, (size_t)n) != n) return 3;
    close(fd);
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}
