//! netpold: Kubernetes NetworkPolicy for hosts without Kubernetes.
pub mod diag;
pub mod manifest;
pub mod model;
pub mod reference;
pub mod selector;
pub mod compile;
pub mod index;
pub mod ir;
pub mod render;
pub mod config;
pub mod load;
