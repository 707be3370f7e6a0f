//! `--metrics-addr`: a rack's own `/metrics`, in the Prometheus text format.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use fluxrig::rack::agent::telemetry::{GearCounters, RackMetrics, write_prometheus};

/// Where the counters come from: called once per scrape.
pub(crate) type Source =
    Arc<dyn Fn() -> std::collections::BTreeMap<String, GearCounters> + Send + Sync>;

/// Serves `GET /metrics` on `addr` for rack `rack` until the runtime ends. Only loopback
/// addresses unless `addr` says otherwise: the counters name gears, not data.
pub(crate) async fn serve(
    addr: SocketAddr,
    rack: String,
    source: Source,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--metrics-addr)"))?;
    let local = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (rack, source) = (rack.clone(), Arc::clone(&source));
            async move {
                let gears = source();
                let mut text = String::new();
                write_prometheus(
                    &mut text,
                    &[RackMetrics {
                        rack: &rack,
                        gears: &gears,
                        telemetry_dropped: None,
                    }],
                );
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "The metrics endpoint stopped.");
        }
    });
    Ok(local)
}
