use clap::Args;

use super::Common;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Node whose endpoints are enforced [default: the hostname]
    #[arg(long, value_name = "N")]
    pub node: Option<String>,
    /// nftables table (family inet) [default: netpold]
    #[arg(long, value_name = "T")]
    pub table: Option<String>,
}

pub fn run(args: &RunArgs) -> anyhow::Result<u8> {
    let _settings = args
        .common
        .settings(args.node.as_deref(), args.table.as_deref())?;
    anyhow::bail!("not built yet")
}
