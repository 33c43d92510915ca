/*
 * odock_plugin.h: the Odock plugin ABI, version 1.0.
 *
 * This header is the whole contract between the Odock dataplane (the *host*)
 * and a native plugin (a shared library). Nothing else is promised: if this
 * file does not say it, a plugin may not rely on it.
 *
 * SPDX-License-Identifier: Apache-2.0
 *
 * ===========================================================================
 * 1. Shape
 * ===========================================================================
 *
 * A plugin is a shared library that exports one function,
 *
 *     const odock_plugin_descriptor_t *odock_plugin_entry_v1(void);
 *
 * returning a descriptor that lives as long as the library: who the plugin
 * is, which gates it joins, which capabilities it asks for, and the
 * functions the host calls. The host then, on every worker:
 *
 *     init(host table, config, worker index)  -> instance
 *     on_request / on_response / on_complete  -> verdict   (per frame)
 *     on_integration_answer                   -> verdict   (after a pause)
 *     on_followup                                          (off the hot path)
 *     destroy(instance)
 *
 * Functions the plugin exports to the host are named on_* (hooks); functions
 * the host gives the plugin live in odock_host_api_t (host calls). The two
 * never mix.
 *
 * ===========================================================================
 * 2. Gates
 * ===========================================================================
 *
 * request   Before any upstream work. The plugin may continue, block with a
 *           user-visible reason, transform request headers, metadata and
 *           body, start an integration call and pause until it answers,
 *           emit evidence, queue follow-up work.
 * response  After the upstream answers, before the caller sees it. Called
 *           once with the whole body (ODOCK_RESPONSE_WHOLE_BODY) or once per
 *           chunk of a streamed (SSE) answer (ODOCK_RESPONSE_PER_CHUNK). The
 *           plugin may continue, block (the caller gets the block instead of
 *           the answer, or the stream ends there), transform response
 *           headers, metadata and body, emit evidence, queue follow-up work.
 * complete  After the caller has the response. The plugin may only emit
 *           evidence and queue follow-up work (webhooks, email, analytics);
 *           its verdict must be CONTINUE.
 *
 * A chain of plugins runs per gate in a fixed order. A BLOCK ends the chain:
 * later plugins do not run.
 *
 * ===========================================================================
 * 3. Stability rules (the promise)
 * ===========================================================================
 *
 * R1. The major version is in the entry symbol's name. A host speaking
 *     major 1 looks up odock_plugin_entry_v1 and nothing else; a plugin
 *     built for major 2 exports odock_plugin_entry_v2 and is refused with an
 *     error that says so. Within a major version nothing is ever removed,
 *     reordered, resized or given a new meaning.
 * R2. A minor version only appends: fields at the end of a struct, host
 *     calls at the end of odock_host_api_t, new constants (capability bits,
 *     status codes, flags). Readers treat an unknown status code as a
 *     failure and ignore unknown flag bits.
 * R3. Every struct the two sides exchange starts with `uint32_t size`, its
 *     size in bytes as the writer knows it. A reader touches a field only if
 *     the field lies entirely within `size` (use ODOCK_HAS_FIELD); a field
 *     beyond it reads as zero / NULL. The exceptions are the value types
 *     that travel in arrays or by value (odock_host_view_t,
 *     odock_plugin_view_t, odock_header_t, odock_message_t): they are frozen
 *     for the whole major version, and a minor that needs more adds a
 *     parallel array instead.
 * R4. The descriptor's abi_minor is the lowest host minor the plugin needs.
 *     A host refuses a plugin whose abi_minor is above its own. A plugin
 *     that wants to run on older hosts sets a lower abi_minor and checks
 *     ODOCK_HAS_FIELD(odock_host_api_t, host, fn) before a newer host call.
 * R5. Bytes travel as {ptr, len} views, never as NUL-terminated strings.
 *     A view with len 0 may have any ptr, including NULL. A view with
 *     len > 0 and ptr NULL is invalid. Text (names, reasons, kinds) is
 *     UTF-8; everything else is raw bytes.
 * R6. Ownership is in the type name:
 *       odock_host_view_t     bytes the host owns; the plugin may read
 *                             them until the hook that received them
 *                             returns (config: until destroy).
 *       odock_plugin_view_t   bytes the plugin owns; the host reads them
 *                             during the host call that received them and
 *                             copies what it keeps. In the descriptor they
 *                             must live as long as the library; in a
 *                             verdict until the next hook on the same
 *                             instance, or destroy.
 *       odock_instance_t *    the plugin's per-worker state; opaque to the
 *                             host, freed by the plugin's destroy.
 *       odock_call_t *        the host's handle for one hook invocation;
 *                             opaque to the plugin, valid only until that
 *                             hook returns, never to be stored.
 * R7. No unwinding, exception or longjmp crosses the boundary in either
 *     direction. Failures travel as odock_status_t.
 *
 * ===========================================================================
 * 4. Threads and failure
 * ===========================================================================
 *
 * The host creates one instance per worker (one worker per core). An
 * instance is never called from two threads at once, but successive calls
 * may come from different threads: keep per-instance state in the instance
 * and shared state (rare) synchronized by the plugin. Hooks run on the
 * request's hot path: do not block, do not sleep, do not do I/O; use
 * call_integration (then PAUSE) or queue_followup instead.
 *
 * A hook that returns an error status, returns a malformed verdict, or uses
 * a capability it was not granted is handled by the plugin's failure mode,
 * which the operator chooses per binding: enforce (the request is blocked),
 * enforce_ignore_error (the request continues and evidence records the
 * error), permissive (verdicts are recorded, not enforced), disabled.
 *
 * The plugin runs inside the host process. A plugin that crashes (a bad
 * pointer, an abort, a stack overflow) takes the whole gateway process with
 * it; no status code can report that. Vendors who cannot rule it out should
 * ask for the out-of-process host (a later release).
 *
 * ===========================================================================
 * 5. Least privilege
 * ===========================================================================
 *
 * The descriptor asks for capabilities (ODOCK_CAP_*) and, with
 * ODOCK_CAP_CALL_INTEGRATION, names every integration it may call. The
 * operator grants capabilities and integration names per plugin and scope;
 * a plugin that asks for more than it is granted does not load. At run time
 * the host honours only what was both asked for and granted:
 *   - a host call outside that set returns ODOCK_ERR_DENIED and leaves a
 *     capability_denied evidence record;
 *   - frame fields the plugin may not read arrive empty: identity is NULL
 *     without ODOCK_CAP_READ_IDENTITY; headers have length 0 without
 *     ODOCK_CAP_READ_HEADERS; the request body, messages and tool arguments
 *     are empty without ODOCK_CAP_READ_REQUEST_BODY; the response body and
 *     chunk are empty without ODOCK_CAP_READ_RESPONSE_BODY;
 *   - a BLOCK verdict without ODOCK_CAP_BLOCK is a denied capability, and
 *     the call counts as failed.
 * The target (model, MCP server and tool), the stream flag and the MCP
 * method are routing facts and are always visible.
 */
#ifndef ODOCK_PLUGIN_H
#define ODOCK_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Versions and the entry symbol                                            */
/* ------------------------------------------------------------------------ */

/** The major version of this header. It is part of the entry symbol. */
#define ODOCK_PLUGIN_ABI_MAJOR 1
/** The minor version of this header: what this header's structs contain. */
#define ODOCK_PLUGIN_ABI_MINOR 0

/** The name of the entry symbol of major version 1, as a C string. */
#define ODOCK_PLUGIN_ENTRY_SYMBOL "odock_plugin_entry_v1"

/** Marks the entry function as exported from the shared library. */
#if defined(_WIN32)
#define ODOCK_PLUGIN_EXPORT __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define ODOCK_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define ODOCK_PLUGIN_EXPORT
#endif

/**
 * True when the struct at `ptr`, of type `type`, is large enough, by its own
 * `size` field, to contain `field` entirely (rule R3).
 */
#define ODOCK_HAS_FIELD(type, ptr, field)                                     \
  ((ptr)->size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */
/* ------------------------------------------------------------------------ */

/**
 * The result of every host call and every hook. 0 is success; any other
 * value is a failure. New codes may be appended by a minor version; treat an
 * unknown code as a failure.
 */
typedef uint32_t odock_status_t;

enum odock_status_code {
  /** Success. */
  ODOCK_OK = 0,
  /** The capability (or integration name) is not granted to this plugin. */
  ODOCK_ERR_DENIED = 1,
  /** A malformed argument: NULL where data is required, a view with len > 0
   *  and ptr NULL, text that is not UTF-8, a header name that is not an
   *  HTTP token, a JSON pointer that does not start with '/'. */
  ODOCK_ERR_INVALID_ARGUMENT = 2,
  /** A byte range outside the body or chunk it is meant for. */
  ODOCK_ERR_OUT_OF_RANGE = 3,
  /** The host call is not available during this hook (for example
   *  set_header during on_complete, or any host call after the hook has
   *  returned). */
  ODOCK_ERR_WRONG_GATE = 4,
  /** A per-call budget is spent (transforms, bytes, evidence records,
   *  integration calls, follow-ups). */
  ODOCK_ERR_LIMIT_EXCEEDED = 5,
  /** The host does not offer this call. */
  ODOCK_ERR_UNSUPPORTED = 6,
  /** Returned by init: the configuration is not acceptable. */
  ODOCK_ERR_INVALID_CONFIG = 7,
  /** Returned by a hook: the plugin failed to decide. */
  ODOCK_ERR_FAILED = 8,
  /** Returned by a hook: the plugin's language runtime caught a panic or an
   *  exception at the boundary (the Rust SDK does this for every panic). */
  ODOCK_ERR_PANICKED = 9,
  /** The host failed while serving a host call; not the plugin's fault. */
  ODOCK_ERR_HOST_INTERNAL = 10
};

/* ------------------------------------------------------------------------ */
/* Bit sets and enumerations (all travel as fixed-width integers)           */
/* ------------------------------------------------------------------------ */

/** Gates: bits of odock_plugin_descriptor_t.gates, and the value of
 *  odock_frame_t.gate (exactly one bit). */
enum odock_gate {
  ODOCK_GATE_REQUEST = 1u << 0,
  ODOCK_GATE_RESPONSE = 1u << 1,
  ODOCK_GATE_COMPLETE = 1u << 2
};

/** Capabilities: bits of odock_plugin_descriptor_t.capabilities (uint64_t).
 *  See section 5 for what each one governs. */
#define ODOCK_CAP_READ_IDENTITY ((uint64_t)1 << 0)
#define ODOCK_CAP_READ_REQUEST_BODY ((uint64_t)1 << 1)
#define ODOCK_CAP_WRITE_REQUEST_BODY ((uint64_t)1 << 2)
#define ODOCK_CAP_READ_RESPONSE_BODY ((uint64_t)1 << 3)
#define ODOCK_CAP_WRITE_RESPONSE_BODY ((uint64_t)1 << 4)
#define ODOCK_CAP_READ_HEADERS ((uint64_t)1 << 5)
/** Also governs set_metadata. */
#define ODOCK_CAP_WRITE_HEADERS ((uint64_t)1 << 6)
#define ODOCK_CAP_BLOCK ((uint64_t)1 << 7)
#define ODOCK_CAP_EMIT_EVIDENCE ((uint64_t)1 << 8)
/** Only the integrations named in the descriptor (and granted). */
#define ODOCK_CAP_CALL_INTEGRATION ((uint64_t)1 << 9)
#define ODOCK_CAP_QUEUE_FOLLOWUP ((uint64_t)1 << 10)

/** How the response gate sees a response body
 *  (odock_plugin_descriptor_t.response_mode). */
enum odock_response_mode {
  /** One call per response with the whole body in `body`. The host buffers
   *  a streamed answer until it ends. */
  ODOCK_RESPONSE_WHOLE_BODY = 0,
  /** One call per chunk (an SSE event, or a piece of a plain body) with the
   *  chunk in `chunk`; `body` is empty. Nothing is buffered. */
  ODOCK_RESPONSE_PER_CHUNK = 1
};

/** What a hook decided (odock_verdict_t.kind). */
enum odock_verdict_kind {
  /** Go on: the next plugin, then the upstream or the caller. */
  ODOCK_VERDICT_CONTINUE = 0,
  /** Stop here and answer the caller with http_status and reason. Needs
   *  ODOCK_CAP_BLOCK. Not valid at the complete gate. */
  ODOCK_VERDICT_BLOCK = 1,
  /** Hold the frame until the integration call whose token is in
   *  pause_token answers; the host then calls on_integration_answer. Only
   *  at the request gate, and only with a token this very hook obtained
   *  from call_integration. */
  ODOCK_VERDICT_PAUSE = 2
};

/** What a frame's target is (odock_target_t.kind). */
enum odock_target_kind {
  ODOCK_TARGET_NONE = 0,
  /** An LLM call: `model` is set. */
  ODOCK_TARGET_MODEL = 1,
  /** An MCP call: `mcp_server` and `mcp_tool` (for tools/call) are set. */
  ODOCK_TARGET_MCP = 2
};

/** The role of one message in the parse-once index (odock_message_t.role).
 *  The original spelling is always in role_name. */
enum odock_role {
  ODOCK_ROLE_OTHER = 0,
  ODOCK_ROLE_SYSTEM = 1,
  ODOCK_ROLE_USER = 2,
  ODOCK_ROLE_ASSISTANT = 3,
  ODOCK_ROLE_TOOL = 4,
  ODOCK_ROLE_DEVELOPER = 5
};

/** Bits of odock_index_t.flags. */
#define ODOCK_INDEX_STREAM ((uint32_t)1 << 0) /* the caller asked to stream */
/* The body did not parse as its API's JSON (malformed, truncated, nested too
 * deep): the frame still passes the gates, and the index's views hold only
 * what was read before the fault. A plugin decides what that means. */
#define ODOCK_INDEX_INVALID ((uint32_t)1 << 1)

/** Bits of odock_response_t.flags. */
#define ODOCK_RESPONSE_LAST_CHUNK ((uint32_t)1 << 0) /* no chunk follows */

/** Outcome of an integration call (odock_integration_answer_t.outcome). */
enum odock_answer_outcome {
  ODOCK_ANSWER_OK = 0,
  ODOCK_ANSWER_TIMEOUT = 1,
  ODOCK_ANSWER_FAILED = 2
};

/** Levels of the log host call. */
enum odock_log_level {
  ODOCK_LOG_ERROR = 1,
  ODOCK_LOG_WARN = 2,
  ODOCK_LOG_INFO = 3,
  ODOCK_LOG_DEBUG = 4,
  ODOCK_LOG_TRACE = 5
};

/* ------------------------------------------------------------------------ */
/* Views (frozen value types, rule R3)                                      */
/* ------------------------------------------------------------------------ */

/** Bytes owned by the host, lent to the plugin (rule R6). */
typedef struct odock_host_view {
  const uint8_t *ptr;
  size_t len;
} odock_host_view_t;

/** Bytes owned by the plugin, lent to the host (rule R6). */
typedef struct odock_plugin_view {
  const uint8_t *ptr;
  size_t len;
} odock_plugin_view_t;

/** One HTTP header as it arrived (case preserved, not decoded). */
typedef struct odock_header {
  odock_host_view_t name;
  odock_host_view_t value;
} odock_header_t;

/** One message of an LLM request, from the parse-once index. */
typedef struct odock_message {
  /** enum odock_role. */
  uint32_t role;
  uint32_t reserved;
  /** The role as spelled in the request. */
  odock_host_view_t role_name;
  /** The raw JSON text of the message's content (a string with its quotes
   *  and escapes, or an array of parts), a view into the original body. */
  odock_host_view_t content;
} odock_message_t;

/* ------------------------------------------------------------------------ */
/* Opaque handles (rule R6)                                                 */
/* ------------------------------------------------------------------------ */

/** The plugin's per-worker state. The host never looks inside. */
typedef struct odock_instance odock_instance_t;

/** The host's handle for one hook invocation, passed back to host calls. */
typedef struct odock_call odock_call_t;

/* ------------------------------------------------------------------------ */
/* The frame view (host-owned, read-only, valid until the hook returns)     */
/* ------------------------------------------------------------------------ */

/** Who is calling. NULL in the frame without ODOCK_CAP_READ_IDENTITY. */
typedef struct odock_identity {
  uint32_t size;
  uint32_t reserved;
  odock_host_view_t tenant;
  odock_host_view_t virtual_key_id;
  odock_host_view_t environment;
} odock_identity_t;

/** What is being called. Always present. */
typedef struct odock_target {
  uint32_t size;
  /** enum odock_target_kind. */
  uint32_t kind;
  odock_host_view_t model;
  odock_host_view_t mcp_server;
  odock_host_view_t mcp_tool;
} odock_target_t;

/** The parse-once index of the request body. Always present; the content
 *  views are empty without ODOCK_CAP_READ_REQUEST_BODY. All views point into
 *  the original request body, raw JSON text, not decoded. */
typedef struct odock_index {
  uint32_t size;
  /** ODOCK_INDEX_* bits. */
  uint32_t flags;
  const odock_message_t *messages;
  size_t messages_len;
  /** The JSON-RPC method of an MCP call (for example tools/call). */
  odock_host_view_t mcp_method;
  /** The raw JSON text of an MCP tools/call's arguments. */
  odock_host_view_t tool_arguments;
} odock_index_t;

/** The request as the caller sent it. Always present. */
typedef struct odock_request {
  uint32_t size;
  uint32_t reserved;
  /** Empty without ODOCK_CAP_READ_HEADERS. */
  const odock_header_t *headers;
  size_t headers_len;
  /** The raw body. Empty without ODOCK_CAP_READ_REQUEST_BODY. */
  odock_host_view_t body;
} odock_request_t;

/** The upstream's answer. NULL at the request gate. */
typedef struct odock_response {
  uint32_t size;
  /** The HTTP status of the upstream's answer. */
  uint32_t status;
  /** Empty without ODOCK_CAP_READ_HEADERS. */
  const odock_header_t *headers;
  size_t headers_len;
  /** The whole body (ODOCK_RESPONSE_WHOLE_BODY, and at the complete gate
   *  when the host kept it). Empty without ODOCK_CAP_READ_RESPONSE_BODY. */
  odock_host_view_t body;
  /** The current chunk (ODOCK_RESPONSE_PER_CHUNK). Empty without
   *  ODOCK_CAP_READ_RESPONSE_BODY. */
  odock_host_view_t chunk;
  /** 0 for the first chunk, then counting up. */
  uint64_t chunk_index;
  /** ODOCK_RESPONSE_* bits. */
  uint32_t flags;
  uint32_t reserved;
} odock_response_t;

/** Everything a gate hook receives about one request. */
typedef struct odock_frame {
  uint32_t size;
  /** The gate being run: one ODOCK_GATE_* bit. */
  uint32_t gate;
  /** The request's id, the same at every gate and in every evidence record. */
  uint64_t request_id;
  const odock_identity_t *identity;
  const odock_target_t *target;
  const odock_index_t *index;
  const odock_request_t *request;
  const odock_response_t *response;
} odock_frame_t;

/* ------------------------------------------------------------------------ */
/* Verdicts (host-owned struct, filled by the plugin)                       */
/* ------------------------------------------------------------------------ */

/**
 * The host zeroes the verdict, sets `size` and kind = CONTINUE before every
 * hook, so a hook that returns ODOCK_OK without touching it continues. A hook
 * writes only fields within `size`. The host reads the verdict only when the
 * hook returns ODOCK_OK.
 */
typedef struct odock_verdict {
  uint32_t size;
  /** enum odock_verdict_kind. Any other value is a malformed verdict. */
  uint32_t kind;
  /** BLOCK: the HTTP status the caller receives, 400 to 599. */
  uint32_t http_status;
  uint32_t reserved;
  /** BLOCK: the reason the caller reads. UTF-8, at most 1024 bytes. Say
   *  what the caller can act on; keep internals out. */
  odock_plugin_view_t reason;
  /** BLOCK: the internal detail, kept apart: it goes to evidence and never
   *  to the caller. Any bytes, at most 4096. */
  odock_plugin_view_t detail;
  /** PAUSE: the token call_integration returned during this hook. */
  uint64_t pause_token;
} odock_verdict_t;

/* ------------------------------------------------------------------------ */
/* Lifecycle arguments                                                      */
/* ------------------------------------------------------------------------ */

/** What init receives besides the host table. */
typedef struct odock_init_args {
  uint32_t size;
  /** The index of the worker this instance serves (0-based). */
  uint32_t worker_index;
  /** The binding's configuration, already validated by control against the
   *  descriptor's config_schema. Valid until destroy. */
  odock_host_view_t config;
} odock_init_args_t;

/** The answer to an integration call, handed to on_integration_answer. */
typedef struct odock_integration_answer {
  uint32_t size;
  /** enum odock_answer_outcome. */
  uint32_t outcome;
  /** The token call_integration returned. */
  uint64_t token;
  /** The integration's answer (empty unless outcome is ODOCK_ANSWER_OK). */
  odock_host_view_t body;
} odock_integration_answer_t;

/* ------------------------------------------------------------------------ */
/* The host table: calls the host offers the plugin                         */
/* ------------------------------------------------------------------------ */

/**
 * Handed to init; valid until destroy. Every call takes the odock_call_t *
 * of the hook being run and returns an odock_status_t. Which hook may use
 * which call:
 *
 *   call                 init  request  response  complete  answer  followup
 *   log, read_config      x      x         x         x         x        x
 *   set/remove_header,           x         x                   x
 *   set_metadata
 *   replace_body_*               x         x                   x
 *   emit_evidence                x         x         x         x        x
 *   call_integration             x                             x
 *   queue_followup               x         x         x         x
 *
 * (answer: on_integration_answer, which acts at the gate it paused.)
 * Outside its column a call returns ODOCK_ERR_WRONG_GATE. Capabilities are
 * checked first: a call the plugin is not granted returns ODOCK_ERR_DENIED
 * wherever it is made.
 */
typedef struct odock_host_api {
  uint32_t size;
  /** The host's ABI version. */
  uint16_t abi_major;
  uint16_t abi_minor;

  /** Writes a diagnostic line to the host's log (not evidence). Any level
   *  may be dropped or rate-limited by the host. No capability. */
  odock_status_t (*log)(odock_call_t *call, uint32_t level,
                        odock_plugin_view_t message);

  /** Sets *out_config to the binding's configuration (the bytes init saw).
   *  No capability. */
  odock_status_t (*read_config)(odock_call_t *call,
                                odock_host_view_t *out_config);

  /** Sets a header on the request (request gate) or the response (response
   *  gate), replacing any header of the same name (case-insensitive).
   *  `name` must be an HTTP token; `value` must hold no CR, LF or NUL.
   *  ODOCK_CAP_WRITE_HEADERS. */
  odock_status_t (*set_header)(odock_call_t *call, odock_plugin_view_t name,
                               odock_plugin_view_t value);

  /** Removes every header of this name. ODOCK_CAP_WRITE_HEADERS. */
  odock_status_t (*remove_header)(odock_call_t *call,
                                  odock_plugin_view_t name);

  /** Sets a request-scoped metadata entry (billing tags, trace ids) that
   *  later gates and evidence see. `key` is UTF-8. ODOCK_CAP_WRITE_HEADERS. */
  odock_status_t (*set_metadata)(odock_call_t *call, odock_plugin_view_t key,
                                 odock_plugin_view_t value);

  /** Replaces `length` bytes at `offset` of the request body (request gate)
   *  or of the response body or current chunk (response gate, by the
   *  plugin's response mode) with `bytes`. Copy-on-write: the original
   *  stays intact; the host applies the change after the hook. Offsets are
   *  in the original bytes; ranges of one hook must not overlap.
   *  ODOCK_CAP_WRITE_REQUEST_BODY or ODOCK_CAP_WRITE_RESPONSE_BODY. */
  odock_status_t (*replace_body_range)(odock_call_t *call, uint64_t offset,
                                       uint64_t length,
                                       odock_plugin_view_t bytes);

  /** Replaces the JSON value at `json_pointer` (RFC 6901, for example
   *  "/messages/0/content") of the body with `json_value`, a complete JSON
   *  text. Copy-on-write as above. Same capabilities as replace_body_range.
   *  In ODOCK_RESPONSE_PER_CHUNK mode a chunk is no whole JSON text: use
   *  replace_body_range there (this call returns ODOCK_ERR_UNSUPPORTED). */
  odock_status_t (*replace_body_field)(odock_call_t *call,
                                       odock_plugin_view_t json_pointer,
                                       odock_plugin_view_t json_value);

  /** Adds one evidence record of the plugin's own: `kind` (UTF-8, 1 to 64
   *  bytes, for example "model_guard.allowed") and `data` (any bytes, at
   *  most 64 KiB). The host stamps request id, gate, plugin and time.
   *  ODOCK_CAP_EMIT_EVIDENCE. */
  odock_status_t (*emit_evidence)(odock_call_t *call, odock_plugin_view_t kind,
                                  odock_plugin_view_t data);

  /** Starts a call to the integration `name` (one the descriptor lists and
   *  the grant allows) with `payload`, answered within `timeout_ms` (1 or
   *  more) or with ODOCK_ANSWER_TIMEOUT. Never blocks: the call starts
   *  once the hook returns PAUSE with *out_token as pause_token, and its
   *  answer arrives in on_integration_answer. A call not paused on is
   *  dropped. ODOCK_CAP_CALL_INTEGRATION. */
  odock_status_t (*call_integration)(odock_call_t *call,
                                     odock_plugin_view_t name,
                                     odock_plugin_view_t payload,
                                     uint32_t timeout_ms,
                                     uint64_t *out_token);

  /** Queues work to run later, off the hot path, on the same worker: the
   *  host calls the plugin's on_followup with `kind` (UTF-8, 1 to 64 bytes)
   *  and `payload`. ODOCK_CAP_QUEUE_FOLLOWUP. */
  odock_status_t (*queue_followup)(odock_call_t *call,
                                   odock_plugin_view_t kind,
                                   odock_plugin_view_t payload);
} odock_host_api_t;

/* ------------------------------------------------------------------------ */
/* Hooks: functions the plugin gives the host                               */
/* ------------------------------------------------------------------------ */

/**
 * Creates the instance for one worker. `host` lives until destroy; keep it.
 * `call` serves log and read_config during init only. On success, set
 * *out_instance (NULL is allowed for a stateless plugin) and return
 * ODOCK_OK; return ODOCK_ERR_INVALID_CONFIG for a configuration the plugin
 * cannot use.
 */
typedef odock_status_t (*odock_init_fn)(const odock_host_api_t *host,
                                        odock_call_t *call,
                                        const odock_init_args_t *args,
                                        odock_instance_t **out_instance);

/** Frees an instance init created. Called once, after its last hook. */
typedef void (*odock_destroy_fn)(odock_instance_t *instance);

/**
 * A gate hook: on_request, on_response or on_complete. `frame` is valid until
 * the hook returns; `verdict` is pre-filled with CONTINUE. Return ODOCK_OK
 * with the verdict filled, or an error status (the plugin's failure mode
 * decides what happens).
 */
typedef odock_status_t (*odock_gate_fn)(odock_instance_t *instance,
                                        odock_call_t *call,
                                        const odock_frame_t *frame,
                                        odock_verdict_t *verdict);

/**
 * Receives the answer to the integration call a gate hook paused on, with
 * the same frame it paused. Decides like a gate hook: CONTINUE, BLOCK, or
 * PAUSE again on a new call it starts here.
 */
typedef odock_status_t (*odock_answer_fn)(
    odock_instance_t *instance, odock_call_t *call, const odock_frame_t *frame,
    const odock_integration_answer_t *answer, odock_verdict_t *verdict);

/** Runs one piece of work queue_followup queued, off the hot path. */
typedef odock_status_t (*odock_followup_fn)(odock_instance_t *instance,
                                            odock_call_t *call,
                                            odock_host_view_t kind,
                                            odock_host_view_t payload);

/* ------------------------------------------------------------------------ */
/* The descriptor                                                           */
/* ------------------------------------------------------------------------ */

/**
 * Who the plugin is and what it needs. Returned by the entry function; it
 * and every view it holds must live as long as the library is loaded (a
 * `static const` object is the usual choice).
 */
typedef struct odock_plugin_descriptor {
  /** sizeof(odock_plugin_descriptor_t) as the plugin was built. */
  uint32_t size;
  /** ODOCK_PLUGIN_ABI_MAJOR. */
  uint16_t abi_major;
  /** The lowest host minor the plugin needs (rule R4); usually
   *  ODOCK_PLUGIN_ABI_MINOR. */
  uint16_t abi_minor;
  /** The plugin's name as registered with control: UTF-8, 1 to 64 bytes of
   *  [a-z0-9._-]. */
  odock_plugin_view_t name;
  /** The plugin's own version (for example "1.4.2"), UTF-8, 1 to 64 bytes. */
  odock_plugin_view_t version;
  /** A JSON Schema (UTF-8) of the configuration init accepts; control
   *  validates every binding's configuration against it and names the
   *  offending field. */
  odock_plugin_view_t config_schema;
  /** The integrations the plugin may call (with ODOCK_CAP_CALL_INTEGRATION),
   *  by name; an array of integrations_len views. */
  const odock_plugin_view_t *integrations;
  size_t integrations_len;
  /** ODOCK_CAP_* bits the plugin asks for. */
  uint64_t capabilities;
  /** ODOCK_GATE_* bits: the gates the plugin joins (at least one). */
  uint32_t gates;
  /** enum odock_response_mode; matters only with ODOCK_GATE_RESPONSE. */
  uint32_t response_mode;
  /** Required. */
  odock_init_fn init;
  /** Required. */
  odock_destroy_fn destroy;
  /** Required exactly for the gates joined; NULL otherwise. */
  odock_gate_fn on_request;
  odock_gate_fn on_response;
  odock_gate_fn on_complete;
  /** Required with ODOCK_CAP_CALL_INTEGRATION. */
  odock_answer_fn on_integration_answer;
  /** Required with ODOCK_CAP_QUEUE_FOLLOWUP. */
  odock_followup_fn on_followup;
} odock_plugin_descriptor_t;

/** The type of the entry function. */
typedef const odock_plugin_descriptor_t *(*odock_plugin_entry_fn)(void);

/**
 * The entry function every plugin of major version 1 defines and exports:
 *
 *     ODOCK_PLUGIN_EXPORT const odock_plugin_descriptor_t *
 *     odock_plugin_entry_v1(void) { return &my_descriptor; }
 *
 * It may be called more than once and must return the same descriptor. It
 * must not do anything else: no allocation, no threads, no I/O.
 */
ODOCK_PLUGIN_EXPORT const odock_plugin_descriptor_t *
odock_plugin_entry_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* ODOCK_PLUGIN_H */
