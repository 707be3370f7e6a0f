//! The example wasm guests (`examples/guests/*`), built from source for the tests that run
//! them.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// The workspace's root directory.
#[must_use]
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map_or(here.clone(), PathBuf::from)
}

/// Builds the guest crates (release, `wasm32-unknown-unknown`, target dir `target/guests`)
/// once per process and returns the path of `name`'s module (`"testbed"` →
/// `guest_testbed.wasm`).
///
/// # Panics
///
/// When the build fails, with cargo's output and, when the target is missing, the command
/// that installs it: a test that needs a guest fails loudly instead of skipping.
#[must_use]
pub fn guest_wasm(name: &str) -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let root = workspace_root();
    let target = root.join("target").join("guests");
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    if !*built {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let output = Command::new(cargo)
            .current_dir(&root)
            .args([
                "build",
                "--release",
                "--locked",
                "--target",
                "wasm32-unknown-unknown",
                "-p",
                "guest-risk",
                "-p",
                "guest-testbed",
                "--target-dir",
            ])
            .arg(&target)
            .output()
            .unwrap_or_else(|e| panic!("cannot run cargo to build the wasm guests: {e}"));
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let hint = if stderr.contains("wasm32-unknown-unknown")
                && stderr.contains("target may not be installed")
            {
                "\nthe wasm32-unknown-unknown target is missing: run `rustup target add wasm32-unknown-unknown` (make test does)"
            } else {
                ""
            };
            panic!("building the wasm guests failed:\n{stderr}{hint}");
        }
        *built = true;
    }
    let path = target
        .join("wasm32-unknown-unknown")
        .join("release")
        .join(format!("guest_{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "no guest module at {}", path.display());
    path
}
