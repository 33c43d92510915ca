/* A shared library that is no plugin: it exports no entry symbol. */
__attribute__((visibility("default"))) int odock_not_a_plugin(void) { return 42; }
