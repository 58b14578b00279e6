#include "util/cutils.h"

#include <stdint.h>

bool buffer_is_zero(const void *buf, size_t len)
{
    const uint64_t *w = buf;

    /* Eight words per step: the OR chain keeps the loads independent. */
    for (size_t i = 0; i < len / 8; i += 8) {
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] |
            w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7]) {
            return false;
        }
    }
    return true;
}
