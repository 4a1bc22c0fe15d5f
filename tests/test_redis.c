#include <stdlib.h>
#include <stdio.h>
#include "conformance.h"
#include "harness.h"
static test_server srv;
int main(void)
{
    if (test_server_start(&srv, "redis", NULL) != 0) return 1;
    static conformance_config cfg = {.label = "redis", .excludes = 1, .cross_process = 1, .can_list = 1, .can_reset_all = 1, .expiry = 0.5, .slack = 0.3, .processes = 50};
    cfg.url = srv.url;
    int rc = conformance_run(conformance_suite(&cfg), NULL);
    test_server_stop(&srv);
    return rc;
}
