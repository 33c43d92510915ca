/*
 * enrich: tenant metadata, a trace header and a billing tag, added before
 * upstream work. In C.
 *
 * On the request gate it reads the caller's tenant (read_identity), finds
 * the tenant's entry in its config (or "default"), and
 *   1. sets the tenant header (default `x-odock-tenant`) to the tenant;
 *   2. sets each configured metadata entry (request-scoped: later gates
 *      and evidence see them) and each configured extra header;
 *   3. sets the billing tag as metadata `billing_tag` and as a header
 *      (default `x-odock-billing-tag`);
 *   4. when the request carries no trace header (default `traceparent`),
 *      adds a W3C trace context derived from the request id, so every hop
 *      of one request agrees on it: `00-<32 hex trace id>-<16 hex span
 *      id>-01`; the trace id is also set as metadata `trace_id` (taken from
 *      an incoming W3C `traceparent` when there is one).
 * It emits one evidence record, `enrich.applied`, with the tenant, whether
 * its entry was found, and whether the trace header was generated or kept.
 *
 * Config:
 *   {"tenants": {"acme": {"metadata": {"tier": "gold", "region": "eu"},
 *                         "billing_tag": "acme-prod",
 *                         "headers": {"x-acme-cost-center": "cc-42"}}},
 *    "default": {"billing_tag": "unassigned"},
 *    "trace_header": "traceparent",
 *    "tenant_header": "x-odock-tenant",
 *    "billing_header": "x-odock-billing-tag"}
 * An empty "tenant_header" or "billing_header" turns that header off.
 * Strings with JSON escapes are refused (INVALID_CONFIG) rather than
 * decoded.
 *
 * Capabilities: read_identity, read_headers, write_headers, emit_evidence.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odock_plugin.h"
#include "../c-common/odock_json.h"

#define MAX_NODES 4096

typedef struct enrich {
  const odock_host_api_t *host;
  oj_doc_t doc;
  int32_t tenants;  /* object node, or -1 */
  int32_t fallback; /* "default" entry, or -1 */
  odock_host_view_t trace_header, tenant_header, billing_header;
  oj_node_t nodes[MAX_NODES];
} enrich_t;

static odock_plugin_view_t pv(const void *p, size_t len) {
  odock_plugin_view_t v;
  v.ptr = (const uint8_t *)p;
  v.len = len;
  return v;
}

#define LITERAL(s) pv((s), sizeof(s) - 1)

static odock_host_view_t hv(const char *s) {
  odock_host_view_t v;
  v.ptr = (const uint8_t *)s;
  v.len = strlen(s);
  return v;
}

static odock_plugin_view_t node_view(const oj_doc_t *d, int32_t i) {
  return pv(d->nodes[i].ptr, d->nodes[i].len);
}

static int is_token(const uint8_t *p, size_t len) {
  static const char extra[] = "!#$%&'*+-.^_`|~";
  if (len == 0 || len > 128) return 0;
  for (size_t i = 0; i < len; i++) {
    uint8_t c = p[i];
    int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c != 0 && strchr(extra, c) != NULL);
    if (!ok) return 0;
  }
  return 1;
}

/* A plain string: no escapes (so no CR, LF or NUL either), at most 1 KiB. */
static int plain(const oj_doc_t *d, int32_t i) {
  return i >= 0 && d->nodes[i].type == OJ_STRING && !d->nodes[i].escaped && d->nodes[i].len <= 1024;
}

static const char *check_map(const oj_doc_t *d, int32_t map, int headers, int32_t *bad) {
  if (d->nodes[map].type != OJ_OBJECT) {
    *bad = map;
    return headers ? "\"headers\" must be an object of strings" : "\"metadata\" must be an object of strings";
  }
  for (int32_t k = d->nodes[map].child; k >= 0; k = d->nodes[k].next) {
    const oj_node_t *key = &d->nodes[k];
    *bad = k;
    if (headers && !is_token(key->ptr, key->len)) return "a header name is not an HTTP token";
    if (!headers && (key->escaped || key->len == 0 || key->len > 64))
      return "a metadata key must be 1 to 64 bytes without escapes";
    if (!plain(d, key->child)) return "values must be strings without escapes";
  }
  return NULL;
}

static const char *check_entry(const oj_doc_t *d, int32_t entry, int32_t *bad) {
  static const char *const keys[] = {"metadata", "billing_tag", "headers", NULL};
  *bad = entry;
  if (d->nodes[entry].type != OJ_OBJECT) return "a tenant entry must be an object";
  if (!oj_keys_in(d, entry, keys, bad)) return "unknown field in a tenant entry";
  int32_t m = oj_get(d, entry, "metadata");
  if (m >= 0) {
    const char *e = check_map(d, m, 0, bad);
    if (e != NULL) return e;
  }
  int32_t h = oj_get(d, entry, "headers");
  if (h >= 0) {
    const char *e = check_map(d, h, 1, bad);
    if (e != NULL) return e;
  }
  int32_t b = oj_get(d, entry, "billing_tag");
  if (b >= 0 && (!plain(d, b) || d->nodes[b].len == 0)) {
    *bad = b;
    return "\"billing_tag\" must be a non-empty string without escapes";
  }
  return NULL;
}

/* Reads an optional header-name field; an empty string turns it off. */
static const char *header_field(const oj_doc_t *d, int32_t root, const char *key, const char *dflt,
                                int allow_empty, odock_host_view_t *out, int32_t *bad) {
  int32_t i = oj_get(d, root, key);
  if (i < 0) {
    *out = hv(dflt);
    return NULL;
  }
  *bad = i;
  const oj_node_t *n = &d->nodes[i];
  if (n->type != OJ_STRING || (n->len == 0 && !allow_empty) || (n->len > 0 && !is_token(n->ptr, n->len)))
    return "header names must be HTTP tokens";
  out->ptr = n->ptr;
  out->len = n->len;
  return NULL;
}

static const char *check_config(enrich_t *e, int32_t root, int32_t *bad) {
  static const char *const keys[] = {"tenants", "default", "trace_header", "tenant_header",
                                     "billing_header", NULL};
  const oj_doc_t *d = &e->doc;
  *bad = -1;
  if (d->nodes[root].type != OJ_OBJECT) return "the config must be an object";
  if (!oj_keys_in(d, root, keys, bad)) return "unknown field";
  e->tenants = oj_get(d, root, "tenants");
  e->fallback = oj_get(d, root, "default");
  if (e->tenants >= 0) {
    if (d->nodes[e->tenants].type != OJ_OBJECT) return "\"tenants\" must be an object";
    for (int32_t k = d->nodes[e->tenants].child; k >= 0; k = d->nodes[k].next) {
      if (d->nodes[k].escaped) {
        *bad = k;
        return "tenant names must not hold escapes";
      }
      const char *err = check_entry(d, d->nodes[k].child, bad);
      if (err != NULL) return err;
    }
  }
  if (e->fallback >= 0) {
    const char *err = check_entry(d, e->fallback, bad);
    if (err != NULL) return err;
  }
  const char *err = header_field(d, root, "trace_header", "traceparent", 0, &e->trace_header, bad);
  if (err == NULL) err = header_field(d, root, "tenant_header", "x-odock-tenant", 1, &e->tenant_header, bad);
  if (err == NULL) err = header_field(d, root, "billing_header", "x-odock-billing-tag", 1, &e->billing_header, bad);
  return err;
}

static odock_status_t en_init(const odock_host_api_t *host, odock_call_t *call,
                              const odock_init_args_t *args, odock_instance_t **out_instance) {
  enrich_t *e = calloc(1, sizeof *e);
  if (e == NULL) return ODOCK_ERR_FAILED;
  e->host = host;
  int32_t root = oj_parse(&e->doc, e->nodes, MAX_NODES, args->config.ptr, args->config.len);
  int32_t bad = -1;
  const char *error = root < 0 ? e->doc.error : check_config(e, root, &bad);
  if (error != NULL) {
    char line[512];
    const oj_node_t *at = bad >= 0 ? &e->doc.nodes[bad] : NULL;
    int n = at != NULL ? snprintf(line, sizeof line, "enrich: bad config: %s (at `%.*s`)", error,
                                  (int)(at->len > 64 ? 64 : at->len), (const char *)at->ptr)
                       : snprintf(line, sizeof line, "enrich: bad config: %s", error);
    if (n > 0) host->log(call, ODOCK_LOG_ERROR, pv(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1));
    free(e);
    return ODOCK_ERR_INVALID_CONFIG;
  }
  *out_instance = (odock_instance_t *)e;
  return ODOCK_OK;
}

static void en_destroy(odock_instance_t *instance) { free(instance); }

/* SplitMix64: spreads a request id over 64 bits. */
static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static int is_lower_hex(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
  }
  return 1;
}

static const odock_header_t *find_header(const odock_request_t *req, odock_host_view_t name) {
  for (size_t i = 0; i < req->headers_len; i++) {
    const odock_header_t *h = &req->headers[i];
    if (h->name.len != name.len) continue;
    size_t j = 0;
    for (; j < name.len; j++) {
      uint8_t a = h->name.ptr[j], b = name.ptr[j];
      if (a >= 'A' && a <= 'Z') a = (uint8_t)(a + 32);
      if (b >= 'A' && b <= 'Z') b = (uint8_t)(b + 32);
      if (a != b) break;
    }
    if (j == name.len) return h;
  }
  return NULL;
}

static odock_status_t set_pairs(enrich_t *e, odock_call_t *call, int32_t map, int headers) {
  const oj_doc_t *d = &e->doc;
  if (map < 0) return ODOCK_OK;
  for (int32_t k = d->nodes[map].child; k >= 0; k = d->nodes[k].next) {
    odock_status_t st = headers ? e->host->set_header(call, node_view(d, k), node_view(d, d->nodes[k].child))
                                : e->host->set_metadata(call, node_view(d, k), node_view(d, d->nodes[k].child));
    if (st != ODOCK_OK) return st;
  }
  return ODOCK_OK;
}

static odock_status_t en_on_request(odock_instance_t *instance, odock_call_t *call,
                                    const odock_frame_t *frame, odock_verdict_t *verdict) {
  (void)verdict; /* always continues */
  enrich_t *e = (enrich_t *)instance;
  const odock_host_api_t *host = e->host;
  const oj_doc_t *d = &e->doc;
  odock_host_view_t tenant = {NULL, 0};
  if (frame->identity != NULL) tenant = frame->identity->tenant;

  int32_t entry = tenant.len > 0 ? oj_get_n(d, e->tenants, tenant.ptr, tenant.len) : -1;
  int found = entry >= 0;
  if (!found) entry = e->fallback;

  odock_status_t st;
  if (tenant.len > 0 && e->tenant_header.len > 0) {
    st = host->set_header(call, pv(e->tenant_header.ptr, e->tenant_header.len), pv(tenant.ptr, tenant.len));
    if (st != ODOCK_OK) return st;
  }
  if (entry >= 0) {
    if ((st = set_pairs(e, call, oj_get(d, entry, "metadata"), 0)) != ODOCK_OK) return st;
    if ((st = set_pairs(e, call, oj_get(d, entry, "headers"), 1)) != ODOCK_OK) return st;
    int32_t tag = oj_get(d, entry, "billing_tag");
    if (tag >= 0) {
      if ((st = host->set_metadata(call, LITERAL("billing_tag"), node_view(d, tag))) != ODOCK_OK) return st;
      if (e->billing_header.len > 0) {
        st = host->set_header(call, pv(e->billing_header.ptr, e->billing_header.len), node_view(d, tag));
        if (st != ODOCK_OK) return st;
      }
    }
  }

  /* The trace: kept when the caller sent one, else derived from the id. */
  const odock_header_t *incoming = find_header(frame->request, e->trace_header);
  char trace[64];
  int generated = incoming == NULL;
  if (generated) {
    uint64_t id = frame->request_id;
    uint64_t hi = mix(id), lo = mix(id ^ 0x5bd1e9955bd1e995ull), span = mix(id + 0x632be59bd9b4e019ull);
    if ((hi | lo) == 0) lo = 1; /* an all-zero trace id is invalid */
    if (span == 0) span = 1;
    int n = snprintf(trace, sizeof trace, "00-%016" PRIx64 "%016" PRIx64 "-%016" PRIx64 "-01", hi, lo, span);
    if ((st = host->set_header(call, pv(e->trace_header.ptr, e->trace_header.len), pv(trace, (size_t)n))) != ODOCK_OK)
      return st;
    if ((st = host->set_metadata(call, LITERAL("trace_id"), pv(trace + 3, 32))) != ODOCK_OK) return st;
  } else if (incoming->value.len == 55 && memcmp(incoming->value.ptr, "00-", 3) == 0 &&
             is_lower_hex(incoming->value.ptr + 3, 32)) {
    if ((st = host->set_metadata(call, LITERAL("trace_id"), pv(incoming->value.ptr + 3, 32))) != ODOCK_OK)
      return st;
  }

  char data[256];
  int n = snprintf(data, sizeof data, "tenant=%.*s entry=%s trace=%s", (int)(tenant.len > 128 ? 128 : tenant.len),
                   tenant.len > 0 ? (const char *)tenant.ptr : "", found ? "tenant" : (entry >= 0 ? "default" : "none"),
                   generated ? "generated" : "kept");
  if (n < 0) n = 0;
  return host->emit_evidence(call, LITERAL("enrich.applied"), pv(data, (size_t)n < sizeof data ? (size_t)n : sizeof data - 1));
}

/* The config's JSON Schema, in the subset control validates with (no $ref,
 * no anyOf, patterns as documentation): what the schema cannot say, init
 * checks. */
#define TOKEN_PATTERN "\"pattern\":\"^[A-Za-z0-9!#$%&'*+.^_`|~-]*$\""
#define VALUE_SCHEMA \
  "{\"type\":\"string\",\"maxLength\":1024,\"pattern\":\"^[^\\\\r\\\\n\\\\u0000]*$\"}"
#define ENTRY_SCHEMA                                                                   \
  "{\"type\":\"object\",\"additionalProperties\":false,\"properties\":{"               \
  "\"metadata\":{\"type\":\"object\",\"description\":\"Keys of 1 to 64 bytes.\","      \
  "\"additionalProperties\":{\"type\":\"string\",\"maxLength\":1024}},"                \
  "\"billing_tag\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":1024},"          \
  "\"headers\":{\"type\":\"object\",\"description\":\"Names are HTTP tokens.\","       \
  "\"additionalProperties\":" VALUE_SCHEMA "}}}"
#define HEADER_SCHEMA(min) \
  "{\"type\":\"string\",\"minLength\":" min ",\"maxLength\":128," TOKEN_PATTERN "}"

static const char SCHEMA[] =
    "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\","
    "\"additionalProperties\":false,\"properties\":{"
    "\"tenants\":{\"type\":\"object\",\"additionalProperties\":" ENTRY_SCHEMA "},"
    "\"default\":" ENTRY_SCHEMA ","
    "\"trace_header\":" HEADER_SCHEMA("1") ","
    "\"tenant_header\":" HEADER_SCHEMA("0") ","
    "\"billing_header\":" HEADER_SCHEMA("0") "}}";

static const odock_plugin_descriptor_t DESCRIPTOR = {
    sizeof(odock_plugin_descriptor_t),
    ODOCK_PLUGIN_ABI_MAJOR,
    ODOCK_PLUGIN_ABI_MINOR,
    {(const uint8_t *)"enrich", 6},
    {(const uint8_t *)"1.0.0", 5},
    {(const uint8_t *)SCHEMA, sizeof(SCHEMA) - 1},
    NULL, /* integrations */
    0,
    ODOCK_CAP_READ_IDENTITY | ODOCK_CAP_READ_HEADERS | ODOCK_CAP_WRITE_HEADERS | ODOCK_CAP_EMIT_EVIDENCE,
    ODOCK_GATE_REQUEST,
    ODOCK_RESPONSE_WHOLE_BODY,
    en_init,
    en_destroy,
    en_on_request,
    NULL, /* on_response */
    NULL, /* on_complete */
    NULL, /* on_integration_answer */
    NULL, /* on_followup */
};

ODOCK_PLUGIN_EXPORT const odock_plugin_descriptor_t *odock_plugin_entry_v1(void) {
  return &DESCRIPTOR;
}
