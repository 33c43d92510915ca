/*
 * odock_json.h: a small, strict JSON reader for the C reference plugins'
 * configs. Header-only (every function is static inline), C99, no allocation:
 * the caller provides the node table.
 *
 * The reader builds a flat tree of nodes over the original bytes. Strings
 * are views of their raw content between the quotes; a string that holds
 * an escape is marked `escaped` (the plugins refuse those where they use
 * the text, rather than decode them). Numbers, true, false and null are
 * views of their raw text. Object members are key nodes (strings) whose
 * `child` is the value. Depth is limited to OJ_MAX_DEPTH.
 *
 * The config a plugin receives stays valid until destroy (odock_plugin.h,
 * odock_init_args_t.config), so a plugin may keep the node table and its
 * views for the instance's whole life.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#ifndef ODOCK_JSON_H
#define ODOCK_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define OJ_MAX_DEPTH 16

enum oj_type { OJ_NULL, OJ_BOOL, OJ_NUMBER, OJ_STRING, OJ_ARRAY, OJ_OBJECT };

typedef struct oj_node {
  uint8_t type;    /* enum oj_type */
  uint8_t escaped; /* strings: holds a backslash escape */
  int32_t child;   /* arrays, objects: first element or key; keys: the value */
  int32_t next;    /* the next element or key of the parent, or -1 */
  const uint8_t *ptr;
  size_t len;
} oj_node_t;

typedef struct oj_doc {
  oj_node_t *nodes;
  int32_t cap;
  int32_t count;
  const uint8_t *at;
  const uint8_t *end;
  const char *error; /* why parsing failed, for the plugin's log line */
} oj_doc_t;

static inline void oj_ws(oj_doc_t *d) {
  while (d->at < d->end && (*d->at == ' ' || *d->at == '\t' || *d->at == '\n' || *d->at == '\r')) d->at++;
}

static inline int32_t oj_new(oj_doc_t *d, uint8_t type) {
  if (d->count == d->cap) {
    d->error = "config too large";
    return -1;
  }
  oj_node_t *n = &d->nodes[d->count];
  memset(n, 0, sizeof *n);
  n->type = type;
  n->child = -1;
  n->next = -1;
  return d->count++;
}

static inline int32_t oj_value(oj_doc_t *d, int depth);

static inline int32_t oj_string(oj_doc_t *d) {
  int32_t i = oj_new(d, OJ_STRING);
  if (i < 0) return -1;
  const uint8_t *start = ++d->at; /* past the quote */
  while (d->at < d->end && *d->at != '"') {
    if (*d->at < 0x20) {
      d->error = "control character in a string";
      return -1;
    }
    if (*d->at == '\\') {
      d->nodes[i].escaped = 1;
      d->at++;
      if (d->at == d->end) break;
    }
    d->at++;
  }
  if (d->at == d->end) {
    d->error = "unterminated string";
    return -1;
  }
  d->nodes[i].ptr = start;
  d->nodes[i].len = (size_t)(d->at - start);
  d->at++;
  return i;
}

static inline int32_t oj_container(oj_doc_t *d, int depth, int object) {
  int32_t i = oj_new(d, object ? OJ_OBJECT : OJ_ARRAY);
  if (i < 0) return -1;
  const uint8_t close = object ? '}' : ']';
  d->at++;
  oj_ws(d);
  int32_t last = -1;
  if (d->at < d->end && *d->at == close) {
    d->at++;
    return i;
  }
  for (;;) {
    oj_ws(d);
    int32_t item;
    if (object) {
      if (d->at == d->end || *d->at != '"') {
        d->error = "expected a key";
        return -1;
      }
      item = oj_string(d);
      if (item < 0) return -1;
      oj_ws(d);
      if (d->at == d->end || *d->at != ':') {
        d->error = "expected ':'";
        return -1;
      }
      d->at++;
      int32_t v = oj_value(d, depth + 1);
      if (v < 0) return -1;
      d->nodes[item].child = v;
    } else {
      item = oj_value(d, depth + 1);
      if (item < 0) return -1;
    }
    if (last < 0) d->nodes[i].child = item;
    else d->nodes[last].next = item;
    last = item;
    oj_ws(d);
    if (d->at < d->end && *d->at == ',') {
      d->at++;
      continue;
    }
    if (d->at < d->end && *d->at == close) {
      d->at++;
      return i;
    }
    d->error = object ? "expected ',' or '}'" : "expected ',' or ']'";
    return -1;
  }
}

static inline int32_t oj_literal(oj_doc_t *d, const char *word, uint8_t type) {
  size_t n = strlen(word);
  if ((size_t)(d->end - d->at) < n || memcmp(d->at, word, n) != 0) {
    d->error = "not JSON";
    return -1;
  }
  int32_t i = oj_new(d, type);
  if (i < 0) return -1;
  d->nodes[i].ptr = d->at;
  d->nodes[i].len = n;
  d->at += n;
  return i;
}

static inline int32_t oj_number(oj_doc_t *d) {
  const uint8_t *start = d->at;
  if (d->at < d->end && *d->at == '-') d->at++;
  int digits = 0;
  while (d->at < d->end && ((*d->at >= '0' && *d->at <= '9') || *d->at == '.' || *d->at == 'e' ||
                            *d->at == 'E' || *d->at == '+' || *d->at == '-')) {
    digits += (*d->at >= '0' && *d->at <= '9');
    d->at++;
  }
  if (digits == 0) {
    d->error = "not JSON";
    return -1;
  }
  int32_t i = oj_new(d, OJ_NUMBER);
  if (i < 0) return -1;
  d->nodes[i].ptr = start;
  d->nodes[i].len = (size_t)(d->at - start);
  return i;
}

static inline int32_t oj_value(oj_doc_t *d, int depth) {
  if (depth > OJ_MAX_DEPTH) {
    d->error = "nested too deep";
    return -1;
  }
  oj_ws(d);
  if (d->at == d->end) {
    d->error = "unexpected end";
    return -1;
  }
  switch (*d->at) {
    case '{': return oj_container(d, depth, 1);
    case '[': return oj_container(d, depth, 0);
    case '"': return oj_string(d);
    case 't': return oj_literal(d, "true", OJ_BOOL);
    case 'f': return oj_literal(d, "false", OJ_BOOL);
    case 'n': return oj_literal(d, "null", OJ_NULL);
    default: return oj_number(d);
  }
}

/* Parses `len` bytes at `p` into `nodes` (room for `cap`). Returns the root
 * (0) or -1 with d->error set. Trailing bytes other than whitespace fail. */
static inline int32_t oj_parse(oj_doc_t *d, oj_node_t *nodes, int32_t cap, const uint8_t *p, size_t len) {
  d->nodes = nodes;
  d->cap = cap;
  d->count = 0;
  d->at = p;
  d->end = p + len;
  d->error = NULL;
  if (p == NULL && len > 0) {
    d->error = "no config";
    return -1;
  }
  int32_t root = oj_value(d, 0);
  if (root < 0) return -1;
  oj_ws(d);
  if (d->at != d->end) {
    d->error = "trailing bytes after the JSON value";
    return -1;
  }
  return root;
}

/* Whether string node `i` is exactly `len` bytes at `p`. */
static inline int oj_is(const oj_doc_t *d, int32_t i, const uint8_t *p, size_t len) {
  return i >= 0 && d->nodes[i].type == OJ_STRING && d->nodes[i].len == len &&
         (len == 0 || memcmp(d->nodes[i].ptr, p, len) == 0);
}

/* The value of member `key` of object node `obj`, or -1. */
static inline int32_t oj_get(const oj_doc_t *d, int32_t obj, const char *key) {
  if (obj < 0 || d->nodes[obj].type != OJ_OBJECT) return -1;
  for (int32_t k = d->nodes[obj].child; k >= 0; k = d->nodes[k].next) {
    if (oj_is(d, k, (const uint8_t *)key, strlen(key))) return d->nodes[k].child;
  }
  return -1;
}

/* The value of the member of `obj` whose key is the `len` bytes at `p`. */
static inline int32_t oj_get_n(const oj_doc_t *d, int32_t obj, const uint8_t *p, size_t len) {
  if (obj < 0 || d->nodes[obj].type != OJ_OBJECT) return -1;
  for (int32_t k = d->nodes[obj].child; k >= 0; k = d->nodes[k].next) {
    if (oj_is(d, k, p, len)) return d->nodes[k].child;
  }
  return -1;
}

/* Whether every key of object `obj` is one of the NULL-terminated `allowed`;
 * on failure *bad is the first unknown key node. */
static inline int oj_keys_in(const oj_doc_t *d, int32_t obj, const char *const *allowed, int32_t *bad) {
  for (int32_t k = d->nodes[obj].child; k >= 0; k = d->nodes[k].next) {
    int ok = 0;
    for (const char *const *a = allowed; *a != NULL; a++) {
      if (oj_is(d, k, (const uint8_t *)*a, strlen(*a))) ok = 1;
    }
    if (!ok) {
      *bad = k;
      return 0;
    }
  }
  return 1;
}

#endif /* ODOCK_JSON_H */
