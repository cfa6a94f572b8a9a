//! `arbiter-server`: the same as `arbiter serve`, as its own binary.

use clap::Parser;

/// Serve the Arbiter engine: Envoy's external authorization over gRPC, AuthZEN over HTTP.
#[derive(Parser)]
#[command(name = "arbiter-server", version)]
struct Cli {
    #[command(flatten)]
    options: arbiter_server::Options,
}

fn main() -> std::process::ExitCode {
    arbiter_server::run(Cli::parse().options)
}
