//! panva's oidc-provider (OpenID Certified), pinned in `tests/interop/package.json`, as a
//! real authorization server on loopback: started by a test, stopped by its process id. It
//! rotates refresh tokens at every use and revokes the whole grant when a spent one is
//! presented again. Installed from `tests/interop/package-lock.json` when missing (`npm ci`).

#![allow(dead_code)] // each test target uses a part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::required::server_missing;

/// RFC 6749 section 2.3.1: characters that must be form-encoded before Basic.
pub const SECRET: &str = "p+a:s/s%w&o=rd";

/// The authorization server, killed (by its process id) when dropped.
pub struct AuthServer {
    pub child: Child,
    pub token_endpoint: String,
    pub refresh_token: String,
    /// A refresh token of public client `rt-dpop`, bound to the key given to `start_dpop`.
    pub dpop_refresh_token: Option<String>,
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server with access tokens living `ttl` seconds, or says why it cannot.
pub fn start(ttl: u64) -> Option<AuthServer> {
    start_with(ttl, None)
}

/// As `start`, with a refresh token of client `rt-dpop` bound to the DPoP key whose
/// thumbprint is `jkt`.
pub fn start_dpop(ttl: u64, jkt: &str) -> Option<AuthServer> {
    start_with(ttl, Some(jkt))
}

fn start_with(ttl: u64, jkt: Option<&str>) -> Option<AuthServer> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    if Command::new("node").arg("--version").output().is_err() {
        server_missing("Node.js", "Debian: apt-get install nodejs npm");
        return None;
    }
    install(&dir);
    let mut child = Command::new("node")
        .arg(dir.join("server.mjs"))
        .args([SECRET, &ttl.to_string()])
        .args(jkt)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Keep reading what it prints, so that it never writes into a closed pipe.
    std::thread::spawn(move || stdout.lines().for_each(drop));
    let ready: serde_json::Value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("the server did not start ({e}): {line:?}"));
    Some(AuthServer {
        child,
        token_endpoint: ready["token_endpoint"].as_str().unwrap().to_owned(),
        refresh_token: ready["refresh_token"].as_str().unwrap().to_owned(),
        dpop_refresh_token: ready["dpop_refresh_token"].as_str().map(str::to_owned),
    })
}

/// Installs the pinned server from `package-lock.json` once, if it is missing.
fn install(dir: &Path) {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        if dir.join("node_modules/oidc-provider").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "installing oidc-provider failed: run `npm ci --prefix tests/interop` (`.ci/run` does)"
        );
    });
}
