/* A panic inside Arbiter, injected through the test-only hook (a library built with the
 * `fault-injection` feature), as C sees it: every way of deciding answers a deny carrying an
 * `internal` error, a reload fails with ARBITER_RESULT_INTERNAL and keeps the old bundle, and the
 * engine decides normally once disarmed. Under AddressSanitizer (`make fault-test`). */

#define ARBITER_FAULT_INJECTION
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbiter.h"
#include "check.h"

static const char *POLICIES = "@id(\"all\") permit (principal, action, resource);";
static const char *REQUEST =
    "{\"principal\": {\"type\": \"User\", \"id\": \"ann\"},"
    " \"action\": {\"type\": \"Action\", \"id\": \"read\"},"
    " \"resource\": {\"type\": \"Doc\", \"id\": \"d1\"}}";

/* The decision JSON of REQUEST (caller frees), or NULL when the call itself failed. */
static char *decide_json(const arbiter_engine *engine) {
  char *decision = NULL;
  arbiter_error *err = NULL;
  uint32_t rc = arbiter_engine_authorize_json(engine, REQUEST, strlen(REQUEST), &decision, &err);
  CHECK(rc == ARBITER_RESULT_OK && err == NULL);
  arbiter_error_free(err);
  return decision;
}

static void check_internal_deny_view(const arbiter_decision *decision) {
  arbiter_decision_view view = arbiter_decision_read(decision);
  CHECK(!view.allowed);
  CHECK(view.reason_count == 0);
  CHECK(view.error_count == 1);
  if (view.error_count == 1) {
    CHECK(strcmp(view.errors[0].kind, "internal") == 0);
    CHECK(view.errors[0].policy == NULL);
    CHECK(strstr(view.errors[0].message, "fault injected while deciding") != NULL);
  }
}

int main(void) {
  arbiter_bundle_file file = {str("p.cedar"), str(POLICIES)};
  arbiter_engine *engine = NULL;
  CHECK(arbiter_engine_new_from_files(&file, 1, &engine, NULL) == ARBITER_RESULT_OK);
  if (engine == NULL) return 1;

  char *json = decide_json(engine);
  CHECK(json != NULL && strstr(json, "\"decision\":\"allow\"") != NULL);
  arbiter_string_free(json);

  arbiter_engine_inject_panics(engine, true);

  /* The JSON path: a deny with an internal error, not a failed call. */
  json = decide_json(engine);
  CHECK(json != NULL && strstr(json, "\"decision\":\"deny\"") != NULL);
  CHECK(json != NULL && strstr(json, "\"kind\":\"internal\"") != NULL);
  arbiter_string_free(json);

  /* The fast path. */
  arbiter_request request = {
      .principal = {str("User"), str("ann")},
      .action = {str("Action"), str("read")},
      .resource = {str("Doc"), str("d1")},
  };
  arbiter_decision *decision = NULL;
  arbiter_error *err = NULL;
  CHECK(arbiter_engine_authorize(engine, &request, &decision, &err) == ARBITER_RESULT_OK);
  CHECK(err == NULL);
  check_internal_deny_view(decision);
  arbiter_decision_free(decision);

  /* A batch: every element denies on its own. */
  char batch[1024];
  snprintf(batch, sizeof batch, "[%s,%s]", REQUEST, REQUEST);
  char *answers = NULL;
  CHECK(arbiter_engine_authorize_json_batch(engine, batch, strlen(batch), &answers, NULL) == ARBITER_RESULT_OK);
  CHECK(answers != NULL && strstr(answers, "\"decision\":\"allow\"") == NULL);
  const char *first = answers ? strstr(answers, "\"internal\"") : NULL;
  CHECK(first != NULL && strstr(first + 1, "\"internal\"") != NULL);
  arbiter_string_free(answers);

  /* A reload panics: ARBITER_RESULT_INTERNAL, and the old bundle stays. */
  arbiter_bundle_file forbid = {str("p.cedar"), str("forbid (principal, action, resource);")};
  CHECK(arbiter_engine_reload_from_files(engine, &forbid, 1, &err) == ARBITER_RESULT_INTERNAL);
  CHECK(err != NULL && arbiter_error_code(err) == ARBITER_RESULT_INTERNAL);
  CHECK(err != NULL && strcmp(arbiter_error_kind(err), "internal") == 0);
  CHECK(err != NULL && strstr(arbiter_error_message(err), "fault injected while reloading") != NULL);
  arbiter_error_free(err);

  arbiter_engine_inject_panics(engine, false);
  json = decide_json(engine);
  CHECK(json != NULL && strstr(json, "\"decision\":\"allow\"") != NULL && strstr(json, "\"all\"") != NULL);
  arbiter_string_free(json);

  arbiter_engine_inject_panics(NULL, true); /* does nothing */
  arbiter_engine_free(engine);
  if (failures) {
    fprintf(stderr, "%d checks failed\n", failures);
    return 1;
  }
  printf("test_faults: ok\n");
  return 0;
}
