/*
 * A plugin in C for the runtime tests. Its config is a list of commands
 * separated by ';', run in order at the request gate:
 *   header:NAME=VALUE   set a request header
 *   echo:NAME           set header "x-saw-NAME" to NAME's value as seen
 *                       (or "none"), to show what earlier plugins did
 *   sleep:MS            sleep MS milliseconds
 *   block:STATUS:REASON block with STATUS and REASON
 *   redact:WORD         replace every WORD in the body with '*'s
 *   field:PTR=JSON      replace the body's value at JSON pointer PTR
 *   deny                call call_integration, which it never asked for
 *   fail                return ODOCK_ERR_FAILED
 *   require-valid       block 400 when the body's index is marked invalid
 *   evidence:KIND       emit an evidence record of KIND
 *   followup:KIND       (built with -DWITH_FOLLOWUPS) queue follow-up work of
 *                       KIND; its run emits evidence "followup.done", after
 *                       failing as often as a "fails:N" command says
 *   fails:N             (with -DWITH_FOLLOWUPS) the first N follow-up runs fail
 *   pause:MS            (built with -DWITH_APPROVALS) call the integration
 *                       "approvals" with the request body, timeout MS, and
 *                       pause; on the answer: "approve" continues with
 *                       header x-approved=1, anything else blocks 403, a
 *                       timeout blocks 504
 * The config "fail-init" makes init refuse. Build with
 * -DPLUGIN_NAME='"name"' for a plugin of another name. At the response
 * gate the same commands act on the response (redact: on the chunk in
 * per-chunk mode, else on the whole body; echo: response headers). Build
 * with -DRESPONSE_MODE=ODOCK_RESPONSE_PER_CHUNK for a per-chunk plugin.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "odock_plugin.h"

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "probe"
#endif
#ifndef RESPONSE_MODE
#define RESPONSE_MODE ODOCK_RESPONSE_WHOLE_BODY
#endif

typedef struct {
  const odock_host_api_t *host;
  long fails_left;
  size_t len;
  char config[];
} state_t;

static odock_plugin_view_t pv(const char *s, size_t n) {
  odock_plugin_view_t v;
  v.ptr = (const uint8_t *)s;
  v.len = n;
  return v;
}

static odock_status_t p_init(const odock_host_api_t *host, odock_call_t *call,
                             const odock_init_args_t *args, odock_instance_t **out) {
  (void)call;
  if (args->config.len == 9 && memcmp(args->config.ptr, "fail-init", 9) == 0)
    return ODOCK_ERR_INVALID_CONFIG;
  state_t *s = malloc(sizeof *s + args->config.len + 1);
  if (s == NULL) return ODOCK_ERR_FAILED;
  s->host = host;
  s->fails_left = 0;
  s->len = args->config.len;
  memcpy(s->config, args->config.ptr, args->config.len);
  s->config[s->len] = '\0';
  {
    const char *f = strstr(s->config, "fails:");
    if (f != NULL) s->fails_left = strtol(f + 6, NULL, 10);
  }
  *out = (odock_instance_t *)s;
  return ODOCK_OK;
}

static void p_destroy(odock_instance_t *instance) { free(instance); }

/* Does `cmd` (of length n) start with `prefix`? */
static int starts(const char *cmd, size_t n, const char *prefix) {
  size_t p = strlen(prefix);
  return n >= p && memcmp(cmd, prefix, p) == 0;
}

static const odock_host_view_t *find_header(const odock_frame_t *frame, const char *name, size_t n) {
  const odock_header_t *headers = frame->request->headers;
  size_t len = frame->request->headers_len;
  if (frame->gate == ODOCK_GATE_RESPONSE) {
    headers = frame->response->headers;
    len = frame->response->headers_len;
  }
  for (size_t i = 0; i < len; i++) {
    const odock_header_t *h = &headers[i];
    if (h->name.len == n && strncasecmp((const char *)h->name.ptr, name, n) == 0) return &h->value;
  }
  return NULL;
}

static odock_status_t run(state_t *s, odock_call_t *call, const odock_frame_t *frame,
                          odock_verdict_t *verdict, const char *cmd, size_t n) {
  const odock_host_api_t *h = s->host;
  if (starts(cmd, n, "header:")) {
    const char *kv = cmd + 7, *eq = memchr(kv, '=', n - 7);
    if (eq == NULL) return ODOCK_ERR_FAILED;
    return h->set_header(call, pv(kv, (size_t)(eq - kv)), pv(eq + 1, n - 7 - (size_t)(eq - kv) - 1));
  }
  if (starts(cmd, n, "echo:")) {
    static char name[128];
    size_t len = n - 5;
    if (len + 6 > sizeof name) return ODOCK_ERR_FAILED;
    memcpy(name, "x-saw-", 6);
    memcpy(name + 6, cmd + 5, len);
    const odock_host_view_t *v = find_header(frame, cmd + 5, len);
    odock_plugin_view_t value = v ? pv((const char *)v->ptr, v->len) : pv("none", 4);
    return h->set_header(call, pv(name, len + 6), value);
  }
  if (starts(cmd, n, "sleep:")) {
    long ms = strtol(cmd + 6, NULL, 10);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return ODOCK_OK;
  }
  if (starts(cmd, n, "block:")) {
    char *end;
    verdict->kind = ODOCK_VERDICT_BLOCK;
    verdict->http_status = (uint32_t)strtoul(cmd + 6, &end, 10);
    if (*end == ':') end++;
    verdict->reason = pv(end, n - (size_t)(end - cmd));
    verdict->detail = pv("internal: probe blocked on config", 33);
    return ODOCK_OK;
  }
  if (starts(cmd, n, "field:")) {
    const char *kv = cmd + 6, *eq = memchr(kv, '=', n - 6);
    if (eq == NULL) return ODOCK_ERR_FAILED;
    return h->replace_body_field(call, pv(kv, (size_t)(eq - kv)), pv(eq + 1, n - 6 - (size_t)(eq - kv) - 1));
  }
  if (starts(cmd, n, "redact:")) {
    const char *word = cmd + 7;
    size_t w = n - 7;
    static const char stars[] = "****************************************************************";
    odock_host_view_t body = frame->request->body;
    if (frame->gate == ODOCK_GATE_RESPONSE)
      body = RESPONSE_MODE == ODOCK_RESPONSE_PER_CHUNK ? frame->response->chunk : frame->response->body;
    if (w == 0 || w > sizeof stars - 1) return ODOCK_ERR_FAILED;
    for (size_t i = 0; i + w <= body.len; i++) {
      if (memcmp(body.ptr + i, word, w) == 0) {
        odock_status_t st = h->replace_body_range(call, i, w, pv(stars, w));
        if (st != ODOCK_OK) return st;
        i += w - 1;
      }
    }
    return ODOCK_OK;
  }
  if (n == 4 && memcmp(cmd, "deny", 4) == 0) {
    uint64_t token;
    odock_status_t st = h->call_integration(call, pv("approvals", 9), pv("{}", 2), 100, &token);
    return st == ODOCK_ERR_DENIED ? ODOCK_OK : ODOCK_ERR_FAILED;
  }
  if (n == 4 && memcmp(cmd, "fail", 4) == 0) return ODOCK_ERR_FAILED;
  if (n == 13 && memcmp(cmd, "require-valid", 13) == 0) {
    if (frame->index->flags & ODOCK_INDEX_INVALID) {
      verdict->kind = ODOCK_VERDICT_BLOCK;
      verdict->http_status = 400;
      verdict->reason = pv("the request body is not valid JSON", 34);
    }
    return ODOCK_OK;
  }
  if (starts(cmd, n, "evidence:")) return h->emit_evidence(call, pv(cmd + 9, n - 9), pv("{}", 2));
  if (starts(cmd, n, "fails:")) return ODOCK_OK;
#ifdef WITH_FOLLOWUPS
  if (starts(cmd, n, "followup:")) return h->queue_followup(call, pv(cmd + 9, n - 9), pv("{}", 2));
#endif
#ifdef WITH_APPROVALS
  if (starts(cmd, n, "pause:")) {
    uint64_t token = 0;
    uint32_t ms = (uint32_t)strtoul(cmd + 6, NULL, 10);
    const odock_host_view_t body = frame->request->body;
    odock_status_t st = h->call_integration(call, pv("approvals", 9), pv((const char *)body.ptr, body.len), ms, &token);
    if (st != ODOCK_OK) return st;
    verdict->kind = ODOCK_VERDICT_PAUSE;
    verdict->pause_token = token;
    return ODOCK_OK;
  }
#endif
  return ODOCK_ERR_FAILED;
}

static odock_status_t p_on_request(odock_instance_t *instance, odock_call_t *call,
                                   const odock_frame_t *frame, odock_verdict_t *verdict) {
  state_t *s = (state_t *)instance;
  const char *at = s->config, *end = s->config + s->len;
  while (at < end) {
    const char *semi = memchr(at, ';', (size_t)(end - at));
    size_t n = semi ? (size_t)(semi - at) : (size_t)(end - at);
    if (n > 0) {
      odock_status_t st = run(s, call, frame, verdict, at, n);
      if (st != ODOCK_OK) return st;
      if (verdict->kind != ODOCK_VERDICT_CONTINUE) return ODOCK_OK;
    }
    at += n + 1;
  }
  return ODOCK_OK;
}

#ifdef WITH_FOLLOWUPS
static odock_status_t p_on_followup(odock_instance_t *instance, odock_call_t *call, odock_host_view_t kind,
                                    odock_host_view_t payload) {
  state_t *s = (state_t *)instance;
  (void)payload;
  if (s->fails_left > 0) {
    s->fails_left--;
    return ODOCK_ERR_FAILED;
  }
  return s->host->emit_evidence(call, pv("followup.done", 13), pv((const char *)kind.ptr, kind.len));
}
#define CAP_FOLLOWUP ODOCK_CAP_QUEUE_FOLLOWUP
#define FOLLOWUP_HOOK p_on_followup
#else
#define CAP_FOLLOWUP 0
#define FOLLOWUP_HOOK NULL
#endif

#ifdef WITH_APPROVALS
static odock_status_t p_on_answer(odock_instance_t *instance, odock_call_t *call,
                                  const odock_frame_t *frame, const odock_integration_answer_t *answer,
                                  odock_verdict_t *verdict) {
  state_t *s = (state_t *)instance;
  (void)frame;
  if (answer->outcome == ODOCK_ANSWER_OK && answer->body.len == 7 && memcmp(answer->body.ptr, "approve", 7) == 0)
    return s->host->set_header(call, pv("x-approved", 10), pv("1", 1));
  verdict->kind = ODOCK_VERDICT_BLOCK;
  if (answer->outcome == ODOCK_ANSWER_TIMEOUT) {
    verdict->http_status = 504;
    verdict->reason = pv("the approval did not come in time", 33);
  } else {
    verdict->http_status = 403;
    verdict->reason = pv("the request was not approved", 28);
  }
  return ODOCK_OK;
}
static const odock_plugin_view_t INTEGRATIONS[] = {{(const uint8_t *)"approvals", 9}};
#define CAP_EXTRA ODOCK_CAP_CALL_INTEGRATION
#define INTEGRATIONS_PTR INTEGRATIONS
#define INTEGRATIONS_LEN 1
#define ANSWER_HOOK p_on_answer
#else
#define CAP_EXTRA 0
#define INTEGRATIONS_PTR NULL
#define INTEGRATIONS_LEN 0
#define ANSWER_HOOK NULL
#endif

static const odock_plugin_descriptor_t DESCRIPTOR = {
    sizeof(odock_plugin_descriptor_t),
    ODOCK_PLUGIN_ABI_MAJOR,
    ODOCK_PLUGIN_ABI_MINOR,
    {(const uint8_t *)PLUGIN_NAME, sizeof PLUGIN_NAME - 1},
    {(const uint8_t *)"0.1.0", 5},
    {(const uint8_t *)"{}", 2},
    INTEGRATIONS_PTR,
    INTEGRATIONS_LEN,
    CAP_EXTRA | CAP_FOLLOWUP | ODOCK_CAP_READ_IDENTITY | ODOCK_CAP_READ_HEADERS | ODOCK_CAP_WRITE_HEADERS |
        ODOCK_CAP_READ_REQUEST_BODY | ODOCK_CAP_WRITE_REQUEST_BODY | ODOCK_CAP_READ_RESPONSE_BODY |
        ODOCK_CAP_WRITE_RESPONSE_BODY | ODOCK_CAP_BLOCK | ODOCK_CAP_EMIT_EVIDENCE,
    ODOCK_GATE_REQUEST | ODOCK_GATE_RESPONSE | ODOCK_GATE_COMPLETE,
    RESPONSE_MODE,
    p_init,
    p_destroy,
    p_on_request,
    p_on_request,
    p_on_request,
    ANSWER_HOOK,
    FOLLOWUP_HOOK,
};

ODOCK_PLUGIN_EXPORT const odock_plugin_descriptor_t *odock_plugin_entry_v1(void) {
  return &DESCRIPTOR;
}
