//! Unit tests of the ring protocol over heap memory.
