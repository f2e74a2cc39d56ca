use clap::Args;

use super::{Common, EXIT_INVALID, EXIT_OK};
use netpold::explain::{Explainer, Party, Port};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub common: Common,
    /// Sender: namespace/name of a WorkloadEndpoint, host:NAME of a HostEndpoint, or an IP address
    #[arg(long, value_name = "A")]
    pub from: Party,
    /// Receiver: namespace/name of a WorkloadEndpoint, host:NAME of a HostEndpoint, or an IP address
    #[arg(long, value_name = "B")]
    pub to: Party,
    /// Destination port: N (TCP), N/tcp, N/udp or N/sctp
    #[arg(long, value_name = "N[/PROTO]")]
    pub port: Port,
    /// Source port of the sender (default 40000, an ephemeral port)
    #[arg(long, value_name = "N", default_value_t = netpold::explain::DEFAULT_SOURCE_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    pub sport: u16,
    /// Interface by which an end that is no endpoint of the node (an outside address)
    /// is reached [default: the node's one host endpoint naming an interface, if one]
    #[arg(long, value_name = "IFACE")]
    pub via: Option<String>,
    /// Print one JSON object (see the README for its fields)
    #[arg(long)]
    pub json: bool,
}

/// Prints whether the flow is allowed and why, per direction. The exit code says
/// whether the question could be answered, not the verdict.
pub fn run(args: &ExplainArgs) -> anyhow::Result<u8> {
    let settings = args.common.settings(None, None)?;
    let Some(loaded) = super::load_valid(&settings, "nothing explained")? else {
        return Ok(EXIT_INVALID);
    };
    let mut explainer = Explainer::new(&loaded.model, &settings.node, &settings.table)
        .with_options(settings.config.compile_options())
        .with_source_port(args.sport)
        .with_via(args.via.clone());
    let explanation = explainer.explain(&args.from, &args.to, args.port)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explanation.to_json())?);
    } else {
        print!("{explanation}");
    }
    Ok(EXIT_OK)
}
