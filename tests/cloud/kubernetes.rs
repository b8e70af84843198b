//! A projected service-account token rotated the way the kubelet rotates it: a new
//! timestamped directory, then an atomic rename of the `..data` symbolic link.

use std::path::Path;
use std::time::Duration;

use tokenwarden::Event;
use tokenwarden::sources::FileToken;

use super::{first_token, spawn};

/// A JWT the kubelet might write (unsigned; the source reads claims only).
fn service_account_token(n: u32, lifetime: u64) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "aud": ["sts.example.com"],
        "sub": "system:serviceaccount:default:workload",
        "iat": now,
        "exp": now + lifetime,
        "n": n,
    });
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Writes `token` as the kubelet's atomic writer does: a fresh directory, a `..data_tmp` link
/// to it, renamed over `..data`; `token` itself links to `..data/token`.
fn kubelet_writes(dir: &Path, n: u32, token: &str) {
    let version = format!("..2026_11_30_00_00_0{n}.{n}");
    std::fs::create_dir(dir.join(&version)).unwrap();
    std::fs::write(dir.join(&version).join("token"), token).unwrap();
    std::os::unix::fs::symlink(&version, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    if !dir.join("token").exists() {
        std::os::unix::fs::symlink("..data/token", dir.join("token")).unwrap();
    }
}

#[tokio::test]
async fn a_token_the_kubelet_rotates_is_picked_up_before_the_old_one_expires() {
    let dir = tempfile::tempdir().unwrap();
    let first = service_account_token(1, 3600);
    kubelet_writes(dir.path(), 1, &first);
    let source = FileToken::new(dir.path().join("token")).reread_every(Duration::from_millis(100));
    let handle = spawn(source);
    let mut events = handle.subscribe();
    assert_eq!(first_token(&handle).await.expose_secret(), first);

    let second = service_account_token(2, 3600);
    kubelet_writes(dir.path(), 2, &second);
    let rotated = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(Event::Rotated { token, .. }) = events.recv().await
                && token.expose_secret() == second
            {
                return token;
            }
        }
    })
    .await
    .expect("the new token within 20 s");
    assert_eq!(rotated.claims().unwrap()["n"], 2);
    assert_eq!(handle.current().unwrap().expose_secret(), second);
}

#[test]
fn the_default_is_the_path_the_kubelet_mounts() {
    let shown = format!("{:?}", FileToken::kubernetes());
    assert!(
        shown.contains("/var/run/secrets/kubernetes.io/serviceaccount/token"),
        "{shown}"
    );
}
