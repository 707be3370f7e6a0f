//! The mixer's HTTP API under `/api/v1`: racks, scenarios, convergence, the gear catalog,
//! per-gear stats and dead letters, with an OpenAPI 3.1 document generated from the handlers.
//!
//! `GET /metrics` serves the fleet's metrics in the Prometheus text format (see
//! [`Telemetry`]). Every route but `GET /api/v1/health` wants `Authorization: Bearer <token>`; the token is
//! compared in constant time. An API without a token is refused at start unless
//! [`ApiBuilder::dangerously_disable_auth`] says otherwise, and then it serves on loopback
//! only. Errors are JSON with a stable [`code`](ErrorBody::code) and a message; a scenario
//! that does not validate comes back `400` with every problem and its `line:col`.
//!
//! ```
//! use std::sync::Arc;
//!
//! use mixer_lib::Mixer;
//! use mixer_lib::api::Api;
//! use mixer_lib::store::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("mixer-api-doc-{}", std::process::id()));
//! let mixer = Mixer::builder()
//!     .data_dir(&dir)
//!     .store(Arc::new(MemoryStore::new()))
//!     .start()
//!     .await?;
//! let server = Api::builder(mixer.clone())
//!     .token("a-long-random-token")
//!     .serve("127.0.0.1:0".parse()?)
//!     .await?;
//! println!("API on http://{}/api/v1", server.local_addr());
//! server.shutdown().await;
//! mixer.stop();
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

mod diff;
mod error;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

pub use self::error::{ApiError, ErrorBody, ErrorCode, ProblemBody};
pub use self::routes::{
    Catalog, ConvergenceRow, DEFAULT_PAGE, DeadLetterBody, DeadLetters, Health, Imported, LogLevel,
    MAX_PAGE, MessagePath, RackStats, RackView, Replayed, ScenarioStatus, ScenarioVersion,
    ScenarioVersions,
};
use crate::Mixer;
use crate::secret::constant_time_eq;
use crate::telemetry::Telemetry;

/// The prefix of every route.
pub const PREFIX: &str = "/api/v1";

/// The one route that wants no token.
const HEALTH: &str = "/api/v1/health";

/// Builds and serves the API; see the [module](self).
#[derive(Debug)]
pub struct Api;

impl Api {
    /// A builder for `mixer`'s API, with the built-in gear catalog and an empty effective
    /// configuration.
    pub fn builder(mixer: Mixer) -> ApiBuilder {
        ApiBuilder {
            mixer,
            factory: gears::Factory::builtin(),
            token: None,
            no_auth: false,
            config: serde_json::Value::Object(serde_json::Map::new()),
            telemetry: None,
        }
    }

    /// The OpenAPI 3.1 document of every route, as `GET /api/v1/openapi.json` serves it.
    pub fn openapi() -> utoipa::openapi::OpenApi {
        routes::router().split_for_parts().1
    }
}

/// How the API is built: token, catalog, effective configuration.
pub struct ApiBuilder {
    mixer: Mixer,
    factory: gears::Factory,
    token: Option<String>,
    no_auth: bool,
    config: serde_json::Value,
    telemetry: Option<Telemetry>,
}

impl std::fmt::Debug for ApiBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiBuilder")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("no_auth", &self.no_auth)
            .finish_non_exhaustive()
    }
}

/// Why the API does not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Neither a token nor [`ApiBuilder::dangerously_disable_auth`].
    #[error(
        "the API needs a bearer token (or auth disabled on purpose, which binds to loopback only)"
    )]
    NoToken,
    /// The token is shorter than [`MIN_TOKEN_LEN`].
    #[error("the API token is too short: at least {MIN_TOKEN_LEN} characters")]
    WeakToken,
    /// Auth is off and the address is not a loopback one.
    #[error("auth is disabled, so the API serves on loopback only, not on {0}")]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// The shortest token the API accepts.
pub const MIN_TOKEN_LEN: usize = 16;

impl ApiBuilder {
    /// The bearer token every route but health wants.
    pub fn token(mut self, token: impl Into<String>) -> ApiBuilder {
        self.token = Some(token.into());
        self
    }

    /// Serves without a token. For a laptop: the API then binds to loopback only, and says
    /// so in a warning at start.
    pub fn dangerously_disable_auth(mut self) -> ApiBuilder {
        self.no_auth = true;
        self
    }

    /// The gear catalog `GET /api/v1/gears` lists (the mixer's own: scenarios are checked
    /// against it).
    pub fn factory(mut self, factory: gears::Factory) -> ApiBuilder {
        self.factory = factory;
        self
    }

    /// The effective configuration `GET /api/v1/config` shows; secrets in it are redacted
    /// (see [`redact`]).
    pub fn config(mut self, config: serde_json::Value) -> ApiBuilder {
        self.config = redact(config);
        self
    }

    /// The racks' telemetry, for `/metrics` and message paths. Without it `/metrics` shows
    /// what heartbeats report and paths are empty.
    pub fn telemetry(mut self, telemetry: Telemetry) -> ApiBuilder {
        self.telemetry = Some(telemetry);
        self
    }

    /// The API as a router, to nest in an application's own server (auth included).
    ///
    /// # Errors
    ///
    /// [`StartError::NoToken`], [`StartError::WeakToken`].
    pub fn router(self) -> Result<Router, StartError> {
        let token = match (&self.token, self.no_auth) {
            (Some(t), _) if t.len() < MIN_TOKEN_LEN => return Err(StartError::WeakToken),
            (Some(t), _) => Some(digest(t)),
            (None, true) => None,
            (None, false) => return Err(StartError::NoToken),
        };
        let state = routes::ApiState {
            mixer: self.mixer,
            factory: Arc::new(self.factory),
            config: Arc::new(self.config),
            telemetry: self.telemetry.unwrap_or_else(|| Telemetry::new(1)),
            listing: Arc::default(),
            listing_json: Arc::default(),
        };
        let (api, openapi) = routes::router().split_for_parts();
        let openapi = Arc::new(openapi);
        let api = api
            .route("/metrics", axum::routing::get(routes::metrics))
            .route(
                "/api/v1/openapi.json",
                axum::routing::get(move || {
                    let doc = Arc::clone(&openapi);
                    async move { axum::Json(doc.as_ref().clone()) }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(token),
                authorize,
            ));
        Ok(api
            .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
            .with_state(state))
    }

    /// Binds `addr` and serves until [`Server::shutdown`].
    ///
    /// # Errors
    ///
    /// As [`ApiBuilder::router`], [`StartError::NotLoopback`] with auth off on another
    /// address, [`StartError::Bind`].
    pub async fn serve(self, addr: SocketAddr) -> Result<Server, StartError> {
        let no_auth = self.token.is_none() && self.no_auth;
        if no_auth && !addr.ip().is_loopback() {
            return Err(StartError::NotLoopback(addr));
        }
        let router = self.router()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        if no_auth {
            tracing::warn!(addr = %local, "The API serves WITHOUT authentication (loopback only).");
        }
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "The API server failed.");
            }
        });
        tracing::info!(addr = %local, "The API is serving.");
        Ok(Server {
            addr: local,
            stop: Some(stop),
            task,
        })
    }
}

/// A serving API.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Where it listens (the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in flight finish, and returns when it has.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Lets a request through when it carries the token (or when there is none to carry).
async fn authorize(
    State(token): State<Arc<Option<[u8; 32]>>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(want) = token.as_ref()
        && req.uri().path() != HEALTH
    {
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        // Digests of equal length: the comparison's time says nothing about the token.
        let ok = given.is_some_and(|g| constant_time_eq(&digest(g), want));
        if !ok {
            let message = if given.is_none() {
                "missing bearer token"
            } else {
                "invalid bearer token"
            };
            return ApiError::new(ErrorCode::Unauthorized, message).into_response();
        }
    }
    next.run(req).await
}

/// `config` with the value of every key that names a secret replaced by `"<redacted>"`
/// (keys containing `secret`, `token`, `password`, `key` or `credential`, any case), and
/// the password of every URL with one (`postgres://user:pw@host`) too.
pub fn redact(config: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match config {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let secret = ["secret", "token", "password", "key", "credential"]
                        .iter()
                        .any(|s| lower.contains(s));
                    let v = if secret && !v.is_null() && !matches!(v, Value::Bool(_)) {
                        Value::String("<redacted>".into())
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(s) => Value::String(redact_url(&s)),
        other => other,
    }
}

/// `scheme://user:password@rest` without the password.
fn redact_url(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return s.to_owned();
    };
    let Some(colon) = rest[..at].find(':') else {
        return s.to_owned();
    };
    format!("{scheme}://{}:<redacted>{}", &rest[..colon], &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_wherever_they_are() {
        let config = serde_json::json!({
            "bootstrap_secret": "s3cret",
            "api": { "token": "tok", "listen": "127.0.0.1:8080", "auth_disabled": false },
            "store": { "url": "postgres://flux:pw@db:5432/flux" },
            "racks": [ { "secret": "x" } ],
            "cluster_key_path": "/data/cluster.key",
            "heartbeat_interval": "5s",
        });
        let text = redact(config).to_string();
        for secret in ["s3cret", "tok\"", ":pw@", "\"x\"", "/data/cluster.key"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.contains("postgres://flux:<redacted>@db:5432/flux"),
            "{text}"
        );
        assert!(
            text.contains("127.0.0.1:8080") && text.contains("5s"),
            "{text}"
        );
        assert!(text.contains("\"auth_disabled\":false"), "{text}");
    }
}
