//! A throwaway PostgreSQL server for tests: no root, no Docker.
//!
//! [`Postgres::start`] finds the server binaries ([`find_bin_dir`]), initialises a cluster in
//! a fresh temporary directory (`initdb`, trust authentication, user `postgres`), starts
//! `postgres` on a free port of 127.0.0.1 with its Unix socket in that directory, waits until
//! it accepts connections, and hands out [`Postgres::url`]. Dropping the handle stops the
//! server and removes the directory.
//!
//! Linux only (`setpriv`, `/proc`). Authentication is `trust`: while it runs, any local user
//! can connect to it over 127.0.0.1, so it holds test data only.
//!
//! # Running as root
//!
//! `initdb` and `postgres` refuse to run as root. When the tests run as root (CI here does),
//! both run as the unprivileged user `nobody` through `setpriv --reuid --regid
//! --clear-groups` (util-linux, no PAM session), and the temporary directory is given to that
//! user (`chown`, mode 700) before `initdb` fills it. As any other user they run as that user.
//!
//! # Clean-up, also when `Drop` never runs
//!
//! The server is the child of a small guardian shell, whose standard input is a pipe from this
//! process. The guardian waits for that pipe to close, then stops the server (SIGINT, a fast
//! shutdown; SIGKILL after 10 s) and removes the directory. Dropping the handle closes the
//! pipe and waits for the guardian; so does the end of the process however it ends (a panic,
//! `exit`, SIGKILL), which is what stops a server kept in a `static` (`OnceLock`), whose
//! `Drop` never runs.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The environment variable naming the directory of the server binaries to use (`initdb` and
/// `postgres`), instead of the lookup of [`find_bin_dir`].
pub const POSTGRES_BIN_ENV: &str = "FLUXRIG_POSTGRES_BIN";

/// The user that runs the server when the tests run as root.
const UNPRIVILEGED_USER: &str = "nobody";
/// How long the server may take to accept connections (after `initdb`, which has no bound)
/// before [`Postgres::start`] gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the start looks at the server.
const POLL: Duration = Duration::from_millis(20);
/// How many ports the start tries when the one it picked was taken in between.
const PORT_ATTEMPTS: usize = 5;
/// How many log lines an error carries.
const TAIL_LINES: usize = 20;

/// What to do when no binaries are found.
const INSTALL_HINT: &str = "install PostgreSQL's server (`make setup-postgres`, or \
    `apt-get install postgresql`), or name the directory of initdb and postgres in \
    FLUXRIG_POSTGRES_BIN";

/// The guardian: `$1` is the working directory, the rest the server's command line. Prints
/// the server's pid, waits for its standard input to close, stops the server, removes the
/// directory. The timer that kills a server slow to stop inherits the ignored TERM, so it is
/// ended with KILL once the server is gone (before its pid can be reused); its `sleep` may
/// linger for the rest of its 10 s.
const GUARDIAN: &str = r#"
dir=$1
shift
"$@" </dev/null >>"$dir/postgres.log" 2>&1 &
pid=$!
echo "$pid"
trap '' INT HUP TERM
while read -r _; do :; done
kill -INT "$pid" 2>/dev/null
( sleep 10; kill -KILL "$pid" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
timer=$!
wait "$pid"
kill -KILL "$timer" 2>/dev/null
rm -rf "$dir"
"#;

/// The directories where the server binaries may be, in lookup order: the one in
/// `FLUXRIG_POSTGRES_BIN` ([`POSTGRES_BIN_ENV`]) alone when it is set; else each directory of
/// `PATH`, then Debian's `/usr/lib/postgresql/<version>/bin`, newest version first.
pub fn bin_dir_candidates() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os(POSTGRES_BIN_ENV).filter(|d| !d.is_empty()) {
        return vec![PathBuf::from(dir)];
    }
    let mut out: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|d| std::cmp::Reverse(d.0));
    out.extend(debian.into_iter().map(|(_, dir)| dir));
    out
}

/// The first candidate of [`bin_dir_candidates`] that has both `initdb` and `postgres`, with
/// symbolic links resolved (`initdb` finds its share directory next to its real path).
///
/// # Errors
///
/// [`io::ErrorKind::NotFound`] naming every directory tried and how to install PostgreSQL.
pub fn find_bin_dir() -> io::Result<PathBuf> {
    let candidates = bin_dir_candidates();
    for dir in &candidates {
        let (initdb, postgres) = (dir.join("initdb"), dir.join("postgres"));
        if is_executable(&initdb) && is_executable(&postgres) {
            let real = fs::canonicalize(&initdb)?;
            return Ok(real.parent().map_or_else(|| dir.clone(), Path::to_path_buf));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "no PostgreSQL server binaries (initdb and postgres) in {}: {INSTALL_HINT}",
            candidates
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running throwaway PostgreSQL server; see the [module](self) docs.
///
/// ```no_run
/// let server = testkit::postgres::Postgres::start()?;
/// println!("connect to {}", server.url());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    port: u16,
    pid: u32,
    guardian: Child,
    /// Closing it tells the guardian to stop the server.
    guardian_stdin: Option<ChildStdin>,
}

impl Postgres {
    /// Initialises a cluster in a fresh temporary directory and starts a server on it.
    ///
    /// # Errors
    ///
    /// When the binaries are missing (see [`find_bin_dir`]), when the directory cannot be
    /// made ready, or when `initdb` or the server fails (the error carries the end of its
    /// output) or the server is not ready within a minute.
    pub fn start() -> io::Result<Postgres> {
        let bin = find_bin_dir()?;
        let user = if running_as_root()? {
            Some(unprivileged_user()?)
        } else {
            None
        };
        let dir = create_dir()?;
        let started = init_and_start(&bin, user, &dir);
        if started.is_err() {
            // Nothing else owns the directory yet.
            let _ = fs::remove_dir_all(&dir);
        }
        started
    }

    /// The URL of the database `postgres` as the superuser `postgres` (trust authentication,
    /// no password): `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of the database `database` (which the caller creates) as `postgres`.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the cluster (`data/`), its Unix socket and its log
    /// (`postgres.log`); removed when the server stops.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        drop(self.guardian_stdin.take());
        // The guardian ends within the 10 s it gives the server.
        let _ = self.guardian.wait();
    }
}

/// Whether this process runs as root: the owner of `/proc/self` is its effective user.
fn running_as_root() -> io::Result<bool> {
    Ok(fs::metadata("/proc/self")?.uid() == 0)
}

/// The uid and gid of [`UNPRIVILEGED_USER`], from `/etc/passwd`.
fn unprivileged_user() -> io::Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            if fields.next()? != UNPRIVILEGED_USER {
                return None;
            }
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "running as root, and there is no user `{UNPRIVILEGED_USER}` in /etc/passwd \
                     to run initdb and postgres as"
                ),
            )
        })
}

/// A fresh directory under the system's temporary directory.
fn create_dir() -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Short: the socket's path must fit in 107 bytes.
    let dir = std::env::temp_dir().join(format!(
        "fluxrig-pg-{}-{}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&dir)?;
    Ok(dir)
}

/// `program` as `user` (uid, gid) when given, through `setpriv`.
fn command_as(user: Option<(u32, u32)>, program: &Path) -> Command {
    match user {
        Some((uid, gid)) => {
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            command
        }
        None => Command::new(program),
    }
}

fn init_and_start(bin: &Path, user: Option<(u32, u32)>, dir: &Path) -> io::Result<Postgres> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    }
    let data = dir.join("data");
    let output = command_as(user, &bin.join("initdb"))
        .arg("--pgdata")
        .arg(&data)
        .args([
            "--username=postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "initdb {} failed ({}): {}",
            data.display(),
            output.status,
            tail(&String::from_utf8_lossy(
                &[output.stdout, output.stderr].concat()
            ))
        )));
    }
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        match spawn(bin, user, dir, &data, crate::free_port(), deadline) {
            Ok(server) => return Ok(server),
            Err(Start::PortTaken(e)) => last_error = Some(e),
            Err(Start::Failed(e)) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no port to start postgres on")))
}

/// Why one start failed.
enum Start {
    /// Another socket took the port: worth another try on another port.
    PortTaken(io::Error),
    Failed(io::Error),
}

fn spawn(
    bin: &Path,
    user: Option<(u32, u32)>,
    dir: &Path,
    data: &Path,
    port: u16,
    deadline: Instant,
) -> Result<Postgres, Start> {
    let server = command_as(user, &bin.join("postgres"));
    let mut guardian = Command::new("sh");
    guardian
        .arg("-c")
        .arg(GUARDIAN)
        .arg("fluxrig-postgres-guardian")
        .arg(dir)
        .arg(server.get_program())
        .args(server.get_args())
        .arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
        .arg(dir)
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
        ])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = guardian.spawn().map_err(Start::Failed)?;
    let stdin = child.stdin.take();
    let pid = child
        .stdout
        .take()
        .and_then(|out| {
            let mut line = String::new();
            BufReader::new(out).read_line(&mut line).ok()?;
            line.trim().parse::<u32>().ok()
        })
        .ok_or_else(|| Start::Failed(io::Error::other("the postgres guardian gave no pid")));
    let mut server = Postgres {
        dir: dir.to_owned(),
        port,
        pid: 0,
        guardian: child,
        guardian_stdin: stdin,
    };
    server.pid = pid?;
    loop {
        if server_ready(data) {
            return Ok(server);
        }
        if !process_alive(server.pid) {
            let log = read_log(dir);
            let error = io::Error::other(format!("postgres exited: {}", tail(&log)));
            if log.contains("Address already in use") {
                // The cluster stays for a start on another port: stop the guardian without
                // letting it clean up, and start the next log afresh.
                let _ = server.guardian.kill();
                let _ = fs::remove_file(dir.join("postgres.log"));
                return Err(Start::PortTaken(error));
            }
            return Err(Start::Failed(error));
        }
        if Instant::now() >= deadline {
            let error = io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "postgres not ready in {START_TIMEOUT:?}: {}",
                    tail(&read_log(dir))
                ),
            );
            return Err(Start::Failed(error));
        }
        std::thread::sleep(POLL);
    }
}

/// Whether the server says it accepts connections: the 8th line of `postmaster.pid` is
/// `ready` once it does.
fn server_ready(data: &Path) -> bool {
    fs::read_to_string(data.join("postmaster.pid"))
        .is_ok_and(|text| text.lines().nth(7).is_some_and(|l| l.trim() == "ready"))
}

/// Whether `pid` runs (a zombie, which the guardian has not reaped yet, does not).
fn process_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) state …`: the state follows the last `)`.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn read_log(dir: &Path) -> String {
    let mut text = Vec::new();
    let _ = fs::File::open(dir.join("postgres.log"))
        .and_then(|f| f.take(1024 * 1024).read_to_end(&mut text));
    String::from_utf8_lossy(&text).into_owned()
}

/// The last lines of `text`.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}
