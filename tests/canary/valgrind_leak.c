/*
 * valgrind_leak.c — canary (WILL_FAIL): leaks a block, run under valgrind
 * with the options of every valgrind test (cmake/valgrind.cmake).
 *
 * The program itself exits 0 when nothing checks it. Under valgrind the
 * block is "definitely lost" and valgrind exits 99 (--error-exitcode), so
 * options that stopped counting leaks as errors turn this canary red.
 *
 * usage: valgrind_leak [child]
 * With "child" the leak happens in a forked child, whose status the parent
 * passes on as a runner of forked cases does (the conformance runner): it
 * proves a child's valgrind still checks and fails on a leak.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A volatile store the optimiser cannot drop; cleared so no pointer to the
 * block survives. */
static void *volatile leaked;

static __attribute__((noinline)) void lose_a_block(void)
{
    leaked = malloc(4096);
    memset(leaked, 0x5a, 4096);
    leaked = NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "child") != 0) {
        lose_a_block();
        return 0;
    }
    pid_t child = fork();
    if (child < 0)
        return 2;
    if (child == 0) {
        lose_a_block();
        exit(0);
    }
    int status;
    if (waitpid(child, &status, 0) != child)
        return 2;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}
