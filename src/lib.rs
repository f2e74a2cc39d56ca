//! netpold: Kubernetes NetworkPolicy for hosts without Kubernetes.
pub mod diag;
pub mod manifest;
pub mod model;
pub mod selector;
