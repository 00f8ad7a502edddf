/* Not glibc malloc: the executable defines malloc/free/calloc/realloc itself (a bump allocator
 * over a static pool) and never forwards to glibc. heapscope must refuse with exit code 6.
 * Manifest (argv[1]): "pid N" and "end"; waits for stdin to close. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char pool[1 << 20];
static size_t used;
void *malloc(size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (used + n > sizeof pool) return 0;
    void *p = pool + used; used += n; return p;
}
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b) { void *p = malloc(a * b); if (p) memset(p, 0, a * b); return p; }
void *realloc(void *o, size_t n) { void *p = malloc(n); if (p && o) memcpy(p, o, n); return p; }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "pid %d\nend\n", (int)getpid());
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, buf, (size_t)n) != n) return 3;
    close(fd);
    char c;
    while (read(0, &c, 1) > 0) {}
    return 0;
}
