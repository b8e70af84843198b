//! The providers' official SDKs, run against the emulated platform: google-auth and
//! azure-identity (Python, in `tests/interop/.venv`) and GitHub's `@actions/core` (Node.js, in
//! `tests/interop/node_modules`). `.ci/test` installs both.

use std::path::PathBuf;
use std::time::Duration;

#[path = "../common/required.rs"]
mod required;

fn interop() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// What the SDK printed (the token), or `None` when the SDK is not installed and skipping
/// was asked for (see `required.rs`). Panics with the SDK's own words if it failed.
async fn run(
    program: PathBuf,
    args: &[&str],
    env: &[(&str, String)],
    what: &str,
) -> Option<String> {
    let mut command = tokio::process::Command::new(&program);
    command.args(args).kill_on_drop(true);
    // Only what the test sets: no proxy, no ambient cloud configuration.
    command.env_clear();
    command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command.env("HOME", std::env::temp_dir());
    for (name, value) in env {
        command.env(name, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("{what} could not start ({}): {e}", program.display()));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).unwrap())
}

/// `tests/interop/cloud_sdks.py` with these arguments and environment.
pub async fn python(args: &[&str], env: &[(&str, String)]) -> Option<String> {
    let python = interop().join(".venv/bin/python");
    if !python.exists() {
        required::server_missing(
            "the cloud SDKs (google-auth, azure-identity in tests/interop/.venv)",
            "run `bash .ci/test`, or `python3 -m venv tests/interop/.venv && \
             tests/interop/.venv/bin/pip install -r tests/interop/requirements.txt`",
        );
        return None;
    }
    let script = interop().join("cloud_sdks.py");
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    run(python, &all, env, "the Python SDK").await
}

/// `tests/interop/github_oidc.mjs AUDIENCE` with this environment.
pub async fn github_toolkit(audience: &str, env: &[(&str, String)]) -> Option<String> {
    let toolkit = interop().join("node_modules/@actions/core");
    let node = which("node");
    if !toolkit.exists() || node.is_none() {
        required::server_missing(
            "GitHub's @actions/core (Node.js, tests/interop/node_modules)",
            "run `bash .ci/test`, or `npm ci --prefix tests/interop`",
        );
        return None;
    }
    let script = interop().join("github_oidc.mjs");
    let printed = run(
        node?,
        &[script.to_str().unwrap(), audience],
        env,
        "@actions/core",
    )
    .await?;
    let token = printed.lines().find_map(|line| line.strip_prefix("token="));
    Some(token.expect("the script prints token=...").to_owned())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}
