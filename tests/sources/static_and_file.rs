//! StaticToken and FileToken.

use std::time::Duration;

use tokenwarden::sources::{FileToken, StaticToken};
use tokenwarden::{FetchContext, FetchReason, Refresher, Token, TokenSource};

fn ctx() -> FetchContext {
    FetchContext::new(FetchReason::Initial)
}

#[tokio::test]
async fn a_static_token_is_always_the_same() {
    let source = StaticToken::new(Token::new("fixed").expires_in(Duration::from_secs(60)));
    let handle = Refresher::builder(source).spawn();
    assert_eq!(handle.ready().await.unwrap().expose_secret(), "fixed");
    assert!(!format!("{:?}", StaticToken::new(Token::new("fixed"))).contains("fixed"));
}

#[tokio::test]
async fn a_file_token_is_read_trimmed_and_picked_up_again_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "  first-token\n").unwrap();
    let source = FileToken::new(&path).reread_every(Duration::from_secs(10));

    let token = source.fetch(ctx()).await.unwrap();
    assert_eq!(token.expose_secret(), "first-token");
    assert_eq!(
        token.refresh_in(),
        Some(Duration::from_secs(10)),
        "re-read within 10 s"
    );

    std::fs::write(&path, "second-token").unwrap();
    assert_eq!(
        source.fetch(ctx()).await.unwrap().expose_secret(),
        "second-token"
    );

    // Through a refresher: a rejected token makes it read the file again at once.
    let handle = Refresher::builder(FileToken::new(&path)).spawn();
    let current = handle.ready().await.unwrap();
    std::fs::write(&path, "third-token").unwrap();
    assert_eq!(
        handle.reject(&current).await.unwrap().expose_secret(),
        "third-token"
    );
}

#[tokio::test]
async fn a_missing_or_empty_file_is_a_transient_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let error = FileToken::new(&path).fetch(ctx()).await.unwrap_err();
    assert!(error.is_transient());
    assert!(
        error
            .to_string()
            .starts_with(&format!("token file {}", path.display()))
    );

    std::fs::write(&path, " \n").unwrap();
    let error = FileToken::new(&path).fetch(ctx()).await.unwrap_err();
    assert!(error.to_string().ends_with("is empty"), "{error}");
}

async fn within<T>(fetch: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .expect("answers at once")
}

/// A FIFO without a writer, a directory, or a huge file is refused at once: no thread left
/// blocked, no file read into memory.
#[tokio::test]
async fn special_and_oversized_files_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();

    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let source = FileToken::new(&fifo);
        let error = within(source.fetch(ctx())).await.unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    let source = FileToken::new(dir.path());
    let error = within(source.fetch(ctx())).await.unwrap_err();
    assert!(error.to_string().contains("not a regular file"), "{error}");

    let huge = dir.path().join("huge");
    std::fs::write(&huge, vec![b'a'; 1024 * 1024]).unwrap();
    let source = FileToken::new(&huge);
    let error = within(source.fetch(ctx())).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("1048576 bytes, more than the 65536"),
        "{error}"
    );
    let source = FileToken::new(&huge).max_bytes(2 * 1024 * 1024);
    assert_eq!(
        within(source.fetch(ctx()))
            .await
            .unwrap()
            .expose_secret()
            .len(),
        1024 * 1024
    );
}
