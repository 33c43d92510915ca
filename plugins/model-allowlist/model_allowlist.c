/*
 * model-allowlist: per-tenant allowed models and MCP tools, in C.
 *
 * On the request gate it reads the caller's tenant (read_identity) and the
 * target (always visible), looks the tenant up in its config, and
 *   - for an LLM call, blocks (403) a model that is not in the tenant's
 *     "models" list;
 *   - for an MCP tools/call, blocks (403) a tool that is not in the
 *     tenant's "tools" list (other MCP methods, like tools/list, pass).
 * A name ending in '*' allows every name with that prefix. A tenant entry
 * without "models" (or "tools") does not restrict that kind; an empty list
 * allows nothing. A tenant with no entry uses "default"; with no default
 * either, it is blocked. The caller reads what they can do about it (which
 * models their organization has); the rule that matched goes to the
 * block's detail and to evidence (model_allowlist.blocked), never to the
 * caller.
 *
 * Config:
 *   {"tenants": {"acme": {"models": ["gpt-4o", "gpt-4o-mini"], "tools": ["search", "fetch_*"]}},
 *    "default": {"models": ["gpt-4o-mini"], "tools": []}}
 *
 * Capabilities: read_identity, block, emit_evidence.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odock_plugin.h"
#include "../c-common/odock_json.h"

#define MAX_NODES 4096
#define MAX_NAME 128

typedef struct allowlist {
  const odock_host_api_t *host;
  oj_doc_t doc;
  int32_t tenants; /* object node, or -1 */
  int32_t fallback; /* the "default" entry, or -1 */
  char reason[1024];
  char detail[512];
  oj_node_t nodes[MAX_NODES];
} allowlist_t;

static odock_plugin_view_t view_of(const char *text, size_t len) {
  odock_plugin_view_t v;
  v.ptr = (const uint8_t *)text;
  v.len = len;
  return v;
}

#define LITERAL(s) view_of((s), sizeof(s) - 1)

static void log_error(const odock_host_api_t *host, odock_call_t *call, const char *what,
                      const oj_node_t *at) {
  char line[512];
  int n;
  if (at != NULL) {
    n = snprintf(line, sizeof line, "model-allowlist: bad config: %s (at `%.*s`)", what,
                 (int)(at->len > 64 ? 64 : at->len), (const char *)at->ptr);
  } else {
    n = snprintf(line, sizeof line, "model-allowlist: bad config: %s", what);
  }
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = (int)sizeof line - 1;
  host->log(call, ODOCK_LOG_ERROR, view_of(line, (size_t)n));
}

/* A list of names: an array of 1..MAX_NAME byte strings without escapes. */
static const char *check_names(const oj_doc_t *d, int32_t list, int32_t *bad) {
  if (d->nodes[list].type != OJ_ARRAY) {
    *bad = list;
    return "\"models\" and \"tools\" must be arrays of names";
  }
  for (int32_t i = d->nodes[list].child; i >= 0; i = d->nodes[i].next) {
    const oj_node_t *n = &d->nodes[i];
    if (n->type != OJ_STRING || n->escaped || n->len == 0 || n->len > MAX_NAME) {
      *bad = i;
      return "names must be 1 to 128 byte strings without escapes";
    }
  }
  return NULL;
}

static const char *check_entry(const oj_doc_t *d, int32_t entry, int32_t *bad) {
  static const char *const keys[] = {"models", "tools", NULL};
  if (d->nodes[entry].type != OJ_OBJECT) {
    *bad = entry;
    return "a tenant entry must be an object";
  }
  if (!oj_keys_in(d, entry, keys, bad)) return "unknown field in a tenant entry";
  for (int32_t k = d->nodes[entry].child; k >= 0; k = d->nodes[k].next) {
    const char *e = check_names(d, d->nodes[k].child, bad);
    if (e != NULL) return e;
  }
  return NULL;
}

static const char *check_config(allowlist_t *a, int32_t root, int32_t *bad) {
  static const char *const keys[] = {"tenants", "default", NULL};
  const oj_doc_t *d = &a->doc;
  *bad = -1;
  if (d->nodes[root].type != OJ_OBJECT) return "the config must be an object";
  if (!oj_keys_in(d, root, keys, bad)) return "unknown field";
  a->tenants = oj_get(d, root, "tenants");
  a->fallback = oj_get(d, root, "default");
  if (a->tenants < 0 && a->fallback < 0) return "needs \"tenants\" or \"default\"";
  if (a->tenants >= 0) {
    if (d->nodes[a->tenants].type != OJ_OBJECT) return "\"tenants\" must be an object";
    for (int32_t k = d->nodes[a->tenants].child; k >= 0; k = d->nodes[k].next) {
      if (d->nodes[k].escaped) {
        *bad = k;
        return "tenant names must not hold escapes";
      }
      const char *e = check_entry(d, d->nodes[k].child, bad);
      if (e != NULL) return e;
    }
  }
  if (a->fallback >= 0) return check_entry(d, a->fallback, bad);
  return NULL;
}

static odock_status_t al_init(const odock_host_api_t *host, odock_call_t *call,
                              const odock_init_args_t *args, odock_instance_t **out_instance) {
  allowlist_t *a = calloc(1, sizeof *a);
  if (a == NULL) return ODOCK_ERR_FAILED;
  a->host = host;
  int32_t root = oj_parse(&a->doc, a->nodes, MAX_NODES, args->config.ptr, args->config.len);
  if (root < 0) {
    log_error(host, call, a->doc.error, NULL);
    free(a);
    return ODOCK_ERR_INVALID_CONFIG;
  }
  int32_t bad = -1;
  const char *error = check_config(a, root, &bad);
  if (error != NULL) {
    log_error(host, call, error, bad >= 0 ? &a->doc.nodes[bad] : NULL);
    free(a);
    return ODOCK_ERR_INVALID_CONFIG;
  }
  *out_instance = (odock_instance_t *)a;
  return ODOCK_OK;
}

static void al_destroy(odock_instance_t *instance) { free(instance); }

/* Whether `name` is in `list` (a trailing '*' matches a prefix). */
static int listed(const oj_doc_t *d, int32_t list, odock_host_view_t name) {
  for (int32_t i = d->nodes[list].child; i >= 0; i = d->nodes[i].next) {
    const oj_node_t *n = &d->nodes[i];
    if (n->ptr[n->len - 1] == '*') {
      size_t prefix = n->len - 1;
      if (name.len >= prefix && memcmp(name.ptr, n->ptr, prefix) == 0) return 1;
    } else if (n->len == name.len && memcmp(n->ptr, name.ptr, name.len) == 0) {
      return 1;
    }
  }
  return 0;
}

/* Appends the names of `list` to the reason, as many as fit. */
static size_t append_names(const oj_doc_t *d, int32_t list, char *buf, size_t at, size_t cap) {
  int first = 1;
  for (int32_t i = d->nodes[list].child; i >= 0; i = d->nodes[i].next) {
    const oj_node_t *n = &d->nodes[i];
    if (at + n->len + 8 >= cap) {
      if (at + 5 < cap) {
        memcpy(buf + at, ", ...", 5);
        at += 5;
      }
      break;
    }
    if (!first) {
      memcpy(buf + at, ", ", 2);
      at += 2;
    }
    memcpy(buf + at, n->ptr, n->len);
    at += n->len;
    first = 0;
  }
  if (first && at + 6 < cap) {
    memcpy(buf + at, "(none)", 6);
    at += 6;
  }
  return at;
}

static int clamp(int n, size_t cap) {
  if (n < 0) return 0;
  return (size_t)n >= cap ? (int)cap - 1 : n;
}

static odock_status_t block(allowlist_t *a, odock_call_t *call, odock_verdict_t *verdict,
                            size_t reason_len, size_t detail_len) {
  odock_status_t st = a->host->emit_evidence(call, LITERAL("model_allowlist.blocked"),
                                             view_of(a->detail, detail_len));
  if (st != ODOCK_OK) return st;
  verdict->kind = ODOCK_VERDICT_BLOCK;
  verdict->http_status = 403;
  verdict->reason = view_of(a->reason, reason_len);
  verdict->detail = view_of(a->detail, detail_len);
  return ODOCK_OK;
}

static odock_status_t al_on_request(odock_instance_t *instance, odock_call_t *call,
                                    const odock_frame_t *frame, odock_verdict_t *verdict) {
  allowlist_t *a = (allowlist_t *)instance;
  const oj_doc_t *d = &a->doc;
  const odock_target_t *target = frame->target;
  int is_model = target->kind == ODOCK_TARGET_MODEL;
  int is_tool = target->kind == ODOCK_TARGET_MCP && target->mcp_tool.len > 0;
  if (!is_model && !is_tool) return ODOCK_OK;

  odock_host_view_t tenant = {NULL, 0};
  if (frame->identity != NULL) tenant = frame->identity->tenant;
  const char *rule_base = "tenants";
  int32_t entry = tenant.len > 0 ? oj_get_n(d, a->tenants, tenant.ptr, tenant.len) : -1;
  if (entry < 0) {
    entry = a->fallback;
    rule_base = "default";
  }
  const uint8_t *tp = tenant.len > 0 ? tenant.ptr : (const uint8_t *)"";
  int tl = (int)(tenant.len > MAX_NAME ? MAX_NAME : tenant.len);
  if (entry < 0) {
    int r = snprintf(a->reason, sizeof a->reason,
                     "your organization has no models or tools enabled on this gateway; "
                     "ask your administrator to enable them");
    int t = snprintf(a->detail, sizeof a->detail, "tenant=%.*s rule=no_entry", tl, (const char *)tp);
    return block(a, call, verdict, (size_t)clamp(r, sizeof a->reason),
                 (size_t)clamp(t, sizeof a->detail));
  }
  int32_t list = oj_get(d, entry, is_model ? "models" : "tools");
  odock_host_view_t name = is_model ? target->model : target->mcp_tool;
  if (list < 0 || listed(d, list, name)) return ODOCK_OK;

  int nl = (int)(name.len > MAX_NAME ? MAX_NAME : name.len);
  const char *np = name.len > 0 ? (const char *)name.ptr : "";
  int r = snprintf(a->reason, sizeof a->reason,
                   is_model ? "model `%.*s` is not enabled for your organization; enabled models: "
                            : "MCP tool `%.*s` is not enabled for your organization; enabled tools: ",
                   nl, np);
  size_t at = append_names(d, list, a->reason, (size_t)clamp(r, sizeof a->reason), sizeof a->reason);
  int t = snprintf(a->detail, sizeof a->detail, "tenant=%.*s rule=%s%s%.*s.%s name=%.*s", tl,
                   (const char *)tp, rule_base, entry == a->fallback ? "" : ".",
                   entry == a->fallback ? 0 : tl, (const char *)tp, is_model ? "models" : "tools",
                   nl, np);
  return block(a, call, verdict, at, (size_t)clamp(t, sizeof a->detail));
}

/* The config's JSON Schema, in the subset control validates with (no $ref,
 * no anyOf): what the schema cannot say, init checks. */
#define NAMES_SCHEMA \
  "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":128}}"
#define ENTRY_SCHEMA                                                           \
  "{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"       \
  "\"models\":" NAMES_SCHEMA ",\"tools\":" NAMES_SCHEMA "}}"

static const char SCHEMA[] =
    "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\","
    "\"description\":\"Needs tenants or default. A name ending in * is a prefix.\","
    "\"additionalProperties\":false,\"properties\":{"
    "\"tenants\":{\"type\":\"object\",\"additionalProperties\":" ENTRY_SCHEMA "},"
    "\"default\":" ENTRY_SCHEMA "}}";

static const odock_plugin_descriptor_t DESCRIPTOR = {
    sizeof(odock_plugin_descriptor_t),
    ODOCK_PLUGIN_ABI_MAJOR,
    ODOCK_PLUGIN_ABI_MINOR,
    {(const uint8_t *)"model-allowlist", 15},
    {(const uint8_t *)"1.0.0", 5},
    {(const uint8_t *)SCHEMA, sizeof(SCHEMA) - 1},
    NULL, /* integrations */
    0,
    ODOCK_CAP_READ_IDENTITY | ODOCK_CAP_BLOCK | ODOCK_CAP_EMIT_EVIDENCE,
    ODOCK_GATE_REQUEST,
    ODOCK_RESPONSE_WHOLE_BODY,
    al_init,
    al_destroy,
    al_on_request,
    NULL, /* on_response */
    NULL, /* on_complete */
    NULL, /* on_integration_answer */
    NULL, /* on_followup */
};

ODOCK_PLUGIN_EXPORT const odock_plugin_descriptor_t *odock_plugin_entry_v1(void) {
  return &DESCRIPTOR;
}
