/* SPDX-License-Identifier: BSD-2-Clause */
/* memory:// passes the whole conformance suite (threads only: it is
 * in-process by design). */
#include <stdlib.h>

#include "conformance.h"

int main(void)
{
    static const conformance_config cfg = {
        .label = "memory",
        .url = "memory://conformance",
        .excludes = 1,
        .cross_process = 0,
        .can_list = 1,
        .can_reset_all = 1,
        .expiry = 0.3,
        .slack = 0.1,
        .processes = 0,
    };
    return conformance_run(conformance_suite(&cfg), NULL);
}
