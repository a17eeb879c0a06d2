//! halo-core
