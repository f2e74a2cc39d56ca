use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{Common, EXIT_INVALID, EXIT_OK};
use netpold::load;

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: Common,
    /// Check these files (together) instead of a directory
    #[arg(value_name = "FILE", conflicts_with = "manifests")]
    pub files: Vec<PathBuf>,
}

/// Prints one line per problem on stdout and a summary on stderr.
pub fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    let loaded = if args.files.is_empty() {
        let settings = args.common.settings(None, None)?;
        // `run` and `apply` refuse these; `check` needs no privileges and only warns.
        for problem in settings.unsafe_modes(true) {
            eprintln!(
                "{}",
                problem.to_string().replacen(": error: ", ": warning: ", 1)
            );
        }
        load::load_dir(&settings.manifests)
            .with_context(|| format!("manifest directory {}", settings.manifests.display()))?
    } else {
        load::load_paths(&args.files)
    };
    for problem in &loaded.problems {
        println!("{problem}");
    }
    let m = &loaded.model;
    if loaded.problems.is_empty() {
        let hosts = match m.hosts.len() {
            0 => String::new(),
            n => format!(", {n} host endpoints"),
        };
        eprintln!(
            "ok: {} files, {} namespaces, {} endpoints{hosts}, {} policies",
            loaded.files,
            m.namespaces.len(),
            m.endpoints.len(),
            m.policies.len() + m.tiered.len()
        );
        Ok(EXIT_OK)
    } else {
        let mut bad: Vec<&str> = loaded.problems.iter().map(|p| p.file.as_str()).collect();
        bad.sort_unstable();
        bad.dedup();
        eprintln!(
            "{} errors in {} files ({} manifest files read)",
            loaded.problems.len(),
            bad.len(),
            loaded.files
        );
        Ok(EXIT_INVALID)
    }
}
