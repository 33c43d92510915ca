/* A plugin built for a future major version 2: it exports only
 * odock_plugin_entry_v2. A major-1 host must refuse it and say why. */
#include <stddef.h>
#include <stdint.h>

struct future_descriptor {
  uint32_t size;
  uint16_t abi_major;
  uint16_t abi_minor;
};

static const struct future_descriptor DESCRIPTOR = {sizeof DESCRIPTOR, 2, 0};

__attribute__((visibility("default"))) const void *odock_plugin_entry_v2(void) {
  return &DESCRIPTOR;
}
