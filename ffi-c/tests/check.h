/* What the C tests share: a CHECK that counts failures instead of stopping, and a helper for
 * borrowed strings. */

#ifndef ARBITER_TEST_CHECK_H
#define ARBITER_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

#include "arbiter.h"

static int failures = 0;

#define CHECK(cond)                                                                        \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
      failures++;                                                                          \
    }                                                                                      \
  } while (0)

static arbiter_str str(const char *s) {
  arbiter_str out = {s, s ? strlen(s) : 0};
  return out;
}

#endif
