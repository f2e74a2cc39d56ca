//! Dropping every capability but CAP_NET_ADMIN once the daemon has opened what needs
//! more. Capabilities belong to threads, and a thread inherits its creator's: the
//! drop must run while the process has one thread, so every later thread starts
//! without them.
//!
//! What is cleared: the bounding set (so no `execve` can regain a capability), the
//! ambient and inheritable sets, and permitted and effective down to CAP_NET_ADMIN;
//! then `PR_SET_NO_NEW_PRIVS`, so no set-uid or file-capability program gains any.
//! File access needs no capability after this for a daemon running as uid 0: root's
//! own files (manifests of mode 0600, the state and runtime directories) are opened
//! as their owner, without CAP_DAC_OVERRIDE.

use std::io;

use rustix::thread::{self, CapabilitySet, CapabilitySets};

/// The one capability nf_tables, NFLOG and conntrack need.
pub const KEPT: CapabilitySet = CapabilitySet::NET_ADMIN;

/// Drops everything but `KEPT`. Fails if the process already has more than one
/// thread (the others would keep theirs).
pub fn drop_to_net_admin() -> io::Result<()> {
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(1);
    if threads > 1 {
        return Err(io::Error::other(format!(
            "{threads} threads are running; capabilities must be dropped before the first one starts"
        )));
    }
    let current = thread::capabilities(None)?;
    // The bounding set needs CAP_SETPCAP to shrink; without it (an unprivileged start,
    // or systemd's CapabilityBoundingSet= already applied) only what is there is left.
    let may_shrink = current.effective.contains(CapabilitySet::SETPCAP);
    let mut kept_in_bounding = Vec::new();
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        match thread::capability_is_in_bounding_set(cap) {
            Ok(true) if cap != KEPT => {
                if may_shrink {
                    thread::remove_capability_from_bounding_set(cap)?;
                } else {
                    kept_in_bounding.push(bit);
                }
            }
            Ok(_) => {}
            // Past the kernel's last capability.
            Err(_) => break,
        }
    }
    if !kept_in_bounding.is_empty() {
        log::warn!(
            "the capability bounding set keeps capabilities {kept_in_bounding:?}: without CAP_SETPCAP they cannot be removed (no_new_privs still stops any program from gaining them)"
        );
    }
    thread::clear_ambient_capability_set()?;
    let wanted = CapabilitySets {
        effective: current.permitted & KEPT,
        permitted: current.permitted & KEPT,
        inheritable: CapabilitySet::empty(),
    };
    if current != wanted {
        let held = current.permitted | current.effective | current.inheritable;
        match thread::set_capabilities(None, wanted) {
            Ok(()) => {}
            // The shipped unit's seccomp filter (SystemCallFilter=~@privileged) refuses
            // capset; its CapabilityBoundingSet= has left nothing but KEPT (in the
            // inheritable set, for the ambient capability, which no_new_privs caps).
            Err(rustix::io::Errno::PERM) if held.difference(KEPT).is_empty() => {
                log::debug!("capset refused; nothing but CAP_NET_ADMIN is held anyway");
            }
            Err(e) => return Err(e.into()),
        }
    }
    thread::set_no_new_privs(true)?;
    Ok(())
}
