//! The command line (clap): `run` (default), `check`, `explain`, `test`. Each command returns
//! its exit code; only `main` touches the process.

mod check;
mod explain;
mod policytest;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use check::check;
pub use explain::explain;
pub use policytest::run_tests;

#[derive(Debug, Parser)]
#[command(
    name = "egressd",
    version,
    about = "Egress filtering HTTP/1.1 forward proxy"
)]
pub struct Cli {
    /// Path of egressd.yaml; paths inside it are relative to it.
    #[arg(long, global = true, default_value = "config/egressd.yaml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default when no command is given).
    Run,
    /// Validate every file the configuration reaches; print FILE:LINE:COLUMN: message.
    Check(CheckArgs),
    /// Show the decision for a destination, the rule that made it and the walk.
    Explain(ExplainArgs),
    /// Run policy test files (default: the `tests:` folder of the configuration).
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Treat warnings (expired or soon-expiring rules, …) as errors.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Ministry to evaluate for.
    #[arg(long, conflicts_with = "client", required_unless_present = "client")]
    pub ministry: Option<String>,
    /// Client address, identified as the proxy would (identity.sources, default_ministry).
    #[arg(long)]
    pub client: Option<std::net::IpAddr>,
    /// Evaluate at this instant (RFC 3339) instead of now.
    #[arg(long)]
    pub at: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Print a JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// `http://host/path`, `https://host/…` (a CONNECT to 443), or `host[:port]`.
    pub target: String,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test files; default: every .yaml file in the configuration's `tests:` folder.
    pub files: Vec<PathBuf>,
}
