mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "netpold",
    version,
    about = "Kubernetes NetworkPolicy for hosts without Kubernetes, enforced with nftables"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate manifests; print `path:line:col: error: ...` per problem
    Check(cli::check::CheckArgs),
    /// Print the ruleset `run` would program, as `nft -f` input
    Plan(cli::NodeArgs),
    /// Program the current network namespace once, as `run` does on start, and exit
    Apply(cli::NodeArgs),
    /// The daemon: program the current network namespace and keep it in step with the directory
    Run(cli::NodeArgs),
    /// Ask the running daemon (or, with --kernel, the kernel) what is enforced and counted
    Status(cli::status::StatusArgs),
    /// Say whether a flow is allowed, and which policy rule allows or denies it
    Explain(cli::explain::ExplainArgs),
    /// Who can reach whom among the endpoints: table, csv, json, dot or html
    Matrix(cli::matrix::MatrixArgs),
    /// Which flows change verdict between two manifest trees, per node
    Diff(cli::diff::DiffArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` sets up its own logging once it has read `log_level` from its configuration.
    if !matches!(cli.command, Command::Run(_)) {
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    }
    let result = match &cli.command {
        Command::Check(args) => cli::check::run(args),
        Command::Plan(args) => cli::plan::run(args),
        Command::Apply(args) => cli::apply::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Explain(args) => cli::explain::run(args),
        Command::Matrix(args) => cli::matrix::run(args),
        Command::Diff(args) => cli::diff::run(args),
    };
    // `diff` exits 1 for "different", so its trouble is 2, as diff(1)'s.
    let failed = match cli.command {
        Command::Diff(_) => cli::diff::EXIT_TROUBLE,
        _ => cli::EXIT_INVALID,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        // A diagnostic already reads `path:line:col: error: ...`.
        Err(e) if e.downcast_ref::<netpold::diag::Diagnostic>().is_some() => {
            eprintln!("{e}");
            ExitCode::from(failed)
        }
        Err(e) => {
            eprintln!("netpold: error: {e:#}");
            ExitCode::from(failed)
        }
    }
}
