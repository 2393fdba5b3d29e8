/*
 * hello.c — the README's example: publish and handle one message on the
 * memory transport. Build it against an installed eventbus with the
 * Makefile beside it (pkg-config), or: cc hello.c -leventbus
 */
#include <eventbus/eventbus.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_int handled;

static eb_result on_msg(const eb_msg *m, void *opaque) {
    size_t len;
    const char *text = eb_msg_payload(m, &len);
    printf("%s: %.*s\n", eb_msg_topic(m), (int)len, text);
    atomic_store(&handled, 1);
    return EB_ACK;
}

int main(void) {
    char err[512];
    eb_config *cfg = eb_config_new();                  /* transport = memory */
    eb_bus *bus;
    if (eb_bus_open(cfg, &bus, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); return 1; }
    eb_sub *sub;
    eb_subscribe(bus, "greetings", "app", on_msg, NULL, NULL, &sub, err, sizeof err);
    eb_sub_wait_ready(sub, 5000);
    eb_outgoing msg = {.topic = "greetings", .key = "k", .key_len = 1,
                       .payload = "hello", .payload_len = 5};
    eb_publish(bus, &msg, NULL, NULL);
    for (int i = 0; i < 500 && !atomic_load(&handled); i++)
        usleep(10000);                                 /* an app would keep running */
    int rc = eb_bus_close(bus, 5000);                  /* drains what is queued */
    eb_bus_destroy(bus);
    eb_config_destroy(cfg);
    return rc == 0 ? 0 : 1;
}
