/*
 * tsan_race.c — canary (WILL_FAIL): two threads write one counter without
 * synchronisation.
 *
 * Without ThreadSanitizer this program exits 0; with it, the race is
 * reported ("WARNING: ThreadSanitizer: data race") and the process exits 66,
 * so a build that silently lost TSan turns this canary red. TSan sees the
 * race from the happens-before relation, not from timing: the two threads
 * need not actually overlap.
 */
#include <pthread.h>
#include <stdio.h>

/* volatile keeps every increment as a load and a store: no lock, no atomic. */
static volatile long counter;

static void *bump_counter(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        counter++;
    return NULL;
}

int main(void)
{
    pthread_t first, second;
    if (pthread_create(&first, NULL, bump_counter, NULL) != 0 ||
        pthread_create(&second, NULL, bump_counter, NULL) != 0)
        return 2;
    pthread_join(first, NULL);
    pthread_join(second, NULL);
    printf("counter = %ld\n", counter);
    return 0;
}
