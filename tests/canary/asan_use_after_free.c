/*
 * asan_use_after_free.c — canary (WILL_FAIL): reads a freed block.
 *
 * Without AddressSanitizer this program exits 0; with it, the read is
 * reported ("ERROR: AddressSanitizer: heap-use-after-free") and the process
 * exits non-zero, so a build that silently lost ASan turns this canary red.
 */
#include <stdio.h>
#include <stdlib.h>

/* Volatile so the optimiser keeps the freed pointer and the read. */
static int *volatile block;

int main(void)
{
    block = malloc(16 * sizeof *block);
    if (block == NULL)
        return 2;
    block[3] = 42;
    free(block);
    int value = block[3];
    printf("read %d from a freed block\n", value);
    return 0;
}
