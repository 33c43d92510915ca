/*
 * A plugin in C that misbehaves on request, chosen by the first byte of its
 * config:
 *   'k'  returns ODOCK_OK with verdict kind 7 (out of range)
 *   's'  returns a BLOCK with http_status 200 (out of range)
 *   'd'  calls set_header without ODOCK_CAP_WRITE_HEADERS, then emits the
 *        status it got as evidence `misbehaving.status` (decimal)
 *   'e'  returns ODOCK_ERR_FAILED
 *   else continues.
 * Built with -DDESCRIPTOR_MAJOR=2 its descriptor claims major version 2.
 */
#include <stdio.h>
#include <stdlib.h>

#include "odock_plugin.h"

#ifndef DESCRIPTOR_MAJOR
#define DESCRIPTOR_MAJOR ODOCK_PLUGIN_ABI_MAJOR
#endif

typedef struct {
  const odock_host_api_t *host;
  char mode;
  char text[16];
} state_t;

static odock_plugin_view_t view(const char *s, size_t n) {
  odock_plugin_view_t v;
  v.ptr = (const uint8_t *)s;
  v.len = n;
  return v;
}

static odock_status_t m_init(const odock_host_api_t *host, odock_call_t *call,
                             const odock_init_args_t *args, odock_instance_t **out) {
  (void)call;
  state_t *s = calloc(1, sizeof *s);
  if (s == NULL) return ODOCK_ERR_FAILED;
  s->host = host;
  s->mode = args->config.len > 0 ? (char)args->config.ptr[0] : '-';
  *out = (odock_instance_t *)s;
  return ODOCK_OK;
}

static void m_destroy(odock_instance_t *instance) { free(instance); }

static odock_status_t m_on_request(odock_instance_t *instance, odock_call_t *call,
                                   const odock_frame_t *frame, odock_verdict_t *verdict) {
  state_t *s = (state_t *)instance;
  (void)frame;
  switch (s->mode) {
    case 'k':
      verdict->kind = 7;
      return ODOCK_OK;
    case 's':
      verdict->kind = ODOCK_VERDICT_BLOCK;
      verdict->http_status = 200;
      return ODOCK_OK;
    case 'd': {
      odock_status_t st = s->host->set_header(call, view("x-sneaky", 8), view("1", 1));
      int n = snprintf(s->text, sizeof s->text, "%u", (unsigned)st);
      return s->host->emit_evidence(call, view("misbehaving.status", 18), view(s->text, (size_t)n));
    }
    case 'e':
      return ODOCK_ERR_FAILED;
    default:
      return ODOCK_OK;
  }
}

static const odock_plugin_descriptor_t DESCRIPTOR = {
    sizeof(odock_plugin_descriptor_t),
    DESCRIPTOR_MAJOR,
    ODOCK_PLUGIN_ABI_MINOR,
    {(const uint8_t *)"misbehaving", 11},
    {(const uint8_t *)"0.1.0", 5},
    {(const uint8_t *)"{}", 2},
    NULL,
    0,
    ODOCK_CAP_BLOCK | ODOCK_CAP_EMIT_EVIDENCE,
    ODOCK_GATE_REQUEST,
    ODOCK_RESPONSE_WHOLE_BODY,
    m_init,
    m_destroy,
    m_on_request,
    NULL,
    NULL,
    NULL,
    NULL,
};

ODOCK_PLUGIN_EXPORT const odock_plugin_descriptor_t *odock_plugin_entry_v1(void) {
  return &DESCRIPTOR;
}
