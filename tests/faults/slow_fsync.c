/* Slow fsync, for the fault-injection suite (tests/faults/cluster.py): preloaded into a node's
 * process (LD_PRELOAD), it makes every fsync and fdatasync wait CQRS_FLOW_SLOW_FSYNC_MS
 * milliseconds (default 300) while the file named by CQRS_FLOW_SLOW_FSYNC exists, as a disk
 * that takes its time to make writes durable would. Nothing else changes. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void wait_while_slow(void) {
    const char *flag = getenv("CQRS_FLOW_SLOW_FSYNC");
    if (flag == NULL || access(flag, F_OK) != 0) return;
    const char *ms = getenv("CQRS_FLOW_SLOW_FSYNC_MS");
    long wait = ms ? atol(ms) : 300;
    struct timespec t = {wait / 1000, (wait % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

int fsync(int fd) {
    static int (*real)(int) = NULL;
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    wait_while_slow();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int) = NULL;
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    wait_while_slow();
    return real(fd);
}
