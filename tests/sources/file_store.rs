//! FileStore: atomic, owner-only, clear about corruption.

use std::time::{Duration, SystemTime};

use serde_json::{Map, json};
use tokenwarden::store::{FileStore, TokenStore};
use tokenwarden::{ExposeSecret, Token};

fn sample() -> Token {
    let mut extra = Map::new();
    extra.insert("account".into(), json!("acct_7"));
    Token::new("acc-SECRET")
        .expires_at(SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000))
        .with_token_type("Bearer")
        .with_scope("read")
        .with_refresh_token("ref-SECRET")
        .with_extra(extra)
}

#[tokio::test]
async fn saves_and_loads_every_part_of_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path().join("nested/deeper/token.json"));
    assert!(
        store.load().await.unwrap().is_none(),
        "a missing file is no token yet"
    );

    let token = sample();
    store.save(&token).await.unwrap();
    let loaded = store.load().await.unwrap().unwrap();

    assert_eq!(loaded.expose_secret(), "acc-SECRET");
    assert_eq!(
        loaded.refresh_token().unwrap().expose_secret(),
        "ref-SECRET"
    );
    assert_eq!(loaded.expiry(), token.expiry());
    assert_eq!(loaded.scope(), Some("read"));
    assert_eq!(loaded.extra()["account"], "acct_7");
    let issued = |t: &Token| {
        t.issued_at()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
    };
    assert!(issued(&loaded).abs_diff(issued(&token)) < Duration::from_millis(1));
}

#[cfg(unix)]
#[tokio::test]
async fn the_file_is_owner_only_and_no_temporary_file_is_left() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    let store = FileStore::new(&path);
    store.save(&sample()).await.unwrap();
    store.save(&sample()).await.unwrap(); // replaces atomically

    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["token.json"]);
}

#[tokio::test]
async fn corrupt_and_unknown_files_are_clear_errors_that_leave_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    for (content, expected) in [
        (&b"garbage"[..], "is corrupt"),
        (
            br#"{"format": 9, "access_token": "a", "token_type": "Bearer", "issued_at": 1}"#,
            "unknown format 9",
        ),
        (
            br#"{"format": 1, "access_token": "a", "token_type": "Bearer"}"#,
            "missing field `issued_at`",
        ),
    ] {
        std::fs::write(&path, content).unwrap();
        let error = FileStore::new(&path).load().await.unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
        assert!(
            error.contains(&path.display().to_string()),
            "names the file: {error}"
        );
        assert!(!error.contains("acc-"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), content, "left in place");
    }
}

#[tokio::test]
async fn the_on_save_hook_gets_each_new_token_before_readers_do() {
    use std::sync::{Arc, Mutex};
    use tokenwarden::Refresher;
    use tokenwarden::sources::StaticToken;

    let saved = Arc::new(Mutex::new(Vec::new()));
    let hook = tokenwarden::store::on_save({
        let saved = saved.clone();
        move |token: Token| {
            saved.lock().unwrap().push(token.expose_secret().to_owned());
            async { Ok(()) }
        }
    });
    let source = StaticToken::new(Token::new("t-1").expires_in(Duration::from_secs(60)));
    let handle = Refresher::builder(source).store(hook).spawn();
    handle.ready().await.unwrap();
    assert_eq!(*saved.lock().unwrap(), ["t-1"]);
}

/// Spawns a refresher of a static token with `store`, and returns the error of the
/// `PersistFailed` that must come before the first `Rotated`.
async fn first_save_fails(
    store: impl tokenwarden::store::TokenStore,
) -> (
    tokenwarden::TokenHandle,
    tokenwarden::store::StoreError,
    tokio::sync::broadcast::Receiver<tokenwarden::Event>,
) {
    let source = tokenwarden::sources::StaticToken::new(
        Token::new("t-1").expires_in(Duration::from_secs(60)),
    );
    let handle = tokenwarden::Refresher::builder(source).store(store).spawn();
    let mut events = handle.subscribe();
    assert_eq!(handle.ready().await.unwrap().expose_secret(), "t-1");
    let Ok(tokenwarden::Event::PersistFailed { error }) = events.recv().await else {
        panic!("expected PersistFailed first");
    };
    (handle, error, events)
}

#[tokio::test]
async fn a_failing_store_is_reported_and_the_token_still_served() {
    use tokenwarden::Event;
    use tokenwarden::store::StoreError;

    let hook = tokenwarden::store::on_save(|_token: Token| async {
        Err(StoreError::new("keyring locked"))
    });
    let (_handle, error, mut events) = first_save_fails(hook).await;
    assert_eq!(error.to_string(), "keyring locked");
    assert!(matches!(events.recv().await, Ok(Event::Rotated { .. })));
}

/// A store is user code: a panic in it is reported like a failed save, and the refresher lives
/// on (before, it stopped for good).
#[tokio::test]
async fn a_panicking_store_is_reported_and_the_refresher_lives_on() {
    use tokenwarden::Event;

    let hook = tokenwarden::store::on_save(|_token: Token| async {
        if true {
            panic!("store bug");
        }
        Ok(())
    });
    let (handle, error, mut events) = first_save_fails(hook).await;
    assert!(
        error.to_string().contains("panicked while saving"),
        "{error}"
    );
    assert!(matches!(events.recv().await, Ok(Event::Rotated { .. })));
    // Still running: a refresh goes through the store again and answers.
    assert!(handle.refresh().await.is_ok());
    assert!(handle.current().is_ok());
}

/// Stored tokens are checked like fetched ones: an empty one, one with CR/LF or an empty token
/// type is not served; a new one is fetched instead.
#[tokio::test]
async fn an_unusable_stored_token_is_not_served() {
    use tokenwarden::Refresher;

    for (access_token, token_type) in [("", "Bearer"), ("a\r\nb", "Bearer"), ("ok", "")] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.json");
        let stored = json!({
            "format": 1,
            "access_token": access_token,
            "token_type": token_type,
            "issued_at": 1_900_000_000.0,
            "expires_at": 4_000_000_000.0,
        });
        std::fs::write(&path, stored.to_string()).unwrap();
        let source = tokenwarden::sources::StaticToken::new(
            Token::new("fetched").expires_in(Duration::from_secs(600)),
        );
        let handle = Refresher::builder(source)
            .store(FileStore::new(&path))
            .spawn();
        let token = handle.ready().await.unwrap();
        assert_eq!(
            token.expose_secret(),
            "fetched",
            "{access_token:?} {token_type:?}"
        );
    }
}

/// Every kind of bad store file is a clear error that names the file, holds no value from it,
/// and leaves it in place.
#[tokio::test]
async fn bad_store_files_are_clear_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good = serde_json::to_vec(&json!({
        "format": 1, "access_token": "acc-SECRET", "token_type": "Bearer",
        "issued_at": 1_900_000_000.0, "refresh_token": "ref-SECRET",
    }))
    .unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> =
        vec![
        ("truncated", good[..good.len() / 2].to_vec(), "EOF while parsing"),
        ("empty", Vec::new(), "EOF while parsing"),
        ("not JSON", b"\x00\xffbinary".to_vec(), "is corrupt"),
        (
            "a number for the token",
            br#"{"format":1,"access_token":7,"token_type":"Bearer","issued_at":1}"#.to_vec(),
            "invalid type: integer",
        ),
        (
            "a secret where a number belongs",
            br#"{"format":1,"access_token":"a","token_type":"Bearer","issued_at":"ref-SECRET"}"#
                .to_vec(),
            "invalid type: string",
        ),
        (
            "a time out of range",
            br#"{"format":1,"access_token":"a","token_type":"Bearer","issued_at":1e300}"#.to_vec(),
            "out of range",
        ),
    ];
    for (name, content, expected) in cases {
        let path = dir.path().join(format!("{}.json", name.replace(' ', "-")));
        std::fs::write(&path, &content).unwrap();
        let error = FileStore::new(&path).load().await.unwrap_err().to_string();
        assert!(error.contains(expected), "{name}: {error}");
        assert!(
            error.contains(&path.display().to_string()),
            "{name}: {error}"
        );
        assert!(!error.contains("SECRET"), "{name}: {error}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            content,
            "{name}: left in place"
        );
    }

    // A directory where the file should be.
    let path = dir.path().join("a-directory");
    std::fs::create_dir(&path).unwrap();
    let error = FileStore::new(&path).load().await.unwrap_err().to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(
        FileStore::new(&path).save(&sample()).await.is_err(),
        "never replaces a directory"
    );
    assert!(path.is_dir());
}

/// A symlinked store file is read and written through the link; the link stays a link.
#[cfg(unix)]
#[tokio::test]
async fn a_symlinked_store_file_is_written_through_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("secrets/token.json");
    let link = dir.path().join("token.json");
    let store = FileStore::new(&real);
    store.save(&sample()).await.unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let through = FileStore::new(&link);
    assert_eq!(
        through.load().await.unwrap().unwrap().expose_secret(),
        "acc-SECRET"
    );
    through.save(&Token::new("newer-SECRET")).await.unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        store.load().await.unwrap().unwrap().expose_secret(),
        "newer-SECRET",
        "the link's target was replaced"
    );
}

/// Files and directories the store creates are its owner's only; a file others can read
/// still loads (with a warning in the log).
#[cfg(unix)]
#[tokio::test]
async fn created_files_and_directories_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("made/by/store/token.json");
    FileStore::new(&path).save(&sample()).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&dir.path().join("made")), 0o700);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(FileStore::new(&path).load().await.unwrap().is_some());
}

/// A writer killed mid-save leaves its temporary file (a whole token file): it is removed at
/// the next load or save, while a live writer's is kept.
#[tokio::test]
async fn temporary_files_of_crashed_writers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    // No process has this id on Linux (pid_max is at most 4,194,304).
    let crashed = dir.path().join(".token.json.4294967290-17.tmp");
    let ours = dir
        .path()
        .join(format!(".token.json.{}-18.tmp", std::process::id()));
    let unrelated = dir.path().join(".other.json.4294967290-19.tmp");
    for file in [&crashed, &ours, &unrelated] {
        std::fs::write(file, "{\"access_token\": \"leftover-SECRET\"}").unwrap();
    }
    let store = FileStore::new(&path);
    assert!(store.load().await.unwrap().is_none());
    if cfg!(target_os = "linux") {
        assert!(!crashed.exists(), "removed at load");
    }
    assert!(ours.exists(), "a live writer's file is kept");
    assert!(unrelated.exists(), "another store's file is not touched");

    std::fs::write(&crashed, "again").unwrap();
    store.save(&sample()).await.unwrap();
    if cfg!(target_os = "linux") {
        assert!(!crashed.exists(), "removed at save");
    }
}

/// A corrupt store and a failing endpoint: the file (with the only refresh token) is never
/// overwritten with nothing.
#[tokio::test]
async fn a_failing_refresh_never_overwrites_the_stored_file() {
    use tokenwarden::Refresher;
    use tokenwarden::sources::RefreshTokenGrant;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    let content = br#"{"format":1,"access_token":"acc","token_type":"Bearer","issued_at":1,"refresh_token":"only-copy"}"#;
    std::fs::write(&path, &content[..content.len() - 3]).unwrap(); // truncated
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/token", listener.local_addr().unwrap());
    drop(listener);
    let source = RefreshTokenGrant::builder(dead, "configured-refresh")
        .build()
        .unwrap();
    let handle = Refresher::builder(source)
        .store(FileStore::new(&path))
        .spawn();
    let mut events = handle.subscribe();
    assert!(handle.refresh().await.is_err());
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(100), events.recv()).await
    {
        assert!(!matches!(event, tokenwarden::Event::Rotated { .. }));
    }
    handle.shutdown();
    handle.stopped().await;
    assert_eq!(std::fs::read(&path).unwrap(), &content[..content.len() - 3]);
}
