//! Command-line verbs: argument handling and exit codes only; the work is in the library.

pub mod apply;
pub mod check;
pub mod diff;
pub mod explain;
pub mod matrix;
pub mod plan;
pub mod run;
pub mod status;

use std::path::PathBuf;

use clap::Args;

use netpold::config::{self, Config};

/// Exit codes (CONTRACT §4): 0 success, 1 invalid input or a failed operation, 2 usage.
pub const EXIT_OK: u8 = 0;
pub const EXIT_INVALID: u8 = 1;

/// Options shared by the verbs that load the manifest directory.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Configuration file (TOML) [default: /etc/netpold/netpold.toml, if present]
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
    /// Manifest directory [default: /etc/netpold/manifests.d]
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Accept files and directories others than root could change, the configuration
    /// file included (its own `strict_modes = false` cannot relax its check)
    #[arg(long)]
    pub no_strict_modes: bool,
}

/// Options of the verbs that compile for a node: `plan`, `apply`, `run`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    pub common: Common,
    /// Node whose endpoints are enforced [default: the hostname]
    #[arg(long, value_name = "N")]
    pub node: Option<String>,
    /// nftables table (family inet) [default: netpold]
    #[arg(long, value_name = "T")]
    pub table: Option<String>,
}

impl NodeArgs {
    pub fn settings(&self) -> anyhow::Result<Settings> {
        self.common
            .settings(self.node.as_deref(), self.table.as_deref())
    }
}

/// Settings after flags override the configuration file.
pub struct Settings {
    pub manifests: PathBuf,
    pub node: String,
    pub table: String,
    /// The whole file, for the keys only the daemon reads.
    pub config: Config,
    /// `--no-strict-modes`.
    pub no_strict_modes: bool,
    /// What StrictModes found wrong with the configuration file, checked before it was
    /// read.
    pub config_modes: Option<netpold::diag::Diagnostic>,
}

impl Settings {
    /// StrictModes for the manifests and the state directory: off with
    /// `--no-strict-modes` or the (checked) file's `strict_modes = false`.
    pub fn strict_modes(&self) -> bool {
        !self.no_strict_modes && self.config.strict_modes()
    }

    /// What StrictModes refuses: the configuration file (unless `--no-strict-modes`),
    /// and with `manifests` the manifest directory and its files (the daemon checks
    /// those on every load).
    pub fn unsafe_modes(&self, manifests: bool) -> Vec<netpold::diag::Diagnostic> {
        let mut problems: Vec<_> = self.config_modes.iter().cloned().collect();
        if manifests && self.strict_modes() {
            problems.extend(netpold::strict::check_dir(&self.manifests));
        }
        problems
    }
}

impl Common {
    pub fn settings(&self, node: Option<&str>, table: Option<&str>) -> anyhow::Result<Settings> {
        let config_modes = if self.no_strict_modes {
            None
        } else {
            Config::check_file_modes(self.config.as_deref()).err()
        };
        let cfg = match Config::load(self.config.as_deref()) {
            Ok(cfg) => cfg,
            // The file's modes come first: what it says is not to be trusted.
            Err(e) => match &config_modes {
                Some(modes) => anyhow::bail!("{modes}\n{e}"),
                None => return Err(e.into()),
            },
        };
        let table = table
            .map(str::to_owned)
            .or_else(|| cfg.table.clone())
            .unwrap_or_else(|| config::DEFAULT_TABLE.to_owned());
        config::table_name(&table).map_err(|e| anyhow::anyhow!("--table: {e}"))?;
        Ok(Settings {
            manifests: self
                .manifests
                .clone()
                .or_else(|| cfg.manifests.clone())
                .unwrap_or_else(|| config::DEFAULT_MANIFESTS.into()),
            node: node
                .map(str::to_owned)
                .or_else(|| cfg.node.clone())
                .unwrap_or_else(config::hostname),
            table,
            config: cfg,
            no_strict_modes: self.no_strict_modes,
            config_modes,
        })
    }
}

/// Loads the whole manifest directory for `plan` and `apply`. When anything is
/// invalid, prints every problem and `what_happens`, and returns `None`: neither
/// verb acts on part of a directory.
pub fn load_valid(
    settings: &Settings,
    what_happens: &str,
) -> anyhow::Result<Option<netpold::load::Loaded>> {
    use anyhow::Context;
    let loaded = netpold::load::load_dir(&settings.manifests)
        .with_context(|| format!("manifest directory {}", settings.manifests.display()))?;
    if loaded.problems.is_empty() {
        return Ok(Some(loaded));
    }
    for problem in &loaded.problems {
        eprintln!("{problem}");
    }
    eprintln!("{} errors: {what_happens}", loaded.problems.len());
    Ok(None)
}
