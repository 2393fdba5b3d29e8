/*
 * asan_leak_criterion.c — canary (WILL_FAIL): a criterion test that leaks.
 *
 * Criterion runs each test in a child process and reports this test as
 * passing with exit status 0: LeakSanitizer's report, printed by the child
 * at its exit, is the only sign of the leak. The test fails only because
 * ctest's FAIL_REGULAR_EXPRESSION (cmake/testing.cmake) matches that
 * report, so if LeakSanitizer stops running in criterion's children, or the
 * regular expression stops matching, this canary turns red.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

/* A volatile store the optimiser cannot drop; cleared so no pointer to the
 * block survives and the leak is "direct". */
static void *volatile leaked;

static __attribute__((noinline)) void lose_a_block(void)
{
    leaked = malloc(4096);
    memset(leaked, 0x5a, 4096);
    leaked = NULL;
}

Test(canary, leaks_a_block_in_a_criterion_child)
{
    lose_a_block();
    cr_assert_null(leaked);
}
