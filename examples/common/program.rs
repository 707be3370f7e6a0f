//! The `main` of the long-running example programs (`mixer`, `dual_head`): logging, flags,
//! a multi-threaded runtime, and one `error:` line with exit status 1 when `run` fails.

use std::process::ExitCode;

use anyhow::Context as _;

/// Parses `F` from the command line and runs `run` with it to the end.
pub(crate) fn main<F, Fut>(default_level: tracing::Level, run: impl FnOnce(F) -> Fut) -> ExitCode
where
    F: clap::Parser,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    super::log::init(Some(default_level));
    let flags = match F::try_parse() {
        Ok(flags) => flags,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .and_then(|rt| rt.block_on(run(flags)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
