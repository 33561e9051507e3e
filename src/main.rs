use clap::{CommandFactory, FromArgMatches};

use samstream::cli::{Cli, Command};
use samstream::client;
use samstream::config::ServeConfig;

fn main() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches_from(client::legacy_form(std::env::args_os().collect()));
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    samstream::telemetry::init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = match cli.command {
        Command::Serve(config) => {
            let serve_matches = matches.subcommand_matches("serve").expect("the serve subcommand was parsed");
            let config = config.resolve(serve_matches)?;
            if config.print_config {
                print!("{}", config.to_toml_redacted()?);
                return Ok(());
            }
            let served = runtime.block_on(serve(config));
            runtime.shutdown_timeout(std::time::Duration::from_millis(200));
            if let Err(e) = &served {
                eprintln!("error: {e:#}");
            }
            exit_now(if served.is_ok() { 0 } else { 1 });
        }
        Command::Client { command } => runtime.block_on(client::run(command)),
        Command::CliReference => {
            print!("{}", samstream::cli::reference());
            Ok(())
        }
        Command::Soak(args) => runtime.block_on(samstream::soak::run(args)),
        Command::Bench(args) => runtime.block_on(samstream::loadgen::run(args)),
    };
    // Blocking tasks (an image decode, a grabber's read) must not hold the exit back.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let grace = std::time::Duration::from_secs_f64(config.shutdown_grace_secs.max(0.0));
    let config_device = config.runtime.device;
    let fail_without_model = config.runtime.device_fallback == samstream::model::DeviceFallback::Fail;
    let (signalled_tx, signalled) = tokio::sync::oneshot::channel();
    let signal = async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(());
    };
    let server = samstream::server::start(config, signal).await?;
    // Printed on stdout so scripts that start the server on port 0 can find it.
    println!("samstream listening on {}", server.addr);
    // With --device-fallback fail a missing GPU provider ends the process, so an orchestrator
    // sees a crash rather than a pod that never becomes ready.
    if fail_without_model && !server.serving().await {
        anyhow::bail!("the model could not be loaded on {} (--device-fallback fail)", config_device);
    }
    tokio::select! {
        result = server.wait() => result,
        () = async {
            if signalled.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(grace_secs = grace.as_secs_f64(), "shutdown grace period over; exiting with work still in flight");
            exit_now(0);
        }
    }
}

/// Ends the process without running C++ static destructors: the inference threads may still
/// be inside ONNX Runtime, whose globals must not be torn down under them.
fn exit_now(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit only ends the process; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
