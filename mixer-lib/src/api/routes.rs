//! The handlers, their bodies and the OpenAPI description of each.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use fluxmsg::{Codec, json};
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::diff;
use super::error::{ApiError, ErrorBody, ErrorCode};
use crate::Mixer;
use crate::store::{RackRecord, RackStatus};

/// What the handlers share.
#[derive(Clone)]
pub(super) struct ApiState {
    pub(super) mixer: Mixer,
    pub(super) factory: Arc<gears::Factory>,
    pub(super) config: Arc<serde_json::Value>,
    pub(super) telemetry: crate::telemetry::Telemetry,
    pub(super) listing: Arc<std::sync::Mutex<Option<Arc<Listed>>>>,
    /// Set while a blocking task makes the JSON of a newer listing.
    pub(super) listing_json: Arc<std::sync::atomic::AtomicBool>,
}

/// The mixer's rack listing with each rack's [`RackView`] in JSON, made once per listing:
/// a page is then the concatenation of its racks' JSON.
pub(super) struct Listed {
    listing: Arc<crate::RackListing>,
    json: Vec<bytes::Bytes>,
}

impl ApiState {
    /// The current listing, in JSON.
    ///
    /// When the mixer read its listing again because time passed, the JSON of the one
    /// before (unless older than [`crate::LISTING_MAX_STALE`]) is answered while a blocking
    /// task makes the new one (a few milliseconds per
    /// thousand racks, which a hundred requests waiting or making it each would feel); when
    /// it read it because a rack changed, the caller makes it, so that the change shows.
    async fn listed(&self) -> Result<Arc<Listed>> {
        let listing = self.mixer.rack_listing().await?;
        let cached = self.cached_listing();
        match cached {
            Some(listed) if Arc::ptr_eq(&listed.listing, &listing) => return Ok(listed),
            Some(listed)
                if listed.listing.writes() == listing.writes()
                    && listed.listing.taken().elapsed() < crate::LISTING_MAX_STALE =>
            {
                if !self
                    .listing_json
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
                {
                    let state = self.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Ok(new) = Listed::of(listing) {
                            state.keep_listing(new);
                        }
                        state
                            .listing_json
                            .store(false, std::sync::atomic::Ordering::Release);
                    });
                }
                return Ok(listed);
            }
            _ => {}
        }
        let listed = Arc::new(Listed::of(listing)?);
        self.keep_listing(Arc::clone(&listed));
        Ok(listed)
    }

    fn cached_listing(&self) -> Option<Arc<Listed>> {
        self.listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Keeps `listed` unless the one kept is newer.
    fn keep_listing(&self, listed: impl Into<Arc<Listed>>) {
        let listed = listed.into();
        let mut kept = self
            .listing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.as_ref().is_none_or(|k| {
            (k.listing.writes(), k.listing.taken())
                <= (listed.listing.writes(), listed.listing.taken())
        }) {
            *kept = Some(listed);
        }
    }
}

impl Listed {
    fn of(listing: Arc<crate::RackListing>) -> Result<Listed> {
        let json = listing
            .racks()
            .iter()
            .map(|r| serde_json::to_vec(&RackView::from(r.clone())).map(bytes::Bytes::from))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
        Ok(Listed { listing, json })
    }
}

type Result<T> = std::result::Result<T, ApiError>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fluxrig mixer API",
        description = "The control plane of a fluxrig fleet: racks, scenarios, convergence, the gear catalog and dead letters."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every route of the API but the OpenAPI document itself, with its description.
pub(super) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(config))
        .routes(routes!(list_racks))
        .routes(routes!(show_rack, remove_rack))
        .routes(routes!(approve_rack))
        .routes(routes!(suspend_rack))
        .routes(routes!(activate_rack))
        .routes(routes!(rack_log_level))
        .routes(routes!(rack_shutdown))
        .routes(routes!(rack_stats))
        .routes(routes!(import_scenario, list_scenarios))
        .routes(routes!(active_scenario))
        .routes(routes!(scenario_status))
        .routes(routes!(scenario_versions))
        .routes(routes!(show_scenario))
        .routes(routes!(activate_scenario))
        .routes(routes!(diff_scenario))
        .routes(routes!(list_gears))
        .routes(routes!(show_gear))
        .routes(routes!(list_dead_letters))
        .routes(routes!(show_dead_letter))
        .routes(routes!(replay_dead_letter))
        .routes(routes!(message_path))
        .routes(routes!(recent_messages))
}

/// `GET /metrics`: the fleet in the Prometheus text format (version 0.0.4).
pub(super) async fn metrics(State(state): State<ApiState>) -> Result<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let racks = state.mixer.racks().await?;
    let text = state.telemetry.render(&racks, &state.mixer.refused());
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

// ---------------------------------------------------------------------------------------
// Introspection

/// Where a message went, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MessagePath {
    /// The message's id.
    pub id: String,
    /// The hops the racks reported (sampled), in time order, each with its decision.
    pub hops: Vec<crate::telemetry::PathHop>,
    /// When the message is in the dead-letter stream: where it gave up and why.
    pub dead_letter: Option<DeadLetterBody>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RecentParams {
    /// At most this many (default 20, at most 1000).
    limit: Option<usize>,
}

/// The ids of the most recent messages whose hops the racks reported, newest first: what
/// `GET /api/v1/messages/{id}/path` can answer about.
#[utoipa::path(get, path = "/api/v1/messages", tag = "introspection",
    params(RecentParams),
    responses((status = 200, body = Vec<String>)))]
async fn recent_messages(
    State(state): State<ApiState>,
    Query(p): Query<RecentParams>,
) -> Json<Vec<String>> {
    Json(state.telemetry.recent(p.limit.unwrap_or(20).min(1000)))
}

/// How many of the oldest dead letters a path lookup reads.
const PATH_DLQ_SCAN: usize = 1000;

/// A message's path across racks, with each gear's decision, from the hops the racks
/// sampled; and, when it was dead-lettered, where and why.
#[utoipa::path(get, path = "/api/v1/messages/{id}/path", tag = "introspection",
    params(("id" = String, Path, description = "The message id (decimal or UUID text)")),
    responses((status = 200, body = MessagePath), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn message_path(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<MessagePath>> {
    let parsed: fluxmsg::Id = id
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, format!("`{id}` is not a message id")))?;
    let id = parsed.to_string();
    let hops = state.telemetry.path(&id);
    let snake = state.mixer.snake();
    let all = snake::Pattern::dead_letters_of(None, None)?;
    let letters = match snake.dead_letters(&all, 0, PATH_DLQ_SCAN).await {
        Ok(letters) => letters,
        Err(snake::Error::StreamNotFound(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let dead_letter = letters
        .iter()
        .find(|l| {
            fluxmsg::MsgView::new(&l.message.payload)
                .ok()
                .and_then(|v| v.id().ok().flatten())
                == Some(parsed)
        })
        .map(|l| DeadLetterBody::new(l, false));
    if hops.is_empty() && dead_letter.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no hop of message {id} was reported (hops are sampled and kept for recent messages only)"
            ),
        ));
    }
    Ok(Json(MessagePath {
        id,
        hops,
        dead_letter,
    }))
}

// ---------------------------------------------------------------------------------------
// Health and configuration

/// `GET /api/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the mixer answers.
    pub status: String,
    /// The mixer's id.
    pub mixer: String,
    /// The mixer's software version.
    pub version: String,
}

/// Whether the mixer answers. Needs no token.
#[utoipa::path(get, path = "/api/v1/health", tag = "mixer", security(()),
    responses((status = 200, body = Health)))]
async fn health(State(state): State<ApiState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        mixer: state.mixer.id().to_owned(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The mixer's effective configuration, secrets redacted.
#[utoipa::path(get, path = "/api/v1/config", tag = "mixer",
    responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
async fn config(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(state.config.as_ref().clone())
}

// ---------------------------------------------------------------------------------------
// Racks

/// A rack as the API shows it (never its secret or its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RackView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `pending`, `active`, `inactive`, `offline` or `denied`.
    pub status: String,
    /// The machine id leased to it.
    pub machine_id: Option<u16>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// First contact, milliseconds since the Unix epoch.
    pub first_seen: i64,
    /// Last hello or heartbeat.
    pub last_seen: i64,
    /// The address it reports.
    pub ip: String,
    /// Its software version.
    pub version: String,
    /// The scenario hash it reports it runs.
    pub applied_hash: String,
    /// Health per gear.
    pub health: BTreeMap<String, String>,
}

impl From<RackRecord> for RackView {
    fn from(r: RackRecord) -> RackView {
        RackView {
            id: r.id,
            name: r.name,
            status: r.status.as_str().to_owned(),
            machine_id: r.machine_id,
            labels: r.labels,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            ip: r.ip,
            version: r.version,
            applied_hash: r.applied_hash,
            health: r.health,
        }
    }
}

/// Racks a page of `GET /api/v1/racks` holds when the request does not say.
pub const DEFAULT_PAGE: usize = 100;
/// The most racks a page of `GET /api/v1/racks` holds.
pub const MAX_PAGE: usize = 1_000;

/// The racks whose status and labels match, by name, a page at a time:
/// `?status=active&label=env=prod&label=zone=a` (every label given must match),
/// `limit` racks (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]) after the rack named
/// `after`. When more match, the `Link` header gives the next page's URL with
/// `rel="next"`, as GitHub's API does.
///
/// Pages come from [`Mixer::rack_listing`]: `last_seen` and health may be up to about a second
/// older than `GET /api/v1/racks/{rack}` shows, and a change made through this mixer shows at
/// once.
#[utoipa::path(get, path = "/api/v1/racks", tag = "racks",
    params(
        ("status" = Option<String>, Query, description = "Only racks with this status"),
        ("label" = Option<Vec<String>>, Query, description = "`key=value`; repeat for several, all must match"),
        ("limit" = Option<usize>, Query, description = "Racks per page: 1 to 1000, default 100"),
        ("after" = Option<String>, Query, description = "The name of the last rack of the previous page"),
    ),
    responses(
        (status = 200, body = Vec<RackView>, headers(("link" = String, description = "`<url>; rel=\"next\"` when more racks match"))),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody)))]
async fn list_racks(
    State(state): State<ApiState>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let bad = |message: String| ApiError::new(ErrorCode::BadRequest, message);
    let mut status = None;
    let mut labels = Vec::new();
    let mut limit = DEFAULT_PAGE;
    let mut after = None;
    for (k, v) in &query {
        match k.as_str() {
            "status" => {
                status =
                    Some(RackStatus::parse(v).ok_or_else(|| bad(format!("no rack status `{v}`")))?);
            }
            "label" => {
                let (key, value) = v
                    .split_once('=')
                    .ok_or_else(|| bad(format!("label `{v}` is not key=value")))?;
                labels.push((key, value));
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        bad(format!("limit `{v}` is not a number from 1 to {MAX_PAGE}"))
                    })?;
            }
            "after" => after = Some(v.as_str()),
            other => return Err(bad(format!("unknown parameter `{other}`"))),
        }
    }
    let listed = state.listed().await?;
    let racks = listed.listing.racks();
    let start = after.map_or(0, |name| racks.len() - listed.listing.after(name).len());
    let mut matching = racks[start..]
        .iter()
        .zip(&listed.json[start..])
        .filter(|(r, _)| {
            status.is_none_or(|s| r.status == s)
                && labels
                    .iter()
                    .all(|(k, v)| r.labels.get(*k).is_some_and(|x| x == v))
        });
    let page: Vec<(&RackRecord, &bytes::Bytes)> = matching.by_ref().take(limit).collect();
    let mut body = Vec::with_capacity(2 + page.iter().map(|(_, j)| j.len() + 1).sum::<usize>());
    body.push(b'[');
    for (i, (_, json)) in page.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(json);
    }
    body.push(b']');
    let json = [(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    )];
    match page.last() {
        Some((last, _)) if matching.next().is_some() => {
            let mut next = format!(
                "</api/v1/racks?limit={limit}&after={}",
                query_value(&last.name)
            );
            for (k, v) in &query {
                if k == "status" || k == "label" {
                    next.push_str(&format!("&{k}={}", query_value(v)));
                }
            }
            next.push_str(">; rel=\"next\"");
            Ok((json, [(axum::http::header::LINK, next)], body).into_response())
        }
        _ => Ok((json, body).into_response()),
    }
}

/// `text` percent-encoded as a query value (everything but RFC 3986's unreserved characters).
fn query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One rack, by name or id.
#[utoipa::path(get, path = "/api/v1/racks/{rack}", tag = "racks",
    params(("rack" = String, Path, description = "Name or id")),
    responses((status = 200, body = RackView), (status = 404, body = ErrorBody)))]
async fn show_rack(
    State(state): State<ApiState>,
    Path(rack): Path<String>,
) -> Result<Json<RackView>> {
    Ok(Json(state.mixer.rack(&rack).await?.into()))
}

/// Removes a rack and releases its machine id.
#[utoipa::path(delete, path = "/api/v1/racks/{rack}", tag = "racks",
    params(("rack" = String, Path, description = "Name or id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn remove_rack(
    State(state): State<ApiState>,
    Path(rack): Path<String>,
) -> Result<StatusCode> {
    if state.mixer.remove(&rack).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            ErrorCode::NoRack,
            format!("no rack `{rack}`"),
        ))
    }
}

/// Admits a pending rack: it gets a passport and a machine id at its next hello.
#[utoipa::path(post, path = "/api/v1/racks/{rack}/approve", tag = "racks",
    params(("rack" = String, Path, description = "Name or id")),
    responses((status = 200, body = RackView), (status = 404, body = ErrorBody)))]
async fn approve_rack(
    State(state): State<ApiState>,
    Path(rack): Path<String>,
) -> Result<Json<RackView>> {
    Ok(Json(state.mixer.approve(&rack).await?.into()))
}

/// Suspends a rack: it stops its gears until activated again.
#[utoipa::path(post, path = "/api/v1/racks/{rack}/suspend", tag = "racks",
    params(("rack" = String, Path, description = "Name or id")),
    responses((status = 200, body = RackView), (status = 404, body = ErrorBody)))]
async fn suspend_rack(
    State(state): State<ApiState>,
    Path(rack): Path<String>,
) -> Result<Json<RackView>> {
    Ok(Json(state.mixer.suspend(&rack).await?.into()))
}

/// Activates a suspended rack again.
#[utoipa::path(post, path = "/api/v1/racks/{rack}/activate", tag = "racks",
    params(("rack" = String, Path, description = "Name or id")),
    responses((status = 200, body = RackView), (status = 404, body = ErrorBody)))]
async fn activate_rack(
    State(state): State<ApiState>,
    Path(rack): Path<String>,
) -> Result<Json<RackView>> {
    Ok(Json(state.mixer.resume(&rack).await?.into()))
}

/// A log level for a rack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLevel {
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
}

/// Sets a rack's log level, at its next heartbeat.
#[utoipa::path(post, path = "/api/v1/racks/{rack}/log-level", tag = "racks",
    params(("rack" = String, Path, description = "Name or id")),
    request_body = LogLevel,
    responses((status = 202), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn rack_log_level(
    State(state): State<ApiState>,
    Path(rack): Path<String>,
    Json(body): Json<LogLevel>,
) -> Result<StatusCode> {
    let level = body.level.to_ascii_lowercase();
    if !["trace", "debug", "info", "warn", "error"].contains(&level.as_str()) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "no log level `{}`: trace, debug, info, warn or error",
                body.level
            ),
        ));
    }
    state
        .mixer
        .command(&rack, &format!("log_level:{level}"))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Asks a rack to drain and stop, at its next heartbeat.
#[utoipa::path(post, path = "/api/v1/racks/{rack}/shutdown", tag = "racks",
    params(("rack" = String, Path, description = "Name or id")),
    responses((status = 202), (status = 404, body = ErrorBody)))]
async fn rack_shutdown(
    State(state): State<ApiState>,
    Path(rack): Path<String>,
) -> Result<StatusCode> {
    state.mixer.command(&rack, "shutdown").await?;
    Ok(StatusCode::ACCEPTED)
}

/// A rack's health and runtime statistics per gear, as its last heartbeat reported them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RackStats {
    /// The rack's name.
    pub rack: String,
    /// When it reported, milliseconds since the Unix epoch.
    pub reported_at: i64,
    /// Health per gear.
    pub health: BTreeMap<String, String>,
    /// The statistics as reported (per gear: messages in, out, errors, drops by reason…).
    #[schema(value_type = Object)]
    pub stats: serde_json::Value,
}

/// A rack's per-gear health and statistics.
#[utoipa::path(get, path = "/api/v1/racks/{rack}/stats", tag = "racks",
    params(("rack" = String, Path, description = "Name or id")),
    responses((status = 200, body = RackStats), (status = 404, body = ErrorBody)))]
async fn rack_stats(
    State(state): State<ApiState>,
    Path(rack): Path<String>,
) -> Result<Json<RackStats>> {
    let r = state.mixer.rack(&rack).await?;
    Ok(Json(RackStats {
        rack: r.name,
        reported_at: r.last_seen,
        health: r.health,
        stats: r.stats,
    }))
}

// ---------------------------------------------------------------------------------------
// Scenarios

/// What an import did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Imported {
    /// `meta.name`.
    pub name: String,
    /// `meta.version`.
    pub version: String,
    /// SHA-256 of its canonical text.
    pub hash: String,
    /// Whether it was stored now (false: a dry run, or the same version was there).
    pub stored: bool,
    /// The racks it deploys to.
    pub racks: Vec<String>,
    /// Whether it was made the active scenario.
    pub activated: bool,
    /// The racks it was pushed to.
    pub pushed: Vec<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ImportParams {
    /// Check only: store nothing.
    #[serde(default)]
    dry_run: bool,
    /// Make it the active scenario and push it.
    #[serde(default)]
    activate: bool,
}

/// Imports a scenario (its YAML is the body): checked against the gear catalog, stored as
/// `name:version` (immutable), and with `activate` pushed to its racks.
#[utoipa::path(post, path = "/api/v1/scenarios", tag = "scenarios",
    params(ImportParams),
    request_body(content = String, content_type = "application/yaml"),
    responses(
        (status = 200, body = Imported),
        (status = 400, description = "Every problem with its line:col", body = ErrorBody),
        (status = 409, description = "That name:version exists with other content", body = ErrorBody)))]
async fn import_scenario(
    State(state): State<ApiState>,
    Query(params): Query<ImportParams>,
    body: String,
) -> Result<Json<Imported>> {
    let mixer = &state.mixer;
    let checked = if params.dry_run {
        mixer.check(&body)?
    } else {
        mixer.import(&body, false).await?
    };
    let pushed = if params.activate && !params.dry_run {
        mixer.activate(&checked.name, &checked.version).await?
    } else {
        Vec::new()
    };
    Ok(Json(Imported {
        name: checked.name,
        version: checked.version,
        hash: checked.hash,
        stored: checked.stored,
        racks: checked.racks,
        activated: params.activate && !params.dry_run,
        pushed,
    }))
}

/// One stored scenario name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScenarioVersions {
    /// The name.
    pub name: String,
    /// Its versions, in import order.
    pub versions: Vec<String>,
    /// The active version, when one of this name is active.
    pub active: Option<String>,
}

/// Every stored scenario and its versions.
#[utoipa::path(get, path = "/api/v1/scenarios", tag = "scenarios",
    responses((status = 200, body = Vec<ScenarioVersions>)))]
async fn list_scenarios(State(state): State<ApiState>) -> Result<Json<Vec<ScenarioVersions>>> {
    let store = state.mixer.store();
    let active = store.active().await?;
    let mut out = Vec::new();
    for name in store.scenario_names().await? {
        let versions = store.scenario_versions(&name).await?;
        out.push(ScenarioVersions {
            active: active
                .as_ref()
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.clone()),
            versions: versions.into_iter().map(|v| v.version).collect(),
            name,
        });
    }
    Ok(Json(out))
}

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScenarioVersion {
    /// The name.
    pub name: String,
    /// The version.
    pub version: String,
    /// SHA-256 of its canonical text.
    pub hash: String,
    /// When it was imported, milliseconds since the Unix epoch.
    pub imported_at: i64,
    /// The YAML.
    pub yaml: String,
}

impl From<crate::store::ScenarioRecord> for ScenarioVersion {
    fn from(r: crate::store::ScenarioRecord) -> ScenarioVersion {
        ScenarioVersion {
            name: r.name,
            version: r.version,
            hash: r.hash,
            imported_at: r.imported_at,
            yaml: r.yaml,
        }
    }
}

/// The versions of one scenario, in import order.
#[utoipa::path(get, path = "/api/v1/scenarios/{name}/versions", tag = "scenarios",
    params(("name" = String, Path, description = "Scenario name")),
    responses((status = 200, body = Vec<ScenarioVersion>), (status = 404, body = ErrorBody)))]
async fn scenario_versions(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<ScenarioVersion>>> {
    let versions = state.mixer.store().scenario_versions(&name).await?;
    if versions.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NoScenario,
            format!("no scenario `{name}`"),
        ));
    }
    Ok(Json(versions.into_iter().map(Into::into).collect()))
}

async fn find_version(state: &ApiState, name: &str, version: &str) -> Result<ScenarioVersion> {
    Ok(state.mixer.scenario(name, version).await?.into())
}

/// One version (`latest`: the highest), with its YAML.
#[utoipa::path(get, path = "/api/v1/scenarios/{name}/versions/{version}", tag = "scenarios",
    params(("name" = String, Path, description = "Scenario name"),
           ("version" = String, Path, description = "SemVer version or `latest`")),
    responses((status = 200, body = ScenarioVersion), (status = 404, body = ErrorBody)))]
async fn show_scenario(
    State(state): State<ApiState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ScenarioVersion>> {
    Ok(Json(find_version(&state, &name, &version).await?))
}

/// Makes a stored version the active scenario and pushes each rack its part; answers the
/// racks it was pushed to.
#[utoipa::path(post, path = "/api/v1/scenarios/{name}/versions/{version}/activate", tag = "scenarios",
    params(("name" = String, Path, description = "Scenario name"),
           ("version" = String, Path, description = "SemVer version or `latest`")),
    responses((status = 200, body = Vec<String>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn activate_scenario(
    State(state): State<ApiState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Vec<String>>> {
    Ok(Json(state.mixer.activate(&name, &version).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DiffParams {
    /// The old version.
    from: String,
    /// The new version (`latest` allowed).
    to: String,
}

/// The unified diff between two versions of a scenario (`text/plain`; empty when equal).
#[utoipa::path(get, path = "/api/v1/scenarios/{name}/diff", tag = "scenarios",
    params(("name" = String, Path, description = "Scenario name"), DiffParams),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 404, body = ErrorBody)))]
async fn diff_scenario(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    Query(params): Query<DiffParams>,
) -> Result<String> {
    let old = find_version(&state, &name, &params.from).await?;
    let new = find_version(&state, &name, &params.to).await?;
    Ok(diff::unified(
        &format!("{name}:{}", old.version),
        &old.yaml,
        &format!("{name}:{}", new.version),
        &new.yaml,
    ))
}

/// The active scenario.
#[utoipa::path(get, path = "/api/v1/scenarios/active", tag = "scenarios",
    responses((status = 200, body = ScenarioVersion), (status = 404, body = ErrorBody)))]
async fn active_scenario(State(state): State<ApiState>) -> Result<Json<ScenarioVersion>> {
    state
        .mixer
        .active()
        .await?
        .map(|r| Json(r.into()))
        .ok_or_else(|| ApiError::new(ErrorCode::NoScenario, "no scenario is active"))
}

/// One rack's convergence: what it was asked to run, what it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConvergenceRow {
    /// The rack's name.
    pub rack: String,
    /// The version pushed.
    pub asked_version: String,
    /// The hash pushed.
    pub asked_hash: String,
    /// The hash it reports it runs.
    pub applied_hash: String,
    /// `pushed`, `applying`, `applied` or `failed`.
    pub status: String,
    /// Why it failed.
    pub error: String,
    /// When the row last changed, milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// The fleet's convergence on the active scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScenarioStatus {
    /// The active scenario's name, version and hash.
    pub active: Option<ScenarioRef>,
    /// One row per rack asked to run something.
    pub racks: Vec<ConvergenceRow>,
}

/// A scenario version by name, version and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScenarioRef {
    /// The name.
    pub name: String,
    /// The version.
    pub version: String,
    /// Its hash.
    pub hash: String,
}

/// The active scenario and, per rack, the hash asked, the hash applied, the push's status
/// and error.
#[utoipa::path(get, path = "/api/v1/scenarios/status", tag = "scenarios",
    responses((status = 200, body = ScenarioStatus)))]
async fn scenario_status(State(state): State<ApiState>) -> Result<Json<ScenarioStatus>> {
    let active = state.mixer.active().await?.map(|r| ScenarioRef {
        name: r.name,
        version: r.version,
        hash: r.hash,
    });
    let racks = state
        .mixer
        .convergence()
        .await?
        .into_iter()
        .map(|c| ConvergenceRow {
            rack: c.rack,
            asked_version: c.asked_version,
            asked_hash: c.asked_hash,
            applied_hash: c.applied_hash,
            status: c.status,
            error: c.error,
            updated_at: c.updated_at,
        })
        .collect();
    Ok(Json(ScenarioStatus { active, racks }))
}

// ---------------------------------------------------------------------------------------
// Gear catalog

/// One gear type of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Catalog {
    /// The type name (`route`, `io_tcp`…).
    #[serde(rename = "type")]
    pub gear_type: String,
    /// Its category.
    pub category: String,
    /// Its maturity.
    pub status: String,
    /// What it does.
    pub summary: String,
}

/// The gear types scenarios may use.
#[utoipa::path(get, path = "/api/v1/gears", tag = "gears",
    responses((status = 200, body = Vec<Catalog>)))]
async fn list_gears(State(state): State<ApiState>) -> Json<Vec<Catalog>> {
    let text = |v: serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    Json(
        state
            .factory
            .manifests()
            .map(|m| Catalog {
                gear_type: m.gear_type.clone(),
                category: text(serde_json::to_value(m.category).unwrap_or_default()),
                status: text(serde_json::to_value(m.status).unwrap_or_default()),
                summary: m.summary.clone(),
            })
            .collect(),
    )
}

/// One gear type's manifest: ports, terminus and the JSON Schema of its configuration.
#[utoipa::path(get, path = "/api/v1/gears/{type}", tag = "gears",
    params(("type" = String, Path, description = "Gear type")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn show_gear(
    State(state): State<ApiState>,
    Path(gear_type): Path<String>,
) -> Result<Json<serde_json::Value>> {
    let manifest = state
        .factory
        .manifests()
        .find(|m| m.gear_type == gear_type)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no gear type `{gear_type}`")))?;
    serde_json::to_value(manifest)
        .map(Json)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))
}

// ---------------------------------------------------------------------------------------
// Dead letters

/// One dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterBody {
    /// Its sequence in `flux-dlq`.
    pub sequence: u64,
    /// The rack whose consumer gave up.
    pub rack: Option<String>,
    /// The gear whose input it was.
    pub gear: Option<String>,
    /// The gear's input port.
    pub port: Option<String>,
    /// The subject it was first published on (where a replay sends it).
    pub origin: Option<String>,
    /// Why it gave up.
    pub reason: String,
    /// How many times it was delivered.
    pub deliveries: Option<u32>,
    /// Which message of a lane's pack it was (the rest of the pack was handled), when it
    /// was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
    /// When it gave up, milliseconds since the Unix epoch.
    pub time_ms: Option<u64>,
    /// The fluxMsg as JSON (only when one is asked for by sequence), or `null` when its
    /// bytes are not a fluxMsg. A pack that gave up whole (a lane publishes several messages
    /// as one pack; its deliveries ran out) is an array of its messages.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<serde_json::Value>,
}

impl DeadLetterBody {
    fn new(letter: &snake::DeadLetter, with_message: bool) -> DeadLetterBody {
        DeadLetterBody {
            sequence: letter.sequence,
            rack: letter.rack().map(str::to_owned),
            gear: letter.gear().map(str::to_owned),
            port: letter.port().map(str::to_owned),
            origin: letter.origin.as_ref().map(|s| s.as_str().to_owned()),
            reason: letter.reason.clone(),
            deliveries: letter.deliveries,
            part: letter.part,
            time_ms: letter.time_ms,
            message: with_message.then(|| {
                let codec = Codec::default();
                let one = |bytes: &[u8]| {
                    codec
                        .decode(bytes)
                        .map_or(serde_json::Value::Null, |m| json::to_json(&m))
                };
                let payload = &letter.message.payload;
                if !fluxmsg::pack::is_pack(payload) {
                    return one(payload);
                }
                fluxmsg::pack::parts(payload).map_or(serde_json::Value::Null, |parts| {
                    parts.iter().map(|p| one(p)).collect()
                })
            }),
        }
    }
}

/// A page of dead letters and how many match in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetters {
    /// How many dead letters match the filter.
    pub count: u64,
    /// This page, oldest first.
    pub letters: Vec<DeadLetterBody>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeadLetterParams {
    /// Only this rack's.
    rack: Option<String>,
    /// Only this gear's.
    gear: Option<String>,
    /// From this sequence on (to page: the last one's plus one).
    #[serde(default)]
    from: u64,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// The dead letters of the fleet, of a rack or of a gear.
#[utoipa::path(get, path = "/api/v1/dlq", tag = "dead letters",
    params(DeadLetterParams),
    responses((status = 200, body = DeadLetters), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_dead_letters(
    State(state): State<ApiState>,
    Query(p): Query<DeadLetterParams>,
) -> Result<Json<DeadLetters>> {
    let filter = snake::Pattern::dead_letters_of(p.rack.as_deref(), p.gear.as_deref())?;
    let snake = state.mixer.snake();
    let count = match snake.count_dead_letters(&filter).await {
        Ok(n) => n,
        // No rack made the stream yet: nothing was ever dead-lettered.
        Err(snake::Error::StreamNotFound(_)) => 0,
        Err(e) => return Err(e.into()),
    };
    let limit = p.limit.unwrap_or(100).min(1000);
    let letters = if count == 0 {
        Vec::new()
    } else {
        snake.dead_letters(&filter, p.from, limit).await?
    };
    Ok(Json(DeadLetters {
        count,
        letters: letters
            .iter()
            .map(|l| DeadLetterBody::new(l, false))
            .collect(),
    }))
}

/// One dead letter, with its message.
#[utoipa::path(get, path = "/api/v1/dlq/{sequence}", tag = "dead letters",
    params(("sequence" = u64, Path, description = "Its sequence in flux-dlq")),
    responses((status = 200, body = DeadLetterBody), (status = 404, body = ErrorBody)))]
async fn show_dead_letter(
    State(state): State<ApiState>,
    Path(sequence): Path<u64>,
) -> Result<Json<DeadLetterBody>> {
    let letter = state
        .mixer
        .snake()
        .dead_letter(sequence)
        .await?
        .ok_or(snake::Error::DeadLetterNotFound(sequence))?;
    Ok(Json(DeadLetterBody::new(&letter, true)))
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Replayed {
    /// The dead letter's sequence (now removed).
    pub sequence: u64,
    /// Where it was published.
    pub to: String,
    /// Its sequence in the stream that took it.
    pub stream_sequence: u64,
}

/// Publishes a dead letter again to its original subject; it is removed once the stream
/// acknowledged it.
#[utoipa::path(post, path = "/api/v1/dlq/{sequence}/replay", tag = "dead letters",
    params(("sequence" = u64, Path, description = "Its sequence in flux-dlq")),
    responses((status = 200, body = Replayed), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn replay_dead_letter(
    State(state): State<ApiState>,
    Path(sequence): Path<u64>,
) -> Result<Json<Replayed>> {
    let r = state.mixer.snake().replay_dead_letter(sequence).await?;
    Ok(Json(Replayed {
        sequence: r.sequence,
        to: r.to.as_str().to_owned(),
        stream_sequence: r.ack.sequence,
    }))
}
