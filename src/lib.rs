//! netpold: Kubernetes NetworkPolicy for hosts without Kubernetes.
pub mod compile;
pub mod config;
pub mod diag;
pub mod index;
pub mod ir;
pub mod load;
pub mod manifest;
pub mod model;
pub mod reference;
pub mod render;
pub mod selector;
