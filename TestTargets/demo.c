/* The `make demo` target: a small "service" with a few threads, a cache of records, a leak, and
 * some freed memory. Prints its pid and waits for stdin to close. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct record { struct record *next; char name[40]; double values[8]; };
static struct record *cache;
static pthread_barrier_t b;

static void *worker(void *arg) {
    long id = (long)arg;
    for (int i = 0; i < 500; i++) {
        struct record *r = malloc(sizeof *r);
        snprintf(r->name, sizeof r->name, "worker-%ld-%d", id, i);
        if (i % 3) free(r); else { (void)r; }   /* every third record leaks */
    }
    char *buf = malloc(1 << 20); memset(buf, 1, 4096);
    pthread_barrier_wait(&b);
    pthread_barrier_wait(&b);
    free(buf);
    return 0;
}

int main(void) {
    pthread_barrier_init(&b, 0, 4);
    for (int i = 0; i < 2000; i++) {
        struct record *r = calloc(1, sizeof *r);
        snprintf(r->name, sizeof r->name, "record-%d", i);
        r->next = cache; cache = r;
    }
    for (int i = 0; i < 100; i++) free(malloc(64 + i * 8));
    pthread_t t[3];
    for (long i = 0; i < 3; i++) pthread_create(&t[i], 0, worker, (void *)i);
    pthread_barrier_wait(&b);
    printf("%d\n", getpid());
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {}
    pthread_barrier_wait(&b);
    for (int i = 0; i < 3; i++) pthread_join(t[i], 0);
    return 0;
}
