/* The C ABI from C: every function, NULL and invalid UTF-8 inputs, error paths, and many
 * threads deciding with one engine while another thread reloads it. Built against the
 * checked-in header and both libraries, under AddressSanitizer (`make c-test`). Long: every
 * exported function, from C.
 *
 * Usage: test_ffi <bundle dir of the default GitLab bundle> */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arbiter.h"
#include "check.h"

static const char *ALLOW_REQUEST =
    "{\"principal\": {\"type\": \"Gitlab::User\", \"id\": \"alice\"},"
    " \"action\": {\"type\": \"Gitlab::Action\", \"id\": \"push_code\"},"
    " \"resource\": {\"type\": \"Gitlab::Project\", \"id\": \"10\"},"
    " \"context\": {\"admin_mode\": false}}";

static const char *DENY_REQUEST =
    "{\"principal\": {\"type\": \"Gitlab::User\", \"id\": \"bob\"},"
    " \"action\": {\"type\": \"Gitlab::Action\", \"id\": \"push_code\"},"
    " \"resource\": {\"type\": \"Gitlab::Project\", \"id\": \"10\"},"
    " \"context\": {\"admin_mode\": false}}";

/* Decides `request` with `engine`; returns the decision JSON (caller frees) or NULL. */
static char *decide(const arbiter_engine *engine, const char *request) {
  char *decision = NULL;
  arbiter_error *err = NULL;
  uint32_t rc = arbiter_engine_authorize_json(engine, request, strlen(request), &decision, &err);
  if (rc != ARBITER_RESULT_OK) {
    fprintf(stderr, "authorize failed: %u %s\n", rc, arbiter_error_message(err));
    arbiter_error_free(err);
    return NULL;
  }
  CHECK(err == NULL);
  return decision;
}

static void test_version(void) {
  const char *v = arbiter_version();
  CHECK(v != NULL && strlen(v) > 0 && strchr(v, '.') != NULL);
}

/* Every result code of the header names its kind, and no other code has one: a kind added to
   core's error table and missing from this list fails here. */
static void test_result_kinds(void) {
  static const struct {
    uint32_t code;
    const char *kind;
  } kinds[] = {
      {ARBITER_RESULT_NULL_ARGUMENT, "null_argument"},
      {ARBITER_RESULT_INVALID_UTF8, "invalid_utf8"},
      {ARBITER_RESULT_INVALID_ARGUMENT, "invalid_argument"},
      {ARBITER_RESULT_IO, "io"},
      {ARBITER_RESULT_MANIFEST, "manifest"},
      {ARBITER_RESULT_POLICY_PARSE, "policy_parse"},
      {ARBITER_RESULT_POLICY_VALIDATION, "policy_validation"},
      {ARBITER_RESULT_SCHEMA, "schema"},
      {ARBITER_RESULT_ENTITIES, "entities"},
      {ARBITER_RESULT_LINKS, "links"},
      {ARBITER_RESULT_TOKENS, "tokens"},
      {ARBITER_RESULT_SIGNATURE, "signature"},
      {ARBITER_RESULT_SQL_MAPPING, "sql_mapping"},
      {ARBITER_RESULT_ABILITIES, "abilities"},
      {ARBITER_RESULT_HTTP, "http"},
      {ARBITER_RESULT_MALFORMED_REQUEST, "malformed_request"},
      {ARBITER_RESULT_INVALID_REQUEST, "invalid_request"},
      {ARBITER_RESULT_INVALID_CONTEXT, "invalid_context"},
      {ARBITER_RESULT_INVALID_ENTITIES, "invalid_entities"},
      {ARBITER_RESULT_UNTRANSLATABLE, "untranslatable"},
      {ARBITER_RESULT_INTERNAL, "internal"},
  };
  size_t listed = sizeof kinds / sizeof kinds[0];
  for (size_t i = 0; i < listed; i++) {
    const char *kind = arbiter_result_kind(kinds[i].code);
    CHECK(kind != NULL && strcmp(kind, kinds[i].kind) == 0);
  }
  size_t known = 0;
  for (uint32_t code = 0; code < 10000; code++) {
    known += arbiter_result_kind(code) != NULL;
  }
  CHECK(known == listed);
  CHECK(arbiter_result_kind(ARBITER_RESULT_OK) == NULL);
}

static void test_engine_creation_errors(void) {
  arbiter_engine *engine = NULL;
  arbiter_error *err = NULL;

  CHECK(arbiter_engine_new_from_bundle_dir(NULL, &engine, &err) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(engine == NULL);
  CHECK(err != NULL && arbiter_error_code(err) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(strcmp(arbiter_error_kind(err), "null_argument") == 0);
  arbiter_error_free(err);
  err = NULL;

  /* Invalid UTF-8 in a path. */
  CHECK(arbiter_engine_new_from_bundle_dir("/tmp/\xff\xfe", &engine, &err) == ARBITER_RESULT_INVALID_UTF8);
  CHECK(engine == NULL);
  arbiter_error_free(err);
  err = NULL;

  /* A missing directory names itself; err_out may be NULL. */
  CHECK(arbiter_engine_new_from_bundle_dir("/nonexistent/bundle", &engine, &err) == ARBITER_RESULT_IO);
  CHECK(engine == NULL);
  CHECK(err != NULL && strstr(arbiter_error_message(err), "/nonexistent/bundle") != NULL);
  CHECK(strcmp(arbiter_error_kind(err), "io") == 0);
  arbiter_error_free(err);
  CHECK(arbiter_engine_new_from_bundle_dir("/nonexistent/bundle", &engine, NULL) == ARBITER_RESULT_IO);

  /* Nowhere to put the engine. */
  CHECK(arbiter_engine_new_gitlab_default(NULL, NULL) == ARBITER_RESULT_NULL_ARGUMENT);

  /* A policy that does not parse, in memory: file and line in the message. */
  arbiter_bundle_file bad[] = {{str("p.cedar"), str("permit (principal, action, resource);\npermit (principal")}};
  err = NULL;
  CHECK(arbiter_engine_new_from_files(bad, 1, &engine, &err) == ARBITER_RESULT_POLICY_PARSE);
  CHECK(err != NULL && strstr(arbiter_error_message(err), "p.cedar:2:") != NULL);
  arbiter_error_free(err);
  CHECK(arbiter_engine_new_from_files(NULL, 1, &engine, NULL) == ARBITER_RESULT_NULL_ARGUMENT);

  /* NULL accessors and frees are harmless. */
  CHECK(arbiter_error_code(NULL) == ARBITER_RESULT_OK);
  CHECK(strcmp(arbiter_error_message(NULL), "") == 0);
  CHECK(strcmp(arbiter_error_kind(NULL), "") == 0);
  arbiter_error_free(NULL);
  arbiter_engine_free(NULL);
  arbiter_string_free(NULL);
  arbiter_decision_free(NULL);
}

static void test_authorize_json(const arbiter_engine *engine) {
  char *decision = decide(engine, ALLOW_REQUEST);
  CHECK(decision != NULL && strcmp(decision, "{\"decision\":\"allow\",\"reasons\":[\"role-developer\"],\"errors\":[]}") == 0);
  arbiter_string_free(decision);

  decision = decide(engine, DENY_REQUEST);
  CHECK(decision != NULL && strstr(decision, "\"reasons\":[\"user-blocked\"]") != NULL);
  arbiter_string_free(decision);

  /* Errors of the call: bad JSON, unknown action, invalid UTF-8, NULLs. Outputs untouched. */
  char *untouched = (char *)"untouched";
  char *out = untouched;
  arbiter_error *err = NULL;
  CHECK(arbiter_engine_authorize_json(engine, "{oops", 5, &out, &err) == ARBITER_RESULT_MALFORMED_REQUEST);
  CHECK(out == untouched);
  CHECK(strcmp(arbiter_error_kind(err), "malformed_request") == 0);
  arbiter_error_free(err);

  const char *unknown_action =
      "{\"principal\": {\"type\": \"Gitlab::User\", \"id\": \"alice\"},"
      " \"action\": {\"type\": \"Gitlab::Action\", \"id\": \"fly\"},"
      " \"resource\": {\"type\": \"Gitlab::Project\", \"id\": \"3\"}}";
  err = NULL;
  CHECK(arbiter_engine_authorize_json(engine, unknown_action, strlen(unknown_action), &out, &err) == ARBITER_RESULT_INVALID_REQUEST);
  CHECK(out == untouched);
  arbiter_error_free(err);

  const char bad_utf8[] = "{\"principal\": \"\xc3\x28\"}";
  CHECK(arbiter_engine_authorize_json(engine, bad_utf8, sizeof bad_utf8 - 1, &out, NULL) == ARBITER_RESULT_INVALID_UTF8);
  CHECK(arbiter_engine_authorize_json(engine, NULL, 0, &out, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(arbiter_engine_authorize_json(NULL, ALLOW_REQUEST, strlen(ALLOW_REQUEST), &out, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(arbiter_engine_authorize_json(engine, ALLOW_REQUEST, strlen(ALLOW_REQUEST), NULL, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(out == untouched);

  /* Not NUL-terminated: only request_len bytes are read. */
  size_t len = strlen(ALLOW_REQUEST);
  char *copy = malloc(len);
  memcpy(copy, ALLOW_REQUEST, len);
  CHECK(arbiter_engine_authorize_json(engine, copy, len, &out, NULL) == ARBITER_RESULT_OK);
  CHECK(strstr(out, "\"allow\"") != NULL);
  arbiter_string_free(out);
  free(copy);
}

static void test_batch(const arbiter_engine *engine) {
  char batch[2048];
  snprintf(batch, sizeof batch, "[%s, {\"nonsense\": 1}, %s]", ALLOW_REQUEST, DENY_REQUEST);
  char *answers = NULL;
  CHECK(arbiter_engine_authorize_json_batch(engine, batch, strlen(batch), &answers, NULL) == ARBITER_RESULT_OK);
  CHECK(answers != NULL && strstr(answers, "\"allow\"") != NULL && strstr(answers, "\"malformed_request\"") != NULL &&
        strstr(answers, "user-blocked") != NULL);
  arbiter_string_free(answers);
  arbiter_error *err = NULL;
  CHECK(arbiter_engine_authorize_json_batch(engine, "{}", 2, &answers, &err) == ARBITER_RESULT_MALFORMED_REQUEST);
  arbiter_error_free(err);
}

static arbiter_request typed_request(const char *user, const char *action, const char *context) {
  arbiter_request r;
  memset(&r, 0, sizeof r);
  r.principal.type_name = str("Gitlab::User");
  r.principal.id = str(user);
  r.action.type_name = str("Gitlab::Action");
  r.action.id = str(action);
  r.resource.type_name = str("Gitlab::Project");
  r.resource.id = str("10"); /* alice is a Developer of project 10 (entities.json) */
  r.context_json = str(context);
  return r;
}

static void test_fast_path(const arbiter_engine *engine) {
  arbiter_request r = typed_request("alice", "push_code", "{\"admin_mode\": false}");
  arbiter_decision *d = NULL;
  CHECK(arbiter_engine_authorize(engine, &r, &d, NULL) == ARBITER_RESULT_OK);
  arbiter_decision_view view = arbiter_decision_read(d);
  CHECK(view.allowed && view.reason_count == 1 && strcmp(view.reasons[0], "role-developer") == 0);
  CHECK(view.error_count == 0 && view.errors == NULL);
  arbiter_decision_free(d);

  /* The decision packed into the caller's buffer in one call; written only on success. */
  uint8_t buf[256];
  arbiter_packed_decision packed = {NULL, 0};
  CHECK(arbiter_engine_authorize_packed(engine, &r, buf, sizeof buf, &packed, NULL) == ARBITER_RESULT_OK);
  static const char role[] = "role-developer";
  uint32_t words[4];
  CHECK(packed.data == buf && packed.len == 4 * sizeof(uint32_t) + strlen(role));
  memcpy(words, packed.data, sizeof words);
  CHECK(words[0] == 1 && words[1] == 1 && words[2] == 0 && words[3] == strlen(role));
  CHECK(memcmp(packed.data + sizeof words, role, strlen(role)) == 0);
  /* Too small a buffer: the same bytes in Arbiter's memory, freed by the caller. */
  arbiter_packed_decision big = {NULL, 0};
  CHECK(arbiter_engine_authorize_packed(engine, &r, buf, 8, &big, NULL) == ARBITER_RESULT_OK);
  CHECK(big.data != buf && big.len == packed.len && memcmp(big.data, buf, big.len) == 0);
  arbiter_packed_decision_free(big);
  arbiter_request unknown_action = typed_request("alice", "fly", "{}");
  arbiter_error *err = NULL;
  packed = (arbiter_packed_decision){NULL, 0};
  CHECK(arbiter_engine_authorize_packed(engine, &unknown_action, buf, sizeof buf, &packed, &err) ==
        ARBITER_RESULT_INVALID_REQUEST);
  CHECK(packed.data == NULL && err != NULL);
  arbiter_error_free(err);
  CHECK(arbiter_engine_authorize_packed(engine, &r, buf, sizeof buf, NULL, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(arbiter_engine_authorize_packed(engine, &r, NULL, 8, &packed, NULL) == ARBITER_RESULT_NULL_ARGUMENT);

  /* Per-request entities: alice, blocked for this request only. */
  arbiter_request blocked = typed_request("alice", "push_code", "{\"admin_mode\": false}");
  blocked.entities_json = str(
      "[{\"uid\": {\"type\": \"Gitlab::User\", \"id\": \"alice\"}, \"attrs\": {\"state\": \"blocked\", \"admin\": false,"
      " \"auditor\": false, \"external\": false, \"user_type\": \"human\"}, \"parents\": []}]");
  d = NULL;
  CHECK(arbiter_engine_authorize(engine, &blocked, &d, NULL) == ARBITER_RESULT_OK);
  view = arbiter_decision_read(d);
  CHECK(!view.allowed && view.reason_count == 1 && strcmp(view.reasons[0], "user-blocked") == 0);
  arbiter_decision_free(d);

  /* Entities the schema refuses are an error of the call, never a skipped forbid: an attribute of
     the wrong type (`archived: "true"` made the fail-closed `archived-read-only` forbid error out,
     so the push was allowed), an action entity that regroups actions, and a key given twice. */
  arbiter_request archived = typed_request("alice", "push_code", "{\"admin_mode\": false}");
  archived.entities_json = str(
      "[{\"uid\": {\"type\": \"Gitlab::Project\", \"id\": \"10\"}, \"parents\": [{\"type\": \"Gitlab::Group\","
      " \"id\": \"acme/platform\"}], \"attrs\": {\"visibility\": \"private\", \"archived\": \"true\", \"job_token_allowlist\": [],"
      " \"features\": {\"repository\": \"enabled\", \"issues\": \"enabled\", \"merge_requests\": \"enabled\","
      " \"builds\": \"enabled\", \"container_registry\": \"enabled\", \"package_registry\": \"enabled\"}}}]");
  arbiter_request regroup = typed_request("alice", "remove_project", "{\"admin_mode\": false}");
  regroup.principal.type_name = str("Gitlab::CiJob");
  regroup.principal.id = str("100");
  regroup.entities_json = str(
      "[{\"uid\": {\"type\": \"Gitlab::Action\", \"id\": \"remove_project\"}, \"attrs\": {},"
      " \"parents\": [{\"type\": \"Gitlab::Action\", \"id\": \"job_token\"}]}]");
  arbiter_request twice = typed_request("eve", "push_code", "{\"admin_mode\": false, \"admin_mode\": true}");
  const arbiter_request *refused[] = {&archived, &regroup, &twice};
  const uint32_t refused_codes[] = {ARBITER_RESULT_INVALID_ENTITIES, ARBITER_RESULT_INVALID_ENTITIES,
                                    ARBITER_RESULT_INVALID_CONTEXT};
  for (size_t i = 0; i < 3; i++) {
    d = NULL;
    CHECK(arbiter_engine_authorize(engine, refused[i], &d, NULL) == refused_codes[i]);
    CHECK(d == NULL);
  }

  /* A token nobody configured: a deny with an error, not a failed call. */
  arbiter_request token = typed_request("alice", "push_code", "{\"admin_mode\": false}");
  token.principal.type_name.ptr = NULL;
  token.token = str("not-a-token");
  d = NULL;
  CHECK(arbiter_engine_authorize(engine, &token, &d, NULL) == ARBITER_RESULT_OK);
  view = arbiter_decision_read(d);
  CHECK(!view.allowed && view.error_count == 1 && view.errors[0].policy == NULL);
  CHECK(strcmp(view.errors[0].kind, "unknown_issuer") == 0 && strlen(view.errors[0].message) > 0);
  arbiter_decision_free(d);

  /* Errors of the call. */
  arbiter_request bad_context = typed_request("alice", "push_code", "{\"admin_mode\": \"high\"}");
  err = NULL;
  d = NULL;
  CHECK(arbiter_engine_authorize(engine, &bad_context, &d, &err) == ARBITER_RESULT_INVALID_CONTEXT);
  CHECK(d == NULL);
  arbiter_error_free(err);
  arbiter_request bad_type = typed_request("alice", "push_code", NULL);
  bad_type.resource.type_name = str("Gitlab::");
  CHECK(arbiter_engine_authorize(engine, &bad_type, &d, NULL) == ARBITER_RESULT_MALFORMED_REQUEST);
  arbiter_request bad_utf8 = typed_request("\xff", "push_code", NULL);
  CHECK(arbiter_engine_authorize(engine, &bad_utf8, &d, NULL) == ARBITER_RESULT_INVALID_UTF8);
  arbiter_request no_action = typed_request("alice", "push_code", NULL);
  no_action.action.type_name.ptr = NULL;
  CHECK(arbiter_engine_authorize(engine, &no_action, &d, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(arbiter_engine_authorize(engine, NULL, &d, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(arbiter_engine_authorize(engine, &r, NULL, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(d == NULL);

  /* NULL decisions read as a deny with nothing in it. */
  arbiter_decision_view none = arbiter_decision_read(NULL);
  CHECK(!none.allowed && none.reason_count == 0 && none.reasons == NULL);
  CHECK(none.error_count == 0 && none.errors == NULL);
}

static void test_verify_token(const arbiter_engine *engine) {
  char *info = NULL;
  const char *token = "eyJhbGciOiJub25lIn0.e30.";
  CHECK(arbiter_engine_verify_token(engine, token, strlen(token), &info, NULL) == ARBITER_RESULT_OK);
  CHECK(info != NULL && strstr(info, "\"valid\":false") != NULL);
  arbiter_string_free(info);
  CHECK(arbiter_engine_verify_token(engine, NULL, 0, &info, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
}

/* Two in-memory bundles that answer the same request with different reasons. */
static arbiter_bundle_file bundle_a[1];
static arbiter_bundle_file bundle_b[1];

static void make_bundles(void) {
  bundle_a[0] = (arbiter_bundle_file){str("p.cedar"), str("@id(\"a\") permit (principal, action, resource);")};
  bundle_b[0] = (arbiter_bundle_file){str("p.cedar"), str("@id(\"b\") permit (principal, action, resource);")};
}
static const char *ANY_REQUEST =
    "{\"principal\": {\"type\": \"U\", \"id\": \"1\"}, \"action\": {\"type\": \"Action\", \"id\": \"x\"},"
    " \"resource\": {\"type\": \"R\", \"id\": \"1\"}}";

struct reader {
  const arbiter_engine *engine;
  volatile int *done;
  long decisions;
  long bad;
};

static void *read_loop(void *arg) {
  struct reader *r = arg;
  while (!*r->done) {
    char *d = decide(r->engine, ANY_REQUEST);
    if (d == NULL || (strcmp(d, "{\"decision\":\"allow\",\"reasons\":[\"a\"],\"errors\":[]}") != 0 &&
                      strcmp(d, "{\"decision\":\"allow\",\"reasons\":[\"b\"],\"errors\":[]}") != 0)) {
      r->bad++;
    }
    arbiter_string_free(d);
    r->decisions++;
  }
  return NULL;
}

static void test_threads_and_reload(void) {
  arbiter_engine *engine = NULL;
  CHECK(arbiter_engine_new_from_files(bundle_a, 1, &engine, NULL) == ARBITER_RESULT_OK);
  enum { THREADS = 8 };
  pthread_t threads[THREADS];
  struct reader readers[THREADS];
  volatile int done = 0;
  for (int i = 0; i < THREADS; i++) {
    readers[i] = (struct reader){engine, &done, 0, 0};
    pthread_create(&threads[i], NULL, read_loop, &readers[i]);
  }
  arbiter_bundle_file broken[] = {{str("p.cedar"), str("permit (")}};
  for (int i = 0; i < 300; i++) {
    CHECK(arbiter_engine_reload_from_files(engine, i % 2 ? bundle_a : bundle_b, 1, NULL) == ARBITER_RESULT_OK);
    if (i % 25 == 0) {
      arbiter_error *err = NULL;
      CHECK(arbiter_engine_reload_from_files(engine, broken, 1, &err) == ARBITER_RESULT_POLICY_PARSE);
      arbiter_error_free(err);
    }
  }
  done = 1;
  long total = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(threads[i], NULL);
    CHECK(readers[i].bad == 0);
    total += readers[i].decisions;
  }
  CHECK(total > 0);
  arbiter_engine_free(engine);
}

static void test_reload_from_dir(const char *bundle_dir) {
  arbiter_engine *engine = NULL;
  CHECK(arbiter_engine_new_from_files(bundle_a, 1, &engine, NULL) == ARBITER_RESULT_OK);
  arbiter_error *err = NULL;
  CHECK(arbiter_engine_reload_from_dir(engine, "/nonexistent", &err) == ARBITER_RESULT_IO);
  arbiter_error_free(err);
  char *d = decide(engine, ANY_REQUEST);
  CHECK(d != NULL && strstr(d, "\"a\"") != NULL);
  arbiter_string_free(d);
  CHECK(arbiter_engine_reload_from_dir(engine, bundle_dir, NULL) == ARBITER_RESULT_OK);
  d = decide(engine, ALLOW_REQUEST);
  CHECK(d != NULL && strstr(d, "role-developer") != NULL);
  arbiter_string_free(d);
  CHECK(arbiter_engine_reload_from_dir(NULL, bundle_dir, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(arbiter_engine_reload_from_dir(engine, NULL, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  arbiter_engine_free(engine);
}

/* A refresher over a directory source: start, refresh now and when due, its status in the
 * metrics; a remote source without keys and bad options are errors naming them. */
static void test_refresher(const char *bundle_dir) {
  arbiter_refresher *refresher = NULL;
  arbiter_error *err = NULL;
  CHECK(arbiter_refresher_new(bundle_dir, "{\"interval_seconds\": 600}", NULL, 0, &refresher,
                              &err) == ARBITER_RESULT_OK);
  arbiter_engine *engine = NULL;
  CHECK(arbiter_refresher_start(refresher, &engine, &err) == ARBITER_RESULT_OK);
  char *d = decide(engine, ALLOW_REQUEST);
  CHECK(d != NULL && strstr(d, "role-developer") != NULL);
  arbiter_string_free(d);
  char *outcome = NULL;
  CHECK(arbiter_refresher_refresh(refresher, engine, false, &outcome, NULL) == ARBITER_RESULT_OK);
  CHECK(outcome != NULL && strcmp(outcome, "{\"refreshed\":\"unchanged\"}") == 0);
  arbiter_string_free(outcome);
  CHECK(arbiter_refresher_refresh(refresher, engine, true, &outcome, NULL) == ARBITER_RESULT_OK);
  CHECK(outcome != NULL && strcmp(outcome, "{\"refreshed\":\"not_due\"}") == 0);
  arbiter_string_free(outcome);
  char *metrics = NULL;
  CHECK(arbiter_engine_metrics_json(engine, &metrics, NULL) == ARBITER_RESULT_OK);
  CHECK(metrics != NULL && strstr(metrics, "\"consecutive_failures\":0") != NULL);
  arbiter_string_free(metrics);
  CHECK(arbiter_refresher_refresh(refresher, NULL, false, &outcome, NULL) ==
        ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(arbiter_refresher_refresh(refresher, engine, false, NULL, NULL) ==
        ARBITER_RESULT_NULL_ARGUMENT);
  arbiter_engine_free(engine);
  arbiter_refresher_free(refresher);

  refresher = NULL;
  CHECK(arbiter_refresher_new("https://127.0.0.1:1/bundle.tar.gz", NULL, NULL, 0, &refresher,
                              NULL) == ARBITER_RESULT_OK);
  CHECK(arbiter_refresher_start(refresher, &engine, &err) == ARBITER_RESULT_INVALID_ARGUMENT);
  CHECK(err != NULL && strstr(arbiter_error_message(err), "must be signed") != NULL);
  arbiter_error_free(err);
  arbiter_refresher_free(refresher);
  err = NULL;
  CHECK(arbiter_refresher_new(bundle_dir, "{\"interval\": 1}", NULL, 0, &refresher, &err) ==
        ARBITER_RESULT_INVALID_ARGUMENT);
  CHECK(err != NULL && strstr(arbiter_error_message(err), "interval") != NULL);
  arbiter_error_free(err);
  CHECK(arbiter_refresher_new("oci://nohost", NULL, NULL, 0, &refresher, NULL) ==
        ARBITER_RESULT_INVALID_ARGUMENT);
  CHECK(arbiter_refresher_new(NULL, NULL, NULL, 0, &refresher, NULL) ==
        ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(arbiter_refresher_start(NULL, &engine, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  arbiter_refresher_free(NULL);
}

/* The decision log as OpenTelemetry records: bad options are errors naming them; with the
 * receiver down every decision is still answered and every record is accounted for. */
static void test_otlp_decision_log(void) {
  arbiter_engine *engine = NULL;
  CHECK(arbiter_engine_new_gitlab_default(&engine, NULL) == ARBITER_RESULT_OK);
  char *stats = NULL;
  CHECK(arbiter_engine_otlp_stats_json(engine, &stats, NULL) == ARBITER_RESULT_OK);
  CHECK(stats != NULL && strcmp(stats, "null") == 0);
  arbiter_string_free(stats);
  arbiter_error *err = NULL;
  CHECK(arbiter_engine_export_decision_log_otlp(engine, "{\"endpoint\": \"udp://x\"}", &err) ==
        ARBITER_RESULT_INVALID_ARGUMENT);
  arbiter_error_free(err);
  err = NULL;
  CHECK(arbiter_engine_export_decision_log_otlp(engine, "{\"endpoint\": \"http://127.0.0.1:1/v1/logs\","
                                                " \"encoding\": \"xml\"}", &err) ==
        ARBITER_RESULT_INVALID_ARGUMENT);
  CHECK(err != NULL && strstr(arbiter_error_message(err), "xml") != NULL);
  arbiter_error_free(err);
  CHECK(arbiter_engine_export_decision_log_otlp(
            engine, "{\"endpoint\": \"http://127.0.0.1:1/v1/logs\", \"flush_interval_seconds\": 0.01}",
            NULL) == ARBITER_RESULT_OK);
  for (int i = 0; i < 10; i++) {
    char *d = decide(engine, ALLOW_REQUEST);
    CHECK(d != NULL && strstr(d, "\"allow\"") != NULL);
    arbiter_string_free(d);
  }
  CHECK(arbiter_engine_otlp_stats_json(engine, &stats, NULL) == ARBITER_RESULT_OK);
  CHECK(stats != NULL && strstr(stats, "\"exported\":0") != NULL);
  arbiter_string_free(stats);
  arbiter_engine_clear_decision_log(engine);
  CHECK(arbiter_engine_otlp_stats_json(engine, &stats, NULL) == ARBITER_RESULT_OK);
  CHECK(stats != NULL && strcmp(stats, "null") == 0);
  arbiter_string_free(stats);
  CHECK(arbiter_engine_export_decision_log_otlp(NULL, "{}", NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  CHECK(arbiter_engine_export_decision_log_otlp(engine, NULL, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  arbiter_engine_free(engine);
}

/* Explanations: JSON and text, and a bad request is an error of the call. */
static void test_explain(const arbiter_engine *engine) {
  char *json = NULL;
  CHECK(arbiter_engine_explain_json(engine, DENY_REQUEST, strlen(DENY_REQUEST), &json, NULL) == ARBITER_RESULT_OK);
  CHECK(json != NULL && strstr(json, "\"decision\":\"deny\"") != NULL);
  CHECK(json != NULL && strstr(json, "{\"id\":\"user-blocked\",\"effect\":\"forbid\",\"outcome\":\"satisfied\"") != NULL);
  arbiter_string_free(json);
  char *text = NULL;
  CHECK(arbiter_engine_explain_text(engine, ALLOW_REQUEST, strlen(ALLOW_REQUEST), &text, NULL) == ARBITER_RESULT_OK);
  CHECK(text != NULL && strncmp(text, "ALLOW by role-developer\n", 24) == 0);
  arbiter_string_free(text);
  arbiter_error *err = NULL;
  text = NULL;
  CHECK(arbiter_engine_explain_text(engine, "{", 1, &text, &err) == ARBITER_RESULT_MALFORMED_REQUEST);
  CHECK(text == NULL && err != NULL);
  arbiter_error_free(err);
}

/* A candidate bundle beside the live one: decisions stay the live bundle's, disagreements are
 * reported. */
static void test_shadow(void) {
  arbiter_bundle_file live = {str("p.cedar"), str("@id(\"live\") permit (principal, action, resource);")};
  arbiter_bundle_file candidate = {str("p.cedar"), str("@id(\"candidate\") forbid (principal, action, resource);")};
  arbiter_engine *engine = NULL;
  CHECK(arbiter_engine_new_from_files(&live, 1, &engine, NULL) == ARBITER_RESULT_OK);
  if (engine == NULL) return;
  CHECK(arbiter_engine_set_candidate_from_files(engine, &candidate, 1, NULL) == ARBITER_RESULT_OK);
  arbiter_error *err = NULL;
  CHECK(arbiter_engine_set_candidate_from_dir(engine, "/nonexistent", &err) == ARBITER_RESULT_IO);
  arbiter_error_free(err);
  const char *request = "{\"principal\": {\"type\": \"U\", \"id\": \"1\"}, \"action\": {\"type\": \"A\", \"id\": \"x\"},"
                        " \"resource\": {\"type\": \"R\", \"id\": \"1\"}}";
  char *decision = decide(engine, request);
  CHECK(decision != NULL && strstr(decision, "\"reasons\":[\"live\"]") != NULL);
  arbiter_string_free(decision);
  char *report = NULL;
  CHECK(arbiter_engine_shadow_report_json(engine, &report, NULL) == ARBITER_RESULT_OK);
  CHECK(report != NULL && strstr(report, "\"agreements\":0,\"disagreements\":1") != NULL);
  CHECK(report != NULL && strstr(report, "\"reasons\":[\"candidate\"]") != NULL);
  arbiter_string_free(report);
  arbiter_engine_clear_candidate(engine);
  arbiter_engine_clear_candidate(NULL);
  CHECK(arbiter_engine_shadow_report_json(engine, &report, NULL) == ARBITER_RESULT_OK);
  CHECK(report != NULL && strncmp(report, "{\"candidate\":null,", 18) == 0);
  arbiter_string_free(report);
  arbiter_engine_free(engine);
}

/* A decision log: events from many deciding threads at once, each one JSON object with the
 * request's id; a rate limit; `release` exactly once per log. */
struct log_sink {
  pthread_mutex_t lock;
  long events;
  long bad;
  int released;
};

static void on_event(void *user_data, const char *event, size_t len) {
  struct log_sink *sink = user_data;
  int ok = event[len] == '\0' && strlen(event) == len && event[0] == '{' && event[len - 1] == '}' &&
           strstr(event, "\"request_id\":\"c-1\"") != NULL && strstr(event, "\"decision\":\"allow\"") != NULL &&
           strstr(event, "\"reasons\":[\"a\"]") != NULL;
  pthread_mutex_lock(&sink->lock);
  sink->events++;
  sink->bad += !ok;
  pthread_mutex_unlock(&sink->lock);
}

static void on_release(void *user_data) {
  struct log_sink *sink = user_data;
  sink->released++;
}

enum { LOG_THREADS = 4, LOG_DECISIONS = 250 };

static void *log_loop(void *arg) {
  const arbiter_engine *engine = arg;
  arbiter_request r;
  memset(&r, 0, sizeof r);
  r.principal = (arbiter_entity_ref){str("U"), str("1")};
  r.action = (arbiter_entity_ref){str("Action"), str("x")};
  r.resource = (arbiter_entity_ref){str("R"), str("1")};
  r.request_id = str("c-1");
  for (int i = 0; i < LOG_DECISIONS; i++) {
    arbiter_decision *d = NULL;
    if (arbiter_engine_authorize(engine, &r, &d, NULL) == ARBITER_RESULT_OK) {
      arbiter_decision_free(d);
    }
  }
  return NULL;
}

static void test_decision_log(void) {
  arbiter_engine *engine = NULL;
  CHECK(arbiter_engine_new_from_files(bundle_a, 1, &engine, NULL) == ARBITER_RESULT_OK);
  struct log_sink sink = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};
  CHECK(arbiter_engine_set_decision_log(engine, 1.0, 0, on_event, on_release, &sink, NULL) == ARBITER_RESULT_OK);
  pthread_t threads[LOG_THREADS];
  for (int i = 0; i < LOG_THREADS; i++) {
    pthread_create(&threads[i], NULL, log_loop, engine);
  }
  for (int i = 0; i < LOG_THREADS; i++) {
    pthread_join(threads[i], NULL);
  }
  CHECK(sink.events == LOG_THREADS * LOG_DECISIONS);
  CHECK(sink.bad == 0);
  CHECK(sink.released == 0);

  /* A bad option: refused with its code, the log kept, and this call's user data released. */
  struct log_sink refused = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};
  arbiter_error *err = NULL;
  CHECK(arbiter_engine_set_decision_log(engine, 1.5, 0, on_event, on_release, &refused, &err) ==
        ARBITER_RESULT_INVALID_ARGUMENT);
  CHECK(err != NULL && strstr(arbiter_error_message(err), "sample_rate") != NULL);
  arbiter_error_free(err);
  CHECK(refused.released == 1);
  log_loop(engine);
  CHECK(sink.events == (LOG_THREADS + 1) * LOG_DECISIONS);

  /* At most 10 a second: a burst of 10, the rest counted as rate limited. */
  struct log_sink limited = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};
  CHECK(arbiter_engine_set_decision_log(engine, 1.0, 10, on_event, on_release, &limited, NULL) == ARBITER_RESULT_OK);
  CHECK(sink.released == 1);
  log_loop(engine);
  CHECK(limited.events >= 10 && limited.events < LOG_DECISIONS);
  char *metrics = NULL;
  CHECK(arbiter_engine_metrics_json(engine, &metrics, NULL) == ARBITER_RESULT_OK);
  CHECK(metrics != NULL && strstr(metrics, "\"decision_log\":{\"logged\":") != NULL &&
        strstr(metrics, "\"rate_limited\":0") == NULL);
  arbiter_string_free(metrics);
  CHECK(arbiter_engine_set_decision_log(engine, 1.0, 0, NULL, NULL, NULL, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  arbiter_engine_clear_decision_log(NULL);
  arbiter_engine_free(engine);
  CHECK(limited.released == 1);
}

/* Metrics after the decisions above: JSON and Prometheus text, NULL arguments refused. */
static void test_metrics(const arbiter_engine *engine) {
  char *json = NULL;
  CHECK(arbiter_engine_metrics_json(engine, &json, NULL) == ARBITER_RESULT_OK);
  CHECK(json != NULL && strstr(json, "{\"action\":\"Gitlab::Action::push_code\",\"allow\":") != NULL);
  CHECK(json != NULL && strstr(json, "\"bundle\":{\"name\":\"gitlab\"") != NULL);
  arbiter_string_free(json);
  char *text = NULL;
  CHECK(arbiter_engine_metrics_prometheus(engine, &text, NULL) == ARBITER_RESULT_OK);
  CHECK(text != NULL && strstr(text, "# TYPE arbiter_decisions_total counter\n") != NULL);
  CHECK(text != NULL && strstr(text, "arbiter_decisions_total{action=\"Gitlab::Action::push_code\",decision=\"allow\"} ") != NULL);
  CHECK(text != NULL && strstr(text, "arbiter_request_errors_total{kind=\"malformed_request\"} ") != NULL);
  arbiter_string_free(text);
  arbiter_error *err = NULL;
  CHECK(arbiter_engine_metrics_json(NULL, &json, &err) == ARBITER_RESULT_NULL_ARGUMENT);
  arbiter_error_free(err);
  CHECK(arbiter_engine_metrics_prometheus(engine, NULL, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
}

/* List queries: SQL for the bundle's tables, or the call's error. */
static void test_query(const arbiter_engine *engine) {
  const char *query =
      "{\"principal\": {\"type\": \"Gitlab::User\", \"id\": \"alice\"},"
      " \"action\": {\"type\": \"Gitlab::Action\", \"id\": \"read_project\"},"
      " \"resource\": {\"type\": \"Gitlab::Project\"}, \"context\": {\"admin_mode\": false}}";
  char *out = NULL;
  CHECK(arbiter_engine_query_json(engine, query, strlen(query), "sqlite", &out, NULL) == ARBITER_RESULT_OK);
  CHECK(out != NULL && strstr(out, "\"kind\":\"where\"") != NULL && strstr(out, "projects.visibility_level = ?") != NULL);
  arbiter_string_free(out);
  out = NULL;
  CHECK(arbiter_engine_query_json(engine, query, strlen(query), "postgres", &out, NULL) == ARBITER_RESULT_OK);
  CHECK(out != NULL && strstr(out, "projects.visibility_level = $1") != NULL);
  arbiter_string_free(out);

  char *untouched = (char *)"untouched";
  out = untouched;
  arbiter_error *err = NULL;
  CHECK(arbiter_engine_query_json(engine, query, strlen(query), "oracle", &out, &err) == ARBITER_RESULT_INVALID_ARGUMENT);
  CHECK(out == untouched && strstr(arbiter_error_message(err), "oracle") != NULL);
  arbiter_error_free(err);
  CHECK(arbiter_engine_query_json(engine, query, strlen(query), NULL, &out, NULL) == ARBITER_RESULT_NULL_ARGUMENT);
  /* A check request (its resource has an id) is not a query. */
  CHECK(arbiter_engine_query_json(engine, ALLOW_REQUEST, strlen(ALLOW_REQUEST), "sqlite", &out, NULL) ==
        ARBITER_RESULT_MALFORMED_REQUEST);
  CHECK(out == untouched);

  /* A bundle without an SQL mapping answers with a residual it cannot write as SQL. */
  arbiter_bundle_file files[] = {
      {str("schema.cedarschema"), str("entity User; entity Doc = {owner: User};"
                                      " action read appliesTo { principal: User, resource: Doc };")},
      {str("p.cedar"), str("permit (principal, action, resource) when { resource.owner == principal };")}};
  arbiter_engine *docs = NULL;
  CHECK(arbiter_engine_new_from_files(files, 2, &docs, NULL) == ARBITER_RESULT_OK);
  const char *docs_query = "{\"principal\": {\"type\": \"User\", \"id\": \"u\"},"
                           " \"action\": {\"type\": \"Action\", \"id\": \"read\"}, \"resource\": {\"type\": \"Doc\"}}";
  err = NULL;
  CHECK(arbiter_engine_query_json(docs, docs_query, strlen(docs_query), "sqlite", &out, &err) ==
        ARBITER_RESULT_UNTRANSLATABLE);
  CHECK(out == untouched && strcmp(arbiter_error_kind(err), "untranslatable") == 0);
  arbiter_error_free(err);
  arbiter_engine_free(docs);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s <policies/gitlab>\n", argv[0]);
    return 2;
  }
  make_bundles();
  test_version();
  test_result_kinds();
  test_engine_creation_errors();

  arbiter_engine *engine = NULL;
  arbiter_error *err = NULL;
  CHECK(arbiter_engine_new_from_bundle_dir(argv[1], &engine, &err) == ARBITER_RESULT_OK);
  CHECK(err == NULL);
  arbiter_engine *embedded = NULL;
  CHECK(arbiter_engine_new_gitlab_default(&embedded, NULL) == ARBITER_RESULT_OK);
  if (engine == NULL || embedded == NULL) {
    fprintf(stderr, "no engine: %s\n", arbiter_error_message(err));
    return 1;
  }
  test_authorize_json(engine);
  test_authorize_json(embedded);
  test_batch(engine);
  test_fast_path(engine);
  test_verify_token(embedded);
  test_explain(engine);
  test_metrics(engine);
  test_query(engine);
  arbiter_engine_free(engine);
  arbiter_engine_free(embedded);

  test_shadow();
  test_threads_and_reload();
  test_reload_from_dir(argv[1]);
  test_refresher(argv[1]);
  test_otlp_decision_log();
  test_decision_log();

  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("C ABI tests passed\n");
  return 0;
}
