//! netpold: Kubernetes NetworkPolicy for hosts without Kubernetes.
pub mod compile;
pub mod config;
pub mod conntrack;
pub mod daemon;
pub mod dataplane;
pub mod diag;
pub mod diff;
pub mod droplog;
pub mod explain;
pub mod index;
pub mod ir;
pub mod load;
pub mod manifest;
pub mod matrix;
pub mod metrics;
pub mod model;
// The only module with FFI: libnftnl and libmnl through their Rust bindings.
#[allow(unsafe_code)]
pub mod nft;
pub mod privilege;
pub mod reference;
pub mod render;
pub mod selector;
pub mod status;
pub mod strict;
