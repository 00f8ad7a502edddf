/* A program that never calls malloc: writes "pid N" and "end" to its manifest with write(2) and
 * waits for stdin to close. heapscope must say malloc is not initialised (exit 7). */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

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
