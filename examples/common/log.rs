//! The example programs' logging: `tracing` events on stderr, at the level `FLUXRIG_LOG`
//! names (`off`, `error`, `warn`, `info`, `debug`, `trace`), as text or, with
//! `FLUXRIG_LOG_FORMAT=json`, one JSON object per line.

/// Installs the subscriber; `default` is the level when `FLUXRIG_LOG` is unset or unknown.
pub(crate) fn init(default: Option<tracing::Level>) {
    let level = match std::env::var("FLUXRIG_LOG").as_deref() {
        Ok("off") => None,
        Ok(text) => text.parse().ok().or(default),
        Err(_) => default,
    };
    let Some(level) = level else {
        return;
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    if std::env::var("FLUXRIG_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
