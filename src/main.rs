//! The `spark-webhook` binary: parses the command line and dispatches to a subcommand.
//! Every failure ends as one `error:` line on stderr and a non-zero exit, never a panic.

use std::process::ExitCode;

/// mimalloc instead of the system allocator: a pod review is allocation-bound (serde on an 8 KiB
/// pod), and mimalloc halves its instruction count against glibc's malloc (callgrind: 2.06M ->
/// 1.13M per driver review); musl's malloc, in the static image, is slower still.
/// The `system-allocator` feature turns it off for heap profilers that interpose malloc.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use spark_webhook::cli::{Cli, Command};
use spark_webhook::{certs, crd, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(&cli.log, cli.log_format) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Crds => {
            print!("{}", crd::crds_yaml());
            Ok(())
        }
        Command::Webhooks(args) => {
            let ca = match &args.ca_bundle_file {
                Some(path) => {
                    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?
                }
                None => Vec::new(),
            };
            let yaml = args
                .registration
                .registration(ca)
                .to_yaml()
                .map_err(|e| e.to_string())?;
            print!("{yaml}");
            Ok(())
        }
        Command::Render(args) => {
            print!("{}", spark_webhook::render::render(&args.options())?);
            Ok(())
        }
        Command::Certs(args) => {
            let report = certs::files::generate(&args.options()).map_err(|e| e.to_string())?;
            println!("{report}");
            Ok(())
        }
        Command::Serve(args) => {
            // What the flags mean, refused before anything starts if it cannot run.
            let config =
                spark_webhook::config::ServeConfig::from_args(&args).map_err(|e| e.to_string())?;
            // Both ring and nothing else is compiled in; installing it explicitly makes every
            // rustls user (kube client, webhook server) agree.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("starting the async runtime: {e}"))?;
            let result = runtime.block_on(spark_webhook::serve::run(config));
            // Dropping a runtime waits for every blocking task (a DNS lookup, a file read)
            // without limit; the exit must not.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            result.map_err(|e| e.to_string())
        }
    }
}
