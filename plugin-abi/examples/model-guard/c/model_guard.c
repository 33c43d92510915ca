/*
 * model-guard, in C: the example plugin of the Odock plugin ABI.
 *
 * On the request gate it
 *   1. adds the header `x-odock-model-guard: checked` to the request,
 *   2. blocks (403) a request whose model is not in the configured allow
 *      list, with a reason the caller can act on,
 *   3. emits one evidence record: `model_guard.allowed` or
 *      `model_guard.blocked`, with the model as data.
 *
 * Config: {"allow": ["gpt-4o", "gpt-4o-mini"]}
 *
 * The same plugin through the Rust SDK is ../src/lib.rs; the tests load both
 * and check that they behave the same.
 *
 * Build: cc -std=c99 -fPIC -shared -I../../../include model_guard.c \
 *           -o libmodel_guard_c.so
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odock_plugin.h"

#define MAX_MODELS 32
#define MAX_MODEL_LEN 128

/* Per-worker state: the host table, the allow list, and the reason of the
 * last block (a verdict's reason must stay valid until our next hook). */
typedef struct model_guard {
  const odock_host_api_t *host;
  size_t allowed_len;
  char allowed[MAX_MODELS][MAX_MODEL_LEN];
  size_t allowed_size[MAX_MODELS];
  char reason[256];
} model_guard_t;

static odock_plugin_view_t view_of(const char *text, size_t len) {
  odock_plugin_view_t v;
  v.ptr = (const uint8_t *)text;
  v.len = len;
  return v;
}

#define LITERAL(s) view_of((s), sizeof(s) - 1)

/* A deliberately small reader for the one config shape the schema allows:
 * finds "allow", then reads the strings of its array. A real plugin would
 * use a JSON library; control has already validated the config against the
 * schema, but we still refuse anything we do not understand. */
static int parse_config(model_guard_t *g, const uint8_t *p, size_t len) {
  const uint8_t *end = p + len;
  const char key[] = "\"allow\"";
  const uint8_t *at = NULL;
  for (const uint8_t *s = p; s + sizeof(key) - 1 <= end; s++) {
    if (memcmp(s, key, sizeof(key) - 1) == 0) {
      at = s + sizeof(key) - 1;
      break;
    }
  }
  if (at == NULL) return -1;
  while (at < end && (*at == ' ' || *at == ':' || *at == '\n' || *at == '\t')) at++;
  if (at == end || *at != '[') return -1;
  at++;
  g->allowed_len = 0;
  for (;;) {
    while (at < end && (*at == ' ' || *at == ',' || *at == '\n' || *at == '\t')) at++;
    if (at == end) return -1;
    if (*at == ']') return 0;
    if (*at != '"') return -1;
    const uint8_t *start = ++at;
    while (at < end && *at != '"') {
      if (*at == '\\') return -1; /* escapes: not in model names */
      at++;
    }
    if (at == end) return -1;
    size_t n = (size_t)(at - start);
    if (n == 0 || n >= MAX_MODEL_LEN || g->allowed_len == MAX_MODELS) return -1;
    memcpy(g->allowed[g->allowed_len], start, n);
    g->allowed_size[g->allowed_len] = n;
    g->allowed_len++;
    at++;
  }
}

static odock_status_t mg_init(const odock_host_api_t *host, odock_call_t *call,
                              const odock_init_args_t *args,
                              odock_instance_t **out_instance) {
  if (!ODOCK_HAS_FIELD(odock_host_api_t, host, queue_followup)) {
    return ODOCK_ERR_UNSUPPORTED; /* a host older than 1.0: cannot happen */
  }
  model_guard_t *g = calloc(1, sizeof *g);
  if (g == NULL) return ODOCK_ERR_FAILED;
  g->host = host;
  if (parse_config(g, args->config.ptr, args->config.len) != 0) {
    host->log(call, ODOCK_LOG_ERROR, LITERAL("model-guard: config needs {\"allow\": [model, ...]}"));
    free(g);
    return ODOCK_ERR_INVALID_CONFIG;
  }
  *out_instance = (odock_instance_t *)g;
  return ODOCK_OK;
}

static void mg_destroy(odock_instance_t *instance) { free(instance); }

static int is_allowed(const model_guard_t *g, odock_host_view_t model) {
  for (size_t i = 0; i < g->allowed_len; i++) {
    if (g->allowed_size[i] == model.len &&
        memcmp(g->allowed[i], model.ptr, model.len) == 0) {
      return 1;
    }
  }
  return 0;
}

static odock_status_t mg_on_request(odock_instance_t *instance,
                                    odock_call_t *call,
                                    const odock_frame_t *frame,
                                    odock_verdict_t *verdict) {
  model_guard_t *g = (model_guard_t *)instance;
  const odock_host_api_t *host = g->host;
  odock_host_view_t model = frame->target->model;

  odock_status_t st = host->set_header(call, LITERAL("x-odock-model-guard"), LITERAL("checked"));
  if (st != ODOCK_OK) return st;

  odock_plugin_view_t model_bytes = view_of((const char *)model.ptr, model.len);
  if (is_allowed(g, model)) {
    return host->emit_evidence(call, LITERAL("model_guard.allowed"), model_bytes);
  }
  st = host->emit_evidence(call, LITERAL("model_guard.blocked"), model_bytes);
  if (st != ODOCK_OK) return st;

  /* The reason lives in the instance, valid until our next hook. */
  int n = snprintf(g->reason, sizeof g->reason,
                   "model `%.*s` is not allowed for this key",
                   (int)(model.len > 128 ? 128 : model.len), (const char *)model.ptr);
  verdict->kind = ODOCK_VERDICT_BLOCK;
  verdict->http_status = 403;
  verdict->reason = view_of(g->reason, (size_t)n);
  verdict->detail = LITERAL("not in the allow list");
  return ODOCK_OK;
}

static const char SCHEMA[] =
    "{\"type\":\"object\",\"required\":[\"allow\"],"
    "\"properties\":{\"allow\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
    "\"additionalProperties\":false}";

static const odock_plugin_descriptor_t DESCRIPTOR = {
    sizeof(odock_plugin_descriptor_t),
    ODOCK_PLUGIN_ABI_MAJOR,
    ODOCK_PLUGIN_ABI_MINOR,
    {(const uint8_t *)"model-guard", 11},
    {(const uint8_t *)"1.0.0", 5},
    {(const uint8_t *)SCHEMA, sizeof(SCHEMA) - 1},
    NULL, /* integrations */
    0,
    ODOCK_CAP_WRITE_HEADERS | ODOCK_CAP_BLOCK | ODOCK_CAP_EMIT_EVIDENCE,
    ODOCK_GATE_REQUEST,
    ODOCK_RESPONSE_WHOLE_BODY,
    mg_init,
    mg_destroy,
    mg_on_request,
    NULL, /* on_response */
    NULL, /* on_complete */
    NULL, /* on_integration_answer */
    NULL, /* on_followup */
};

ODOCK_PLUGIN_EXPORT const odock_plugin_descriptor_t *odock_plugin_entry_v1(void) {
  return &DESCRIPTOR;
}
