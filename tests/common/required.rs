//! What a test does when a server it needs (redis-server, Node.js) is not installed.
//!
//! It fails, saying what to install, so that a missing server can never pass as a green run:
//! always in CI (`CI` set) and by default. A developer without the server who wants the
//! rest of the suite sets `TOKENWARDEN_SKIP_MISSING_SERVERS=1`; the test then passes without
//! running and says so on stderr (`cargo test -- --nocapture` shows it).

/// Called when `server` cannot be run; `install` says how to get it. Returns (so that the test
/// can return early) only when skipping was asked for outside CI.
#[track_caller]
pub fn server_missing(server: &str, install: &str) {
    let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let skip = std::env::var_os("TOKENWARDEN_SKIP_MISSING_SERVERS").is_some_and(|v| v == "1");
    if skip && !in_ci {
        eprintln!("SKIPPED: {server} is not installed ({install})");
        return;
    }
    panic!(
        "{server} is not installed: {install}. `.ci/test` installs everything the tests need; \
         set TOKENWARDEN_SKIP_MISSING_SERVERS=1 to skip the tests that need it (not in CI)"
    );
}
