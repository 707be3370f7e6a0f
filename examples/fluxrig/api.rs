//! `fluxrig racks …` and `fluxrig scenario …`: the mixer's HTTP API from the command line.
//!
//! The API's URL and token come from `--api-url` / `--api-token` or `FLUXRIG_API_URL` /
//! `FLUXRIG_API_TOKEN`. Tables by default, the API's JSON with `--json`.

use std::io::Write;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt as _, Full};
use hyper::Method;
use serde_json::Value;

use super::Failure;

/// Where the API is, and how to print.
#[derive(Debug, Args)]
pub(crate) struct Api {
    /// The mixer's API.
    #[arg(long, env = "FLUXRIG_API_URL", default_value = "http://127.0.0.1:7400")]
    api_url: String,
    /// Its bearer token.
    #[arg(long, env = "FLUXRIG_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl Api {
    /// Whether to print JSON.
    pub(crate) fn json(&self) -> bool {
        self.json
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum RacksCommand {
    /// One line per rack: name, status, machine id, applied scenario, last seen, labels.
    List {
        /// Only racks with this status (`pending`, `active`, `inactive`, `offline`, `denied`).
        #[arg(long)]
        status: Option<String>,
        /// Only racks with this label (`key=value`); repeat for several.
        #[arg(long)]
        label: Vec<String>,
        #[command(flatten)]
        api: Api,
    },
    /// One rack in full.
    Show(RackArg),
    /// Admit a pending rack.
    Approve(RackArg),
    /// Suspend a rack: it stops its gears.
    Suspend(RackArg),
    /// Activate a suspended rack again.
    Activate(RackArg),
    /// Remove a rack from the registry and release its machine id.
    Remove(RackArg),
    /// Ask a rack to drain and stop.
    Shutdown(RackArg),
    /// Set a rack's log level.
    LogLevel {
        /// The rack's name or id.
        rack: String,
        /// `trace`, `debug`, `info`, `warn` or `error`.
        level: String,
        #[command(flatten)]
        api: Api,
    },
}

/// One rack.
#[derive(Debug, Args)]
pub(crate) struct RackArg {
    /// The rack's name or id.
    rack: String,
    #[command(flatten)]
    api: Api,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ScenarioCommand {
    /// Import a scenario file: checked, stored as name:version, with `--activate` pushed.
    Import {
        /// The scenario (YAML).
        file: std::path::PathBuf,
        /// Check it only.
        #[arg(long)]
        dry_run: bool,
        /// Make it the active scenario and push it.
        #[arg(long)]
        activate: bool,
        /// With `--activate`: wait this long for every rack to report it applied.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
        #[command(flatten)]
        api: Api,
    },
    /// Make a stored version the active scenario and push it.
    Activate {
        /// The scenario's name.
        name: String,
        /// The version [default: the highest].
        #[arg(default_value = "latest")]
        version: String,
        /// Wait this long for every rack to report it applied.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
        #[command(flatten)]
        api: Api,
    },
    /// One line per stored scenario: name, versions, the active one.
    List(ApiOnly),
    /// A stored version's YAML.
    Show {
        /// The scenario's name.
        name: String,
        /// The version [default: the highest].
        #[arg(default_value = "latest")]
        version: String,
        #[command(flatten)]
        api: Api,
    },
    /// The unified diff between two versions.
    Diff {
        /// The scenario's name.
        name: String,
        /// The old version.
        from: String,
        /// The new version.
        #[arg(default_value = "latest")]
        to: String,
        #[command(flatten)]
        api: Api,
    },
    /// The active scenario and, per rack, the hash asked, the hash applied and the status.
    Status(ApiOnly),
}

/// Nothing but the API.
#[derive(Debug, Args)]
pub(crate) struct ApiOnly {
    #[command(flatten)]
    api: Api,
}

/// An HTTP client for one API.
pub(crate) struct Client {
    base: String,
    token: Option<String>,
    runtime: tokio::runtime::Runtime,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

impl Client {
    pub(crate) fn new(api: &Api) -> Result<Client, Failure> {
        let base = api.api_url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(anyhow!("--api-url must be an http:// URL, not {base:?}").into());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        let http = {
            let _guard = runtime.enter();
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http()
        };
        Ok(Client {
            base,
            token: api.api_token.clone(),
            runtime,
            http,
        })
    }

    /// The body of a 2xx answer; the API's error, in one line, otherwise.
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> Result<Bytes, Failure> {
        Ok(self.send(method, &format!("/api/v1{path}"), body)?.0)
    }

    /// Every element of a listing whose pages follow each other by `Link: <…>;
    /// rel="next"` (`GET /api/v1/racks`), from `path` (under `/api/v1`) on, as one array.
    pub(crate) fn pages(&self, path: &str) -> Result<Value, Failure> {
        let mut all = Vec::new();
        let mut next = Some(format!("/api/v1{path}"));
        while let Some(path) = next.take() {
            let (bytes, link) = self.send(Method::GET, &path, None)?;
            let page: Value =
                serde_json::from_slice(&bytes).context("the API's answer is not JSON")?;
            let Value::Array(items) = page else {
                return Err(anyhow!("the API's answer to {path} is not a list").into());
            };
            all.extend(items);
            next = link.and_then(|l| next_link(&l));
            if next.as_deref() == Some(path.as_str()) {
                return Err(anyhow!("the API's next page of {path} is the same page").into());
            }
        }
        Ok(Value::Array(all))
    }

    /// Sends a request to `path` (from the root) and returns the body of a 2xx answer with
    /// its `Link` header; the API's error, in one line, otherwise.
    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> Result<(Bytes, Option<String>), Failure> {
        let url = format!("{}{path}", self.base);
        let mut req = hyper::Request::builder().method(method).uri(&url);
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let content = match body {
            Some((content_type, body)) => {
                req = req.header("content-type", content_type);
                Bytes::from(body)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(content))
            .context("building the request")?;
        let (status, link, bytes) = self.runtime.block_on(async {
            let res = tokio::time::timeout(Duration::from_secs(30), self.http.request(req))
                .await
                .map_err(|_| anyhow!("the API at {} did not answer in 30s", self.base))?
                .with_context(|| format!("cannot reach the API at {}", self.base))?;
            let status = res.status();
            let link = res
                .headers()
                .get(hyper::header::LINK)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let bytes = res.into_body().collect().await?.to_bytes();
            Ok::<_, anyhow::Error>((status, link, bytes))
        })?;
        if status.is_success() {
            return Ok((bytes, link));
        }
        let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut text = format!(
            "{} ({}): {}",
            error["code"].as_str().unwrap_or("http_error"),
            status.as_u16(),
            error["message"].as_str().unwrap_or("no message")
        );
        if status.as_u16() == 401 && self.token.is_none() {
            text.push_str(" (set --api-token or FLUXRIG_API_TOKEN)");
        }
        Err(anyhow!(text).into())
    }

    pub(crate) fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, String)>,
    ) -> Result<Value, Failure> {
        let bytes = self.call(method, path, body)?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes).context("the API's answer is not JSON")?)
    }
}

/// The target of a `Link` header's `rel="next"` entry, when it is a path on the same API.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        (next && target.starts_with("/api/v1/")).then(|| target.to_owned())
    })
}

/// `s` as a path segment.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn racks(command: &RacksCommand, output: &mut dyn Write) -> Result<(), Failure> {
    match command {
        RacksCommand::List { status, label, api } => {
            let mut query = Vec::new();
            if let Some(s) = status {
                query.push(format!("status={}", segment(s)));
            }
            for l in label {
                query.push(format!("label={}", segment(l)));
            }
            let path = if query.is_empty() {
                "/racks".to_owned()
            } else {
                format!("/racks?{}", query.join("&"))
            };
            let racks = Client::new(api)?.pages(&path)?;
            if api.json {
                return print_json(output, &racks);
            }
            let rows = racks
                .as_array()
                .map(|racks| racks.iter().map(rack_row).collect())
                .unwrap_or_default();
            table(
                output,
                &[
                    "NAME",
                    "STATUS",
                    "MACHINE",
                    "APPLIED",
                    "LAST SEEN",
                    "LABELS",
                ],
                rows,
            )
        }
        RacksCommand::Show(RackArg { rack, api }) => {
            let r =
                Client::new(api)?.json(Method::GET, &format!("/racks/{}", segment(rack)), None)?;
            if api.json {
                return print_json(output, &r);
            }
            let row = rack_row(&r);
            for (k, v) in [
                "name",
                "status",
                "machine id",
                "applied",
                "last seen",
                "labels",
            ]
            .iter()
            .zip(row)
            {
                writeln!(output, "{k:<11} {v}")?;
            }
            writeln!(output, "{:<11} {}", "id", text(&r["id"]))?;
            writeln!(output, "{:<11} {}", "version", text(&r["version"]))?;
            writeln!(output, "{:<11} {}", "address", text(&r["ip"]))?;
            if let Some(health) = r["health"].as_object().filter(|h| !h.is_empty()) {
                writeln!(output, "health:")?;
                for (gear, state) in health {
                    writeln!(output, "  {gear:<20} {}", text(state))?;
                }
            }
            Ok(())
        }
        RacksCommand::Approve(arg) => rack_action(arg, "approve", output),
        RacksCommand::Suspend(arg) => rack_action(arg, "suspend", output),
        RacksCommand::Activate(arg) => rack_action(arg, "activate", output),
        RacksCommand::Shutdown(arg) => rack_action(arg, "shutdown", output),
        RacksCommand::Remove(RackArg { rack, api }) => {
            Client::new(api)?.call(Method::DELETE, &format!("/racks/{}", segment(rack)), None)?;
            done(output, api, &format!("removed {rack}"))
        }
        RacksCommand::LogLevel { rack, level, api } => {
            let body = serde_json::json!({ "level": level }).to_string();
            Client::new(api)?.call(
                Method::POST,
                &format!("/racks/{}/log-level", segment(rack)),
                Some(("application/json", body)),
            )?;
            done(
                output,
                api,
                &format!("{rack}: log level {level} at its next heartbeat"),
            )
        }
    }
}

fn rack_action(arg: &RackArg, action: &str, output: &mut dyn Write) -> Result<(), Failure> {
    let client = Client::new(&arg.api)?;
    let path = format!("/racks/{}/{action}", segment(&arg.rack));
    let answer = client.json(Method::POST, &path, None)?;
    if arg.api.json {
        return print_json(output, &answer);
    }
    match answer["status"].as_str() {
        Some(status) => writeln!(output, "{}: {status}", arg.rack)?,
        None => writeln!(output, "{}: {action} at its next heartbeat", arg.rack)?,
    }
    Ok(())
}

fn done(output: &mut dyn Write, api: &Api, what: &str) -> Result<(), Failure> {
    if api.json {
        writeln!(output, "{}", serde_json::json!({ "ok": true }))?;
    } else {
        writeln!(output, "{what}")?;
    }
    Ok(())
}

fn rack_row(r: &Value) -> Vec<String> {
    let labels = r["labels"]
        .as_object()
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    vec![
        text(&r["name"]),
        text(&r["status"]),
        r["machine_id"]
            .as_u64()
            .map_or("-".into(), |m| m.to_string()),
        short_hash(&r["applied_hash"]),
        time(&r["last_seen"]),
        labels,
    ]
}

pub(crate) fn scenario(command: &ScenarioCommand, output: &mut dyn Write) -> Result<(), Failure> {
    match command {
        ScenarioCommand::Import {
            file,
            dry_run,
            activate,
            wait,
            api,
        } => {
            let yaml = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let client = Client::new(api)?;
            let path = format!("/scenarios?dry_run={dry_run}&activate={activate}");
            let imported = client.json(Method::POST, &path, Some(("application/yaml", yaml)))?;
            if api.json {
                print_json(output, &imported)?;
            } else {
                let verb = match (*dry_run, imported["stored"].as_bool()) {
                    (true, _) => "checked",
                    (false, Some(true)) => "imported",
                    _ => "unchanged",
                };
                writeln!(
                    output,
                    "{verb} {}:{} ({}), racks: {}",
                    text(&imported["name"]),
                    text(&imported["version"]),
                    short_hash(&imported["hash"]),
                    list(&imported["racks"])
                )?;
                if *activate && !dry_run {
                    writeln!(
                        output,
                        "activated, pushed to: {}",
                        list(&imported["pushed"])
                    )?;
                }
            }
            if let (Some(wait), true) = (wait, *activate && !dry_run) {
                wait_applied(&client, &text(&imported["hash"]), *wait, api.json, output)?;
            }
            Ok(())
        }
        ScenarioCommand::Activate {
            name,
            version,
            wait,
            api,
        } => {
            let client = Client::new(api)?;
            let path = format!(
                "/scenarios/{}/versions/{}/activate",
                segment(name),
                segment(version)
            );
            let pushed = client.json(Method::POST, &path, None)?;
            if api.json {
                print_json(output, &pushed)?;
            } else {
                writeln!(
                    output,
                    "activated {name}:{version}, pushed to: {}",
                    list(&pushed)
                )?;
            }
            if let Some(wait) = wait {
                let active = client.json(Method::GET, "/scenarios/active", None)?;
                wait_applied(&client, &text(&active["hash"]), *wait, api.json, output)?;
            }
            Ok(())
        }
        ScenarioCommand::List(ApiOnly { api }) => {
            let all = Client::new(api)?.json(Method::GET, "/scenarios", None)?;
            if api.json {
                return print_json(output, &all);
            }
            let rows = all
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|s| {
                            vec![
                                text(&s["name"]),
                                list(&s["versions"]),
                                s["active"].as_str().unwrap_or("-").to_owned(),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            table(output, &["NAME", "VERSIONS", "ACTIVE"], rows)
        }
        ScenarioCommand::Show { name, version, api } => {
            let path = format!("/scenarios/{}/versions/{}", segment(name), segment(version));
            let s = Client::new(api)?.json(Method::GET, &path, None)?;
            if api.json {
                return print_json(output, &s);
            }
            write!(output, "{}", text(&s["yaml"]))?;
            Ok(())
        }
        ScenarioCommand::Diff {
            name,
            from,
            to,
            api,
        } => {
            let path = format!(
                "/scenarios/{}/diff?from={}&to={}",
                segment(name),
                segment(from),
                segment(to)
            );
            let diff = Client::new(api)?.call(Method::GET, &path, None)?;
            if api.json {
                return print_json(
                    output,
                    &serde_json::json!({ "diff": String::from_utf8_lossy(&diff) }),
                );
            }
            output.write_all(&diff)?;
            Ok(())
        }
        ScenarioCommand::Status(ApiOnly { api }) => {
            let status = Client::new(api)?.json(Method::GET, "/scenarios/status", None)?;
            if api.json {
                return print_json(output, &status);
            }
            print_status(&status, output)
        }
    }
}

fn print_status(status: &Value, output: &mut dyn Write) -> Result<(), Failure> {
    match status["active"].as_object() {
        Some(a) => writeln!(
            output,
            "active: {}:{} ({})",
            text(&a["name"]),
            text(&a["version"]),
            short_hash(&a["hash"])
        )?,
        None => writeln!(output, "active: none")?,
    }
    let rows = status["racks"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    vec![
                        text(&r["rack"]),
                        text(&r["asked_version"]),
                        short_hash(&r["asked_hash"]),
                        short_hash(&r["applied_hash"]),
                        text(&r["status"]),
                        text(&r["error"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        output,
        &["RACK", "VERSION", "ASKED", "APPLIED", "STATUS", "ERROR"],
        rows,
    )
}

/// Polls the status until every rack asked for `hash` reports it applied (or one failed),
/// with a live count, for at most `wait`.
fn wait_applied(
    client: &Client,
    hash: &str,
    wait: Duration,
    json: bool,
    output: &mut dyn Write,
) -> Result<(), Failure> {
    let start = Instant::now();
    loop {
        let status = client.json(Method::GET, "/scenarios/status", None)?;
        let rows: Vec<&Value> = status["racks"]
            .as_array()
            .map(|r| r.iter().filter(|r| r["asked_hash"] == hash).collect())
            .unwrap_or_default();
        let applied = rows.iter().filter(|r| r["status"] == "applied").count();
        let failed: Vec<String> = rows
            .iter()
            .filter(|r| r["status"] == "failed")
            .map(|r| format!("{}: {}", text(&r["rack"]), text(&r["error"])))
            .collect();
        if !json {
            write!(output, "\rapplied {applied}/{} ", rows.len())?;
            output.flush()?;
        }
        if !failed.is_empty() {
            if !json {
                writeln!(output)?;
            }
            return Err(anyhow!("the push failed on {}", failed.join("; ")).into());
        }
        if !rows.is_empty() && applied == rows.len() {
            if json {
                print_json(output, &status)?;
            } else {
                writeln!(output, "in {:.1}s", start.elapsed().as_secs_f64())?;
            }
            return Ok(());
        }
        if start.elapsed() >= wait {
            if !json {
                writeln!(output)?;
            }
            return Err(anyhow!(
                "{applied} of {} racks applied {} within {}",
                rows.len(),
                &hash[..hash.len().min(12)],
                humantime::format_duration(wait)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn print_json(output: &mut dyn Write, value: &Value) -> Result<(), Failure> {
    serde_json::to_writer_pretty(&mut *output, value)?;
    writeln!(output)?;
    Ok(())
}

/// Columns as wide as their widest cell, two spaces apart.
fn table(output: &mut dyn Write, headers: &[&str], rows: Vec<Vec<String>>) -> Result<(), Failure> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.trim_end().to_owned()
    };
    writeln!(
        output,
        "{}",
        line(headers.iter().map(|h| (*h).to_owned()).collect())
    )?;
    for row in rows {
        writeln!(output, "{}", line(row))?;
    }
    Ok(())
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

fn short_hash(v: &Value) -> String {
    let h = text(v);
    if h.is_empty() {
        "-".into()
    } else {
        h.chars().take(12).collect()
    }
}

/// Milliseconds since the epoch as RFC 3339 to the second.
fn time(v: &Value) -> String {
    v.as_u64().map_or("-".into(), |ms| {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
    })
}
