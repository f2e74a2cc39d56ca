use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{Common, EXIT_INVALID, EXIT_OK};
use netpold::explain::{Explainer, Party};
use netpold::model::{Direction, Model};
use netpold::{compile, load};

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: Common,
    /// Check these files (together) instead of a directory
    #[arg(value_name = "FILE", conflicts_with = "manifests")]
    pub files: Vec<PathBuf>,
    /// Also compile what this node would enforce, and summarise it
    #[arg(long, value_name = "N")]
    pub node: Option<String>,
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
        if let Some(node) = &args.node {
            let settings = args.common.settings(Some(node), None)?;
            print!("{}", node_summary(m, node, &settings));
        }
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

/// What `node` enforces: the ruleset's size, then each local endpoint with the policies
/// that govern its ingress and egress, as `explain` finds them in the compiled rules.
fn node_summary(m: &Model, node: &str, settings: &super::Settings) -> String {
    use std::fmt::Write as _;
    let options = settings.config.compile_options();
    let (ruleset, origins) = compile::explainable(m, node, &settings.table, &options);
    let local: Vec<_> = m.endpoints.values().filter(|e| e.is_local(node)).collect();
    let hosts: Vec<_> = m.hosts.values().filter(|h| h.is_local(node)).collect();
    let named = m
        .endpoints
        .values()
        .any(|e| e.node.as_deref() == Some(node))
        || m.hosts.values().any(|h| h.node.as_deref() == Some(node));
    if !named {
        eprintln!(
            "warning: no endpoint names node {node}: it enforces only the endpoints that name no node"
        );
    }
    let mut x = Explainer::new(m, node, &settings.table).with_options(options);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "node {node}: {} endpoints, {} host endpoints, {} of {} policies; {} sets, {} chains, {} rules",
        local.len(),
        hosts.len(),
        origins.policies.len(),
        m.policies.len() + m.tiered.len(),
        ruleset.sets.len(),
        ruleset.chains.len(),
        ruleset.rule_count()
    );
    for ep in local {
        let Some(ip) = ep.ips.first() else {
            let _ = writeln!(out, "  {}: no address", ep.id());
            continue;
        };
        // A documentation address of the same family stands for "anyone else".
        let other: std::net::IpAddr = if ip.is_ipv4() {
            "192.0.2.1".parse().unwrap_or(*ip)
        } else {
            "2001:db8::1".parse().unwrap_or(*ip)
        };
        let me = Party::Endpoint(ep.namespace.clone(), ep.name.clone());
        let port = netpold::matrix::FALLBACK_PORT;
        let mut line = format!("  {}", ep.id());
        for direction in Direction::BOTH {
            let flow = match direction {
                Direction::Ingress => x.explain(&Party::Ip(other), &me, port),
                Direction::Egress => x.explain(&me, &Party::Ip(other), port),
            };
            let policies = flow
                .map(|e| e.side(direction).policies.clone())
                .unwrap_or_default();
            let list = if policies.is_empty() {
                "-".to_owned()
            } else {
                policies.join(", ")
            };
            let _ = write!(line, "  {direction}: {list}");
        }
        let _ = writeln!(out, "{line}");
    }
    for h in hosts {
        let _ = writeln!(out, "  {}", h.id());
    }
    out
}
