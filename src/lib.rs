//! netpold: Kubernetes NetworkPolicy for hosts without Kubernetes.
pub mod diag;
pub mod manifest;
