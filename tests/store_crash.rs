//! `FileStore` crash safety: a child process saving in a loop is killed (SIGKILL) mid-save 200
//! times; the file must always hold the old or the new token, whole, and the temporary files
//! the killed writers left behind must be gone after the next save.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokenwarden::store::{FileStore, TokenStore};
use tokenwarden::{ExposeSecret, Token};

const KILLS: usize = 200;
const CHILD_ENV: &str = "TW_CRASH_STORE";

/// Two tokens large enough that a save takes a while to write.
fn token(which: char) -> Token {
    Token::new(which.to_string().repeat(64 * 1024))
        .with_refresh_token(format!("refresh-{which}"))
        .expires_in(Duration::from_secs(3600))
}

/// The child: saves B and A in turn for ever (the parent starts the file with A), after
/// saying it has started.
#[tokio::test]
#[ignore = "the child process of the crash test; run by it"]
async fn crash_child_saves_forever() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = FileStore::new(path);
    let (a, b) = (token('a'), token('b'));
    println!("crash-child-saving");
    loop {
        store.save(&b).await.unwrap();
        store.save(&a).await.unwrap();
    }
}

#[tokio::test]
async fn a_writer_killed_mid_save_leaves_the_old_or_the_new_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    let store = FileStore::new(&path);
    store.save(&token('a')).await.unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut leftovers_seen = 0;
    let mut seen = [0; 2];

    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child_saves_forever",
                "--nocapture",
            ])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait (on the pipe, not a clock) until the child is saving, then kill it at a
        // random moment of its loop.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while let Some(Ok(line)) = lines.next() {
            if line.contains("crash-child-saving") {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(rng.u64(0..20_000)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        leftovers_seen += temporaries(dir.path());

        let loaded = store.load().await;
        let token = match loaded {
            Ok(Some(token)) => token,
            other => panic!("kill {kill}: the file is not whole: {other:?}"),
        };
        let secret = token.expose_secret();
        let which = secret.chars().next().unwrap();
        assert!(
            (which == 'a' || which == 'b')
                && secret.len() == 64 * 1024
                && secret.chars().all(|c| c == which),
            "kill {kill}: a mixed or cut token"
        );
        assert_eq!(
            token.refresh_token().unwrap().expose_secret(),
            &format!("refresh-{which}")
        );
        seen[usize::from(which == 'b')] += 1;
    }
    println!(
        "{KILLS} kills: file held A {} times, B {} times, always whole; \
         temporary files left by killed writers: {leftovers_seen} (removed at the next load)",
        seen[0], seen[1]
    );
    // The kills did land mid-save: both tokens were seen, and writers died holding a
    // temporary file.
    assert!(seen[0] > 0 && seen[1] > 0, "{seen:?}");
    assert!(leftovers_seen > 0, "no kill interrupted a save");

    store.save(&token('a')).await.unwrap();
    assert_eq!(
        temporaries(dir.path()),
        0,
        "crashed writers' files are removed"
    );
}

fn temporaries(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".tmp")
        })
        .count()
}
