use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::{candidates_from, listening_port, moves_log};

#[track_caller]
fn check_candidates(
    override_path: Option<&str>,
    path_var: Option<&str>,
    cwd: Option<&str>,
    expect: &[&str],
) {
    let got = candidates_from(
        override_path.map(OsString::from),
        path_var.map(OsStr::new),
        cwd.map(Path::new),
    );
    let expect: Vec<PathBuf> = expect.iter().map(PathBuf::from).collect();
    assert_eq!(got, expect);
}

#[test]
fn override_is_the_only_candidate() {
    check_candidates(
        Some("/opt/nats/nats-server"),
        Some("/usr/bin"),
        Some("/work"),
        &["/opt/nats/nats-server"],
    );
}

#[test]
fn path_then_venv_in_every_ancestor() {
    check_candidates(
        None,
        Some("/usr/local/bin:/usr/bin"),
        Some("/work/main/snake"),
        &[
            "/usr/local/bin/nats-server",
            "/usr/bin/nats-server",
            "/work/main/snake/.venv/bin/nats-server",
            "/work/main/.venv/bin/nats-server",
            "/work/.venv/bin/nats-server",
            "/.venv/bin/nats-server",
        ],
    );
}

#[test]
fn empty_override_and_path_entries_are_ignored() {
    check_candidates(Some(""), Some("::/bin:"), None, &["/bin/nats-server"]);
    check_candidates(None, None, None, &[]);
}

#[test]
fn port_from_the_listening_line() {
    let line = "[18473] 2026/11/23 15:47:05.240098 [INF] Listening for client connections on 127.0.0.1:35647";
    assert_eq!(listening_port(line), Some(35647));
    assert_eq!(
        listening_port("[1] [INF] Listening for client connections on [::1]:4222"),
        Some(4222)
    );
    assert_eq!(listening_port("[1] [INF] Server is ready"), None);
    assert_eq!(
        listening_port("[1] [INF] Listening for client connections on 0.0.0.0:x"),
        None
    );
}

#[test]
fn log_moving_flags() {
    for arg in [
        "-l",
        "--log",
        "-log=/tmp/x",
        "--syslog",
        "-s",
        "-r",
        "--remote_syslog=udp://x",
    ] {
        assert!(moves_log(arg.as_ref()), "{arg}");
    }
    for arg in ["-D", "--tls", "-lame", "log", "--logtime", "-sd"] {
        assert!(!moves_log(arg.as_ref()), "{arg}");
    }
}
