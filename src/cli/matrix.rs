use std::io::Write;

use clap::{Args, ValueEnum};

use super::{Common, EXIT_INVALID, EXIT_OK};
use netpold::explain::{Explainer, Port};
use netpold::matrix;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Dot,
    Html,
}

#[derive(Args, Debug)]
pub struct MatrixArgs {
    #[command(flatten)]
    pub common: Common,
    /// Port to check, N (TCP) or N/tcp, N/udp, N/sctp; repeat for several
    /// [default: every port the policies name, and each destination's named ports]
    #[arg(long, value_name = "N/PROTO")]
    pub port: Vec<Port>,
    /// Only the endpoints of this namespace, as rows and columns
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

pub fn run(args: &MatrixArgs) -> anyhow::Result<u8> {
    let settings = args.common.settings(None, None)?;
    let Some(loaded) = super::load_valid(&settings, "no matrix")? else {
        return Ok(EXIT_INVALID);
    };
    if let Some(ns) = &args.namespace
        && !loaded.model.namespaces.contains_key(ns)
    {
        anyhow::bail!("no namespace {ns} in the manifests");
    }
    let started = std::time::Instant::now();
    let mut explainer = Explainer::new(&loaded.model, &settings.node, &settings.table)
        .with_options(settings.config.compile_options());
    let m = matrix::build(&mut explainer, args.namespace.as_deref(), &args.port);
    log::info!(
        "matrix: {} endpoints decided in {:?}",
        m.endpoints.len(),
        started.elapsed()
    );
    let text = match args.format {
        Format::Table => matrix::table(&m),
        Format::Csv => matrix::csv(&m),
        Format::Json => matrix::json(&m),
        Format::Dot => matrix::dot(&m),
        Format::Html => {
            let title = match &args.namespace {
                Some(ns) => format!(
                    "netpold reachability: namespace {ns} ({})",
                    settings.manifests.display()
                ),
                None => format!("netpold reachability: {}", settings.manifests.display()),
            };
            matrix::html(&m, &title)
        }
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(EXIT_OK)
}
