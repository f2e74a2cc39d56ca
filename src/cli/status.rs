use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;

use super::{EXIT_INVALID, EXIT_OK};
use netpold::config::{self, Config};
use netpold::daemon::serve;
use netpold::daemon::stats::unix_now;
use netpold::status::{Report, RuleCounter, attribute};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Configuration file (TOML) [default: /etc/netpold/netpold.toml, if present]
    #[arg(long, value_name = "F")]
    pub config: Option<PathBuf>,
    /// The daemon's status socket [default: <runtime_dir>/status.sock]
    #[arg(long, value_name = "PATH", conflicts_with = "kernel")]
    pub socket: Option<PathBuf>,
    /// Read the table in the kernel alone, without the daemon
    #[arg(long)]
    pub kernel: bool,
    /// nftables table, with --kernel [default: netpold]
    #[arg(long, value_name = "T", requires = "kernel")]
    pub table: Option<String>,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// Asks the daemon (or, with `--kernel`, the kernel) and prints the report.
pub fn run(args: &StatusArgs) -> anyhow::Result<u8> {
    let cfg = Config::load(args.config.as_deref())?;
    let report = if args.kernel {
        let table = args
            .table
            .clone()
            .or_else(|| cfg.table.clone())
            .unwrap_or_else(|| config::DEFAULT_TABLE.to_owned());
        config::table_name(&table).map_err(|e| anyhow::anyhow!("--table: {e}"))?;
        match netpold::nft::counters::read_counters(&table) {
            Ok(Some(rows)) => kernel_report(&table, &rows),
            Ok(None) => {
                eprintln!("netpold: table inet {table} does not exist in this network namespace");
                return Ok(EXIT_INVALID);
            }
            Err(e) => anyhow::bail!("reading table inet {table}: {e}"),
        }
    } else {
        let socket = args.socket.clone().unwrap_or_else(|| {
            cfg.runtime_dir
                .clone()
                .unwrap_or_else(|| config::DEFAULT_RUNTIME_DIR.into())
                .join(serve::SOCKET_NAME)
        });
        match serve::ask(&socket) {
            Ok(report) => report,
            Err(e) => {
                eprintln!(
                    "netpold: no daemon answers at {}: {e}\n(is netpold running? `netpold status --kernel` reads the table without it)",
                    socket.display()
                );
                return Ok(EXIT_INVALID);
            }
        }
    };
    print(&report, args.json)?;
    Ok(EXIT_OK)
}

/// What the table alone tells: its counters, attributed by chain comments.
fn kernel_report(table: &str, rows: &[RuleCounter]) -> Report {
    let (policies, endpoints) = attribute(rows);
    let mut objects = BTreeMap::new();
    objects.insert("counted_rules".to_owned(), rows.len() as u64);
    objects.insert("policy_chains".to_owned(), policies.len() as u64);
    objects.insert("endpoint_chains".to_owned(), endpoints.len() as u64);
    Report {
        source: "kernel".to_owned(),
        table: table.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        objects,
        policies,
        endpoints,
        ..Report::default()
    }
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", report.to_text(unix_now()));
    }
    Ok(())
}
