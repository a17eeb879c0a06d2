//! halo-host
