/*
 * sanitize_harness.c: runs one C reference plugin in process under
 * AddressSanitizer and UndefinedBehaviorSanitizer, with a stub host.
 *
 * Build (the test suite does this, see tests/reference_plugins.rs):
 *   cc -std=c99 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
 *      -I plugin-abi/include '-DPLUGIN_SOURCE="../enrich/enrich.c"' \
 *      plugins/c-common/sanitize_harness.c -o harness
 *   ./harness config.json
 *
 * With the config in argv[1] it calls init on every truncation and every
 * single-byte change of it (each in a buffer of exactly its size, so a
 * read past the end is caught), and for each instance that starts, runs
 * on_request over frames with and without identity, with long names,
 * odd headers and MCP targets. Every view the plugin hands the host is
 * read whole. Any sanitizer report aborts with a non-zero status.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "odock_plugin.h"
#include PLUGIN_SOURCE

static unsigned long host_calls;

static odock_status_t touch(odock_plugin_view_t v) {
  if (v.len > 0 && v.ptr == NULL) abort();
  volatile uint8_t sum = 0;
  for (size_t i = 0; i < v.len; i++) sum ^= v.ptr[i];
  (void)sum;
  host_calls++;
  return ODOCK_OK;
}

static odock_status_t h_log(odock_call_t *c, uint32_t level, odock_plugin_view_t m) {
  (void)c;
  (void)level;
  return touch(m);
}
static odock_status_t h_read_config(odock_call_t *c, odock_host_view_t *out) {
  (void)c;
  (void)out;
  return ODOCK_ERR_UNSUPPORTED;
}
static odock_status_t h_two(odock_call_t *c, odock_plugin_view_t a, odock_plugin_view_t b) {
  (void)c;
  touch(a);
  return touch(b);
}
static odock_status_t h_one(odock_call_t *c, odock_plugin_view_t a) {
  (void)c;
  return touch(a);
}
static odock_status_t h_range(odock_call_t *c, uint64_t off, uint64_t len, odock_plugin_view_t b) {
  (void)c;
  (void)off;
  (void)len;
  return touch(b);
}
static odock_status_t h_integration(odock_call_t *c, odock_plugin_view_t n, odock_plugin_view_t p,
                                    uint32_t t, uint64_t *token) {
  (void)c;
  (void)t;
  touch(n);
  touch(p);
  *token = 1;
  return ODOCK_OK;
}

/* A heap copy of exactly `len` bytes (NULL for 0), so overreads show. */
static const uint8_t *exact(const void *p, size_t len) {
  if (len == 0) return NULL;
  uint8_t *copy = malloc(len);
  if (copy == NULL) abort();
  memcpy(copy, p, len);
  return copy;
}

static odock_host_view_t hview(const char *s) {
  odock_host_view_t v;
  v.len = strlen(s);
  v.ptr = exact(s, v.len);
  return v;
}

static void free_view(odock_host_view_t v) { free((void *)v.ptr); }

static void run_frames(const odock_plugin_descriptor_t *d, odock_instance_t *inst) {
  static const char *tenants[] = {"acme", "globex", "initech", "", NULL};
  char long_name[301];
  memset(long_name, 'm', 300);
  long_name[300] = 0;
  const char *models[] = {"gpt-4o", "gpt-5", "o1-mini", "", long_name};
  for (size_t t = 0; t < sizeof tenants / sizeof *tenants; t++) {
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
      for (int mcp = 0; mcp < 2; mcp++) {
        odock_identity_t id = {sizeof id, 0, {NULL, 0}, {NULL, 0}, {NULL, 0}};
        if (tenants[t] != NULL) {
          id.tenant = hview(tenants[t]);
          id.virtual_key_id = hview("vk");
          id.environment = hview("prod");
        }
        odock_target_t target;
        memset(&target, 0, sizeof target);
        target.size = sizeof target;
        target.kind = mcp ? ODOCK_TARGET_MCP : ODOCK_TARGET_MODEL;
        if (mcp) {
          target.mcp_server = hview("github");
          target.mcp_tool = hview(models[m]);
        } else {
          target.model = hview(models[m]);
        }
        odock_index_t index;
        memset(&index, 0, sizeof index);
        index.size = sizeof index;
        odock_header_t headers[3];
        headers[0].name = hview("TraceParent");
        headers[0].value = hview(m % 2 ? "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" : "garbage");
        headers[1].name = hview("x");
        headers[1].value = hview("");
        headers[2].name = hview("");
        headers[2].value = hview("y");
        odock_request_t request;
        memset(&request, 0, sizeof request);
        request.size = sizeof request;
        request.headers = (t % 2) ? headers : NULL;
        request.headers_len = (t % 2) ? 3 : 0;
        odock_frame_t frame;
        memset(&frame, 0, sizeof frame);
        frame.size = sizeof frame;
        frame.gate = ODOCK_GATE_REQUEST;
        frame.request_id = (uint64_t)(t * 100 + m * 10 + (size_t)mcp);
        frame.identity = tenants[t] != NULL ? &id : NULL;
        frame.target = &target;
        frame.index = &index;
        frame.request = &request;
        odock_verdict_t verdict;
        memset(&verdict, 0, sizeof verdict);
        verdict.size = sizeof verdict;
        odock_status_t st = d->on_request(inst, (odock_call_t *)&frame, &frame, &verdict);
        if (st == ODOCK_OK && verdict.kind == ODOCK_VERDICT_BLOCK) {
          touch(verdict.reason);
          touch(verdict.detail);
          if (verdict.reason.len == 0 || verdict.reason.len > 1024) abort();
        }
        free_view(id.tenant);
        free_view(id.virtual_key_id);
        free_view(id.environment);
        free_view(target.mcp_server);
        free_view(target.mcp_tool);
        free_view(target.model);
        for (int h = 0; h < 3; h++) {
          free_view(headers[h].name);
          free_view(headers[h].value);
        }
      }
    }
  }
}

static int try_config(const odock_plugin_descriptor_t *d, const odock_host_api_t *host,
                      const uint8_t *bytes, size_t len) {
  const uint8_t *copy = exact(bytes, len);
  odock_init_args_t args = {sizeof args, 0, {copy, len}};
  odock_instance_t *inst = NULL;
  odock_status_t st = d->init(host, (odock_call_t *)&args, &args, &inst);
  int ok = st == ODOCK_OK;
  if (!ok && st != ODOCK_ERR_INVALID_CONFIG) {
    fprintf(stderr, "init returned %u\n", st);
    abort();
  }
  if (ok) {
    run_frames(d, inst);
    d->destroy(inst);
  }
  free((void *)copy);
  return ok;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s config.json\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(argv[1], "rb");
  if (f == NULL) return 2;
  static uint8_t config[1 << 16];
  size_t len = fread(config, 1, sizeof config, f);
  fclose(f);
  odock_host_api_t host;
  memset(&host, 0, sizeof host);
  host.size = sizeof host;
  host.abi_major = ODOCK_PLUGIN_ABI_MAJOR;
  host.abi_minor = ODOCK_PLUGIN_ABI_MINOR;
  host.log = h_log;
  host.read_config = h_read_config;
  host.set_header = h_two;
  host.remove_header = h_one;
  host.set_metadata = h_two;
  host.replace_body_range = h_range;
  host.replace_body_field = h_two;
  host.emit_evidence = h_two;
  host.call_integration = h_integration;
  host.queue_followup = h_two;
  const odock_plugin_descriptor_t *d = odock_plugin_entry_v1();
  if (!try_config(d, &host, config, len)) {
    fprintf(stderr, "the full config was refused\n");
    return 1;
  }
  unsigned long started = 0, tried = 0;
  uint8_t *changed = malloc(len);
  if (changed == NULL) return 2;
  static const uint8_t flips[] = {'"', '\\', '{', '}', '[', ']', ',', ':', '*', 0, 0xff};
  for (size_t cut = 0; cut < len; cut++) {
    started += (unsigned long)try_config(d, &host, config, cut);
    tried++;
    for (size_t k = 0; k < sizeof flips; k++) {
      memcpy(changed, config, len);
      changed[cut] = flips[k];
      started += (unsigned long)try_config(d, &host, changed, len);
      tried++;
    }
  }
  free(changed);
  printf("configs tried %lu, started %lu, host calls %lu\n", tried, started, host_calls);
  return 0;
}
