/* sqlite:// passes the whole conformance suite, across processes, on a
 * database file in a fresh temporary directory. */
#include <stdio.h>
#include <stdlib.h>

#include "conformance.h"
#include "harness.h"

static char dir[512];
static char url[1024];

int main(void)
{
    if (test_tmpdir(dir, sizeof dir)) {
        fprintf(stderr, "cannot make a temporary directory\n");
        return 1;
    }
    snprintf(url, sizeof url, "sqlite:///%s/locks.db", dir);
    static conformance_config cfg = {
        .label = "sqlite",
        .excludes = 1,
        .cross_process = 1,
        .can_list = 1,
        .can_reset_all = 1,
        .expiry = 0.5,
        .slack = 0.3,
        .processes = 16,
    };
    cfg.url = url;
    int rc = conformance_run(conformance_suite(&cfg), NULL);
    test_rmtree(dir);
    return rc;
}
