//! The daemon: watch the manifest directory, reconcile the kernel, signals and systemd.
