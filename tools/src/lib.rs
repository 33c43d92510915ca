//! odock tools
