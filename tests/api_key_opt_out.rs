//! The API key exchange's opt-out through an environment variable.
//!
//! `std::env::set_var` is sound only while no other thread reads the environment, so this
//! binary has no test harness: it sets its variables first, single-threaded, then checks.

use tokenwarden::sources::ApiKeyExchange;
use tokenwarden::{FetchContext, FetchReason, TokenSource};

fn main() {
    let cases = [
        ("TW_OPT_OUT_TRUE", "true", true),
        ("TW_OPT_OUT_ONE", " 1 ", true),
        ("TW_OPT_OUT_YES", "YES", true),
        ("TW_OPT_OUT_ON", "On\n", true),
        ("TW_OPT_OUT_ZERO", "0", false),
        ("TW_OPT_OUT_FALSE", "false", false),
        ("TW_OPT_OUT_EMPTY", "", false),
        ("TW_OPT_OUT_WORD", "enabled", false),
    ];
    for (name, value, _) in cases {
        // SAFETY: no other thread exists yet (no harness, no runtime started).
        unsafe { std::env::set_var(name, value) };
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut passed, mut failed) = (0, 0);
    let mut check = |name: &str, ok: bool| {
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if ok { passed += 1 } else { failed += 1 }
    };

    for (name, value, opted_out) in cases {
        // An unreachable endpoint: an opted-out source must not even try it.
        let source = ApiKeyExchange::builder("https://unreachable.invalid/jwt", "sk-dev-key")
            .opt_out_env(name)
            .build()
            .unwrap();
        let mut ok = source.passes_key_through() == opted_out;
        if opted_out {
            let token = runtime
                .block_on(source.fetch(FetchContext::new(FetchReason::Initial)))
                .unwrap();
            ok &= token.expose_secret() == "sk-dev-key";
        }
        check(&format!("opt_out {name}={value:?} -> {opted_out}"), ok);
    }
    let unset = ApiKeyExchange::builder("https://api.test/jwt", "sk-dev-key")
        .opt_out_env("TW_OPT_OUT_NEVER_SET")
        .build()
        .unwrap();
    check(
        "an unset variable is no opt-out",
        !unset.passes_key_through(),
    );

    println!(
        "\ntest result: {}. {passed} passed; {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" }
    );
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
