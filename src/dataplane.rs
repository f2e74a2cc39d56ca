//! The border between deciding what to enforce and enforcing it: the daemon and
//! `apply` hand a desired `ir::Ruleset` to a `Dataplane`; `nft::Kernel` is the real
//! one, tests of the reconcile loop use a fake.

use std::time::Duration;

use crate::ir::Ruleset;
use crate::ir::diff::Delta;

/// What one transaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Netlink messages in the transaction (batch begin and end included).
    pub messages: usize,
    pub bytes: usize,
    /// From building the first message to the kernel's last acknowledgement.
    pub elapsed: Duration,
}

/// A transaction the kernel refused or that could not be sent. The kernel still
/// holds what it held before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

/// An object of our table that differs from what netpold programmed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DriftObject {
    /// The table itself, or something only a whole replacement puts right.
    Table,
    Chain(String),
    /// A set or a map.
    Set(String),
}

/// One difference found by reading the table back, with a sentence for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub object: DriftObject,
    pub what: String,
}

pub trait Dataplane {
    /// Replaces our whole table with `desired` in one transaction.
    fn replace(&mut self, desired: &Ruleset) -> Result<Applied, Error>;

    /// Sends only `delta`, which turns the ruleset the table holds (the last one
    /// programmed) into `desired`, in one transaction.
    fn update(&mut self, desired: &Ruleset, delta: &Delta) -> Result<Applied, Error>;

    /// Reads our table back and lists how it differs from `desired`. Unless
    /// `thorough`, it may stop early when it knows nothing was committed since the
    /// table was last found equal.
    fn read_back(&mut self, desired: &Ruleset, thorough: bool) -> Result<Vec<Drift>, Error>;
}
