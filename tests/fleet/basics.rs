//! The fleet's healthy path and its simpler faults, on one real `redis-server`.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokenwarden::fleet::{RedisFleet, redis};
use tokenwarden::{ExposeSecret, FetchError, Refresher, Token, TokenHandle};

use crate::redis_servers::{RedisServer, free_port, signal};
use crate::{counting_source, replica};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_replicas_mint_once_and_a_late_one_adopts() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mints = Arc::new(AtomicU32::new(0));
    let replicas: Vec<_> = (0..10)
        .map(|_| replica(redis.fleet("billing-api"), counting_source(&mints)))
        .collect();
    let mut secrets = std::collections::HashSet::new();
    for handle in &replicas {
        secrets.insert(handle.ready().await.unwrap().expose_secret().to_owned());
    }
    assert_eq!(mints.load(Ordering::SeqCst), 1, "one mint for the fleet");
    assert_eq!(secrets.len(), 1, "every replica serves the same token");

    let late = replica(redis.fleet("billing-api"), counting_source(&mints));
    late.ready().await.unwrap();
    assert_eq!(
        mints.load(Ordering::SeqCst),
        1,
        "a late replica adopts without a fetch"
    );

    // Another credential (another name) is another fleet.
    let other = replica(redis.fleet("other-api"), counting_source(&mints));
    other.ready().await.unwrap();
    assert_eq!(mints.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_every_replica_fetches_on_its_own() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mints = Arc::new(AtomicU32::new(0));
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(redis.fleet("billing-api"), counting_source(&mints)))
        .collect();
    for handle in &replicas {
        handle.ready().await.unwrap();
    }
    assert_eq!(mints.load(Ordering::SeqCst), 1);

    drop(redis); // killed: SIGKILL by its pid
    for handle in &replicas {
        assert!(handle.current().is_ok(), "a valid token is still served");
    }
    for handle in &replicas {
        let token = handle.refresh().await.expect("fetched alone");
        assert!(token.expose_secret().starts_with("fleet-token-"));
    }
    assert_eq!(
        mints.load(Ordering::SeqCst),
        4,
        "each replica minted on its own"
    );
}

/// A refresh-token grant's server: it rotates the refresh token at every use and revokes the
/// grant when a rotated one is presented again (OAuth 2.0 Security BCP).
#[derive(Clone, Default)]
struct Grant(Arc<Mutex<GrantState>>);

#[derive(Default)]
struct GrantState {
    rotations: u32,
    revoked: bool,
}

impl Grant {
    fn source(&self) -> impl tokenwarden::TokenSource {
        let grant = self.0.clone();
        tokenwarden::from_fn(move |ctx| {
            let grant = grant.clone();
            async move {
                let presented = ctx
                    .previous()
                    .and_then(Token::refresh_token)
                    .map_or("rt-0".to_owned(), |rt| rt.expose_secret().to_owned());
                let mut state = grant.lock().unwrap();
                if state.revoked || presented != format!("rt-{}", state.rotations) {
                    state.revoked = true;
                    return Err(FetchError::permanent("invalid_grant: refresh token reused"));
                }
                state.rotations += 1;
                Ok(Token::new(format!("access-{}", state.rotations))
                    .expires_in(Duration::from_secs(600))
                    .with_refresh_token(format!("rt-{}", state.rotations)))
            }
        })
        .single_use()
    }

    /// Whether the grant was revoked, and how many rotations it went through.
    fn outcome(&self) -> (bool, u32) {
        let state = self.0.lock().unwrap();
        (state.revoked, state.rotations)
    }
}

/// Five replicas refreshing in turn follow one refresh-token chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_one_refresh_token_chain() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = Grant::default();
    let replicas: Vec<_> = (0..5)
        .map(|_| replica(redis.fleet("grant"), server.source()))
        .collect();
    for handle in &replicas {
        handle.ready().await.unwrap();
    }
    for round in 0..20 {
        let handle = &replicas[round % replicas.len()];
        handle
            .refresh()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    let (revoked, rotations) = server.outcome();
    assert!(!revoked, "the grant was never revoked");
    // A replica whose token is older than the fleet's adopts the fleet's on refresh();
    // one that already has the newest mints (rotates). Either way one chain.
    assert!((5..=21).contains(&rotations), "{rotations} rotations");
    for handle in &replicas {
        let token = handle.current().unwrap();
        assert!(token.expose_secret().starts_with("access-"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_in_the_fleet_store_debug_or_errors() {
    let fleet = RedisFleet::new(
        redis::Client::open("redis://:pw-SECRET@127.0.0.1:1/").unwrap(),
        "n",
    );
    assert!(!format!("{fleet:?}").contains("SECRET"));
    let handle = replica(
        fleet,
        tokenwarden::from_fn(|_ctx| async {
            Ok::<_, FetchError>(Token::new("t-SECRET").expires_in(Duration::from_secs(60)))
        }),
    );
    // Redis unreachable: fetched alone, and nothing printed holds the password.
    let token = handle.ready().await.unwrap();
    assert_eq!(token.expose_secret(), "t-SECRET");
    assert!(!format!("{handle:?}").contains("SECRET"));
    assert!(handle.current().is_ok());
}

/// What the fleet did is told as events: minted, adopted, store gone, store back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_events_tell_what_happened() {
    use tokenwarden::{Event, Registry};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mints = Arc::new(AtomicU32::new(0));
    let registry: Registry<u32> = Registry::builder().build();
    let mut events = registry.subscribe();
    let first = registry.insert(
        1,
        Refresher::builder(counting_source(&mints)).shared(redis.fleet("evented")),
    );
    first.ready().await.unwrap();
    let second = registry.insert(
        2,
        Refresher::builder(counting_source(&mints)).shared(redis.fleet("evented")),
    );
    second.ready().await.unwrap();
    let mut seen = Vec::new();
    while let Ok(keyed) = events.try_recv() {
        match keyed.event {
            Event::MintedForFleet => seen.push((keyed.key, "minted")),
            Event::AdoptedFromFleet => seen.push((keyed.key, "adopted")),
            _ => {}
        }
    }
    assert_eq!(seen, [(1, "minted"), (2, "adopted")]);

    // The store goes away, and the next refresh says so.
    drop(redis);
    first.refresh().await.unwrap();
    let mut unavailable = false;
    while let Ok(keyed) = events.try_recv() {
        if let Event::FleetUnavailable { error } = keyed.event {
            assert!(!error.to_string().is_empty());
            unavailable = true;
        }
    }
    assert!(unavailable, "FleetUnavailable was sent");
    registry.shutdown();
}

/// With a shared key, what Redis holds is sealed: unreadable there, and useless to a replica
/// with another key (it fetches on its own and says why).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_fleet_token_is_unreadable_in_redis() {
    use tokenwarden::{Event, Registry};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mints = Arc::new(AtomicU32::new(0));
    let key = [7u8; 32];
    let first = replica(redis.fleet("sealed").with_key(key), counting_source(&mints));
    let token = first.ready().await.unwrap();

    let client = redis::Client::open(redis.url.as_str()).unwrap();
    let mut connection = client.get_connection().unwrap();
    let stored: Vec<u8> = redis::cmd("GET")
        .arg("tokenwarden:{sealed}:token")
        .query(&mut connection)
        .unwrap();
    let secret = token.expose_secret().as_bytes();
    assert!(!stored.windows(secret.len()).any(|w| w == secret), "sealed");
    assert!(!String::from_utf8_lossy(&stored).contains("access_token"));

    let same_key = replica(redis.fleet("sealed").with_key(key), counting_source(&mints));
    assert_eq!(
        same_key.ready().await.unwrap().expose_secret(),
        token.expose_secret()
    );
    assert_eq!(mints.load(Ordering::SeqCst), 1, "the same key opens it");

    let registry: Registry<u8> = Registry::builder().build();
    let mut events = registry.subscribe();
    let other_key = registry.insert(
        0,
        Refresher::builder(counting_source(&mints)).shared(redis.fleet("sealed").with_key([9; 32])),
    );
    let own = other_key.ready().await.unwrap();
    assert_ne!(own.expose_secret(), token.expose_secret());
    assert_eq!(
        mints.load(Ordering::SeqCst),
        2,
        "another key fetches on its own"
    );
    let mut why = None;
    while let Ok(keyed) = events.try_recv() {
        if let Event::FleetUnavailable { error } = keyed.event {
            why = Some(error.to_string());
        }
    }
    let why = why.expect("FleetUnavailable");
    assert!(
        why.contains("cannot be opened with this replica's key"),
        "{why}"
    );
    assert!(
        why.contains("tokenwarden:{sealed}:token"),
        "names the record: {why}"
    );
    registry.shutdown();
}

/// While the token endpoint fails, it sees what one replica sends, not what the fleet would:
/// the lease holder retries on its backoff schedule and keeps the lease; the others wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_costs_the_endpoint_one_prober_not_the_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut policy = tokenwarden::RefreshPolicy::default();
    policy.min_interval = Duration::from_millis(10);
    policy.fetch_timeout = Duration::from_secs(1); // the lease
    policy.backoff.initial = Duration::from_millis(50);
    policy.backoff.max = Duration::from_millis(400);
    policy.backoff.jitter = 0.0;
    let failing = |asked: &Arc<AtomicU32>| {
        let asked = asked.clone();
        tokenwarden::from_fn(move |_ctx| {
            asked.fetch_add(1, Ordering::SeqCst);
            async { Err::<Token, _>(FetchError::transient("https://idp.test/token answered 503")) }
        })
    };
    let window = Duration::from_secs(3);

    let alone = Arc::new(AtomicU32::new(0));
    let handle = Refresher::builder(failing(&alone))
        .policy(policy.clone())
        .shared(redis.fleet("alone"))
        .spawn();
    tokio::time::sleep(window).await;
    handle.shutdown();
    let one = alone.load(Ordering::SeqCst);

    let fleet = Arc::new(AtomicU32::new(0));
    let replicas: Vec<_> = (0..5)
        .map(|_| {
            Refresher::builder(failing(&fleet))
                .policy(policy.clone())
                .shared(redis.fleet("fleet"))
                .spawn()
        })
        .collect();
    tokio::time::sleep(window).await;
    for handle in &replicas {
        handle.shutdown();
    }
    let five = fleet.load(Ordering::SeqCst);
    println!("requests in {window:?}: one replica {one}, a fleet of five {five}");
    assert!(one >= 8, "{one}");
    assert!(
        five <= one + 2,
        "a fleet of five sent {five}, one replica {one}"
    );
}

/// Redis frozen (SIGSTOP) past the store's 2 s bound: every replica keeps serving and fetches on
/// its own; resumed (SIGCONT), the fleet converges back to one minter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_is_survived_and_the_fleet_converges_after() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mints = Arc::new(AtomicU32::new(0));
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(redis.fleet("frozen"), counting_source(&mints)))
        .collect();
    for handle in &replicas {
        handle.ready().await.unwrap();
    }
    assert_eq!(mints.load(Ordering::SeqCst), 1);
    let mut events = replicas[0].subscribe();

    signal(&redis.child, "-STOP");
    let refreshes = replicas.iter().map(|handle| {
        let handle = handle.clone();
        tokio::spawn(async move { handle.refresh().await })
    });
    for handle in &replicas {
        assert!(handle.current().is_ok(), "served while Redis is frozen");
    }
    for refresh in refreshes {
        refresh.await.unwrap().expect("fetched alone");
    }
    assert_eq!(
        mints.load(Ordering::SeqCst),
        4,
        "each replica fetched on its own"
    );
    // The stall is named: the store's address, the cause, the bound.
    let why = loop {
        if let tokenwarden::Event::FleetUnavailable { error } = events.recv().await.unwrap() {
            break error;
        }
    };
    assert_eq!(why.kind(), tokenwarden::fleet::FleetErrorKind::Timeout);
    let address = redis
        .url
        .trim_start_matches("redis://")
        .trim_end_matches('/');
    let why = why.to_string();
    assert!(
        why.starts_with(&format!("redis at {address} (fleet `frozen`)"))
            && why.contains("did not answer"),
        "{why}"
    );

    signal(&redis.child, "-CONT");
    // One replica mints for the fleet again; the others adopt its (newer) token.
    replicas[0].refresh().await.unwrap();
    let newest = replicas[0].current().unwrap();
    for handle in &replicas[1..] {
        assert_eq!(
            handle.refresh().await.unwrap().expose_secret(),
            newest.expose_secret()
        );
    }
    assert_eq!(mints.load(Ordering::SeqCst), 5, "one minter again");
}

/// A lease holder that goes away mid-fetch loses the lease when it lapses (at most the
/// policy's `fleet_lease`, 5 s by default, whatever `fetch_timeout` is: 30 s here), and
/// another replica takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_dies_mid_fetch_is_taken_over() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let policy = tokenwarden::RefreshPolicy::default();
    let started = Arc::new(tokio::sync::Notify::new());
    let hanging = tokenwarden::from_fn({
        let started = started.clone();
        move |_ctx| {
            started.notify_one();
            std::future::pending::<Result<Token, FetchError>>()
        }
    });
    let holder = Refresher::builder(hanging)
        .policy(policy.clone())
        .shared(redis.fleet("takeover"))
        .spawn();
    started.notified().await; // it holds the lease and hangs in the fetch
    holder.shutdown();
    holder.stopped().await;

    let mints = Arc::new(AtomicU32::new(0));
    let successor = Refresher::builder(counting_source(&mints))
        .policy(policy)
        .shared(redis.fleet("takeover"))
        .spawn();
    let token = tokio::time::timeout(Duration::from_secs(7), successor.ready())
        .await
        .expect("taken over once the lease ran out (5 s)")
        .unwrap();
    assert!(token.expose_secret().starts_with("fleet-token-"));
    assert_eq!(mints.load(Ordering::SeqCst), 1);
}

/// Ten replicas, each with its own `FileStore`, share a rotating grant through 100 rotations,
/// then all restart (Redis keeps running): they load their stored tokens and carry on the same
/// chain, never presenting a rotated refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotating_grant_survives_100_rotations_and_a_full_fleet_restart() {
    use tokenwarden::store::FileStore;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let grant = Grant::default();
    let dir = tempfile::tempdir().unwrap();
    let spawn_fleet = || -> Vec<TokenHandle> {
        (0..10)
            .map(|i| {
                let mut policy = tokenwarden::RefreshPolicy::default();
                policy.min_interval = Duration::from_millis(1);
                Refresher::builder(grant.source())
                    .policy(policy)
                    .store(FileStore::new(dir.path().join(format!("replica-{i}.json"))))
                    .shared(redis.fleet("rotating"))
                    .spawn()
            })
            .collect()
    };
    let mut replicas = spawn_fleet();
    for handle in &replicas {
        handle.ready().await.unwrap();
    }
    let mut round = 0;
    while grant.outcome().1 < 100 {
        replicas[round % 10]
            .refresh()
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        round += 1;
    }
    for handle in &replicas {
        handle.shutdown();
        handle.stopped().await;
    }

    // The whole fleet restarts from its stores.
    replicas = spawn_fleet();
    for handle in &replicas {
        handle.ready().await.unwrap();
    }
    for (round, handle) in replicas.iter().enumerate() {
        handle
            .refresh()
            .await
            .unwrap_or_else(|e| panic!("after restart, {round}: {e}"));
    }
    let (revoked, rotations) = grant.outcome();
    assert!(
        !revoked,
        "no rotated refresh token was ever presented again"
    );
    assert!(rotations > 100, "{rotations}");
}

/// An ACL user with a password, limited to tokenwarden's keys (and the commands it uses):
/// the fleet works with it; a wrong password makes each replica fetch alone, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_acl_users_work_and_a_wrong_password_is_survived() {
    use tokenwarden::{Event, Registry};
    let acl = [
        "--user",
        "fleet",
        "on",
        ">fleet-pw-SECRET",
        "~tokenwarden:*",
        "+get",
        "+set",
        "+pexpire",
        "+del",
        "+eval",
        "+evalsha",
        "+script|load",
        "+ping",
        "+pttl",
    ];
    let Some(redis) = RedisServer::start_with(&acl, "fleet:fleet-pw-SECRET@") else {
        return;
    };
    let mints = Arc::new(AtomicU32::new(0));
    let a = replica(redis.fleet("acl"), counting_source(&mints));
    let b = replica(redis.fleet("acl"), counting_source(&mints));
    a.ready().await.unwrap();
    b.ready().await.unwrap();
    assert_eq!(
        mints.load(Ordering::SeqCst),
        1,
        "shared through the ACL user"
    );

    let wrong = redis.url.replace("fleet-pw-SECRET", "not-the-PASSWORD");
    let registry: Registry<u8> = Registry::builder().build();
    let mut events = registry.subscribe();
    let outsider = registry.insert(
        0,
        Refresher::builder(counting_source(&mints)).shared(RedisFleet::new(
            redis::Client::open(wrong.as_str()).unwrap(),
            "acl",
        )),
    );
    outsider.ready().await.unwrap();
    assert_eq!(mints.load(Ordering::SeqCst), 2, "fetched alone");
    let mut why = None;
    while let Ok(keyed) = events.try_recv() {
        if let Event::FleetUnavailable { error } = keyed.event {
            why = Some(error.to_string());
        }
    }
    let why = why.expect("FleetUnavailable");
    assert!(
        !why.contains("SECRET") && !why.contains("PASSWORD"),
        "{why}"
    );
    let address = redis.url.rsplit('@').next().unwrap().trim_end_matches('/');
    assert!(
        why.contains("authentication failed") && why.contains(address),
        "names the cause and the address ({address}): {why}"
    );
    registry.shutdown();
}

/// Publishing is fenced: a holder whose lease ran out cannot overwrite the token of the
/// replica that took the lease after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_lease_ran_out_cannot_overwrite_a_newer_token() {
    use tokenwarden::fleet::FleetStore;
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let fleet = redis.fleet("fenced");
    let lease = Duration::from_millis(100);
    assert!(fleet.try_lease("slow-holder", lease).await.unwrap());
    assert!(!fleet.try_lease("other", lease).await.unwrap(), "held");
    assert!(
        fleet.try_lease("slow-holder", lease).await.unwrap(),
        "renewed by its holder"
    );
    tokio::time::sleep(Duration::from_millis(250)).await; // the lease runs out
    assert!(fleet.try_lease("other", lease).await.unwrap());
    let newer = Token::new("newer-token").expires_in(Duration::from_secs(60));
    assert!(fleet.publish("other", &newer).await.unwrap());
    let stale = Token::new("stale-token").expires_in(Duration::from_secs(60));
    assert!(
        !fleet.publish("slow-holder", &stale).await.unwrap(),
        "fenced"
    );
    let shared = fleet.load().await.unwrap().unwrap();
    assert_eq!(shared.expose_secret(), "newer-token");
}

/// Redis killed and restarted (empty) on the same port: replicas fetch alone meanwhile, then
/// reconnect and converge back to one minter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_redis_is_reconnected_and_the_fleet_converges() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let mints = Arc::new(AtomicU32::new(0));
    let replicas: Vec<_> = (0..3)
        .map(|_| replica(redis.fleet("restarted"), counting_source(&mints)))
        .collect();
    for handle in &replicas {
        handle.ready().await.unwrap();
    }
    assert_eq!(replicas[0].fleet_available(), Some(true));
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    replicas[0].refresh().await.expect("fetched alone");
    assert_eq!(mints.load(Ordering::SeqCst), 2);
    assert_eq!(
        replicas[0].fleet_available(),
        Some(false),
        "the flag says so"
    );

    redis.restart();
    // Each replica's first call after the restart may still find its connection broken (it
    // reconnects then): a round of refreshes, then one minter again.
    for handle in &replicas {
        handle.refresh().await.unwrap();
    }
    let before = mints.load(Ordering::SeqCst);
    replicas[1].refresh().await.unwrap();
    let newest = replicas[1].current().unwrap();
    for handle in [&replicas[0], &replicas[2]] {
        assert_eq!(
            handle.refresh().await.unwrap().expose_secret(),
            newest.expose_secret()
        );
    }
    assert_eq!(mints.load(Ordering::SeqCst), before + 1, "one minter again");
    for handle in &replicas {
        assert_eq!(handle.fleet_available(), Some(true));
    }
    let unshared = Refresher::builder(counting_source(&mints)).spawn();
    assert_eq!(unshared.fleet_available(), None);
}

/// `rediss://`: the fleet works over TLS to a server whose certificate the client trusts, and
/// a server it does not trust is never used (each replica fetches alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_works_over_tls_and_refuses_an_untrusted_server() {
    let Some(certs) = test_certificates() else {
        return;
    };
    let dir = certs.path();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let tls = [
        "--tls-port".to_owned(),
        free_port().to_string(),
        "--port".to_owned(),
        "0".to_owned(),
        "--tls-cert-file".to_owned(),
        file("server.crt"),
        "--tls-key-file".to_owned(),
        file("server.key"),
        "--tls-ca-cert-file".to_owned(),
        file("ca.crt"),
        "--tls-auth-clients".to_owned(),
        "no".to_owned(),
    ];
    let port = tls[1].clone();
    let args: Vec<&str> = tls.iter().map(String::as_str).collect();
    let Some(_redis) = RedisServer::start_tls(&args, &port, &file("ca.crt")) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{port}/");
    let root = std::fs::read(dir.join("ca.crt")).unwrap();
    let trusted = || {
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root.clone()),
        };
        RedisFleet::new(
            redis::Client::build_with_tls(url.as_str(), certificates).unwrap(),
            "tls",
        )
    };
    let mints = Arc::new(AtomicU32::new(0));
    let a = replica(trusted(), counting_source(&mints));
    let b = replica(trusted(), counting_source(&mints));
    a.ready().await.unwrap();
    b.ready().await.unwrap();
    assert_eq!(mints.load(Ordering::SeqCst), 1, "shared over TLS");

    // The system's roots do not include the test CA: not trusted, not used.
    let untrusted = RedisFleet::new(redis::Client::open(url.as_str()).unwrap(), "tls");
    let c = replica(untrusted, counting_source(&mints));
    c.ready().await.unwrap();
    assert_eq!(mints.load(Ordering::SeqCst), 2, "fetched alone");
}

/// A CA and a server certificate for 127.0.0.1, made with the `openssl` command (`.ci/run`
/// installs it if missing).
fn test_certificates() -> Option<tempfile::TempDir> {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    std::fs::write(dir.path().join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let made = run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=tokenwarden-test-ca",
    ]) && run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]) && run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "1",
        "-extfile",
        "ext",
    ]);
    if !made {
        crate::required::server_missing("the openssl command", "Debian: apt-get install openssl");
        return None;
    }
    Some(dir)
}

/// `check()` at startup fails a deploy with a wrong address, password or key at once, naming
/// the cause and the address (never the password); a right configuration passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_a_deploy_with_a_wrong_url_password_or_key() {
    use tokenwarden::fleet::{FleetErrorKind, FleetStore};
    let acl = ["--requirepass", "the-PASSWORD"];
    let Some(redis) = RedisServer::start_with(&acl, ":the-PASSWORD@") else {
        return;
    };
    let key = [5u8; 32];
    let good = redis.fleet("checked").with_key(key);
    good.check().await.expect("a right configuration passes");
    // Something sealed with the right key, for the wrong key to fail on.
    let mints = Arc::new(AtomicU32::new(0));
    replica(
        redis.fleet("checked").with_key(key),
        counting_source(&mints),
    )
    .ready()
    .await
    .unwrap();

    let address = redis.url.rsplit('@').next().unwrap().trim_end_matches('/');
    let closed = free_port();
    let cases = [
        (
            RedisFleet::new(
                redis::Client::open(format!("redis://127.0.0.1:{closed}/")).unwrap(),
                "checked",
            ),
            FleetErrorKind::Unreachable,
            format!("127.0.0.1:{closed}"),
        ),
        (
            RedisFleet::new(
                redis::Client::open(redis.url.replace("the-PASSWORD", "not-it")).unwrap(),
                "checked",
            ),
            FleetErrorKind::Authentication,
            address.to_owned(),
        ),
        (
            redis.fleet("checked").with_key([6u8; 32]),
            FleetErrorKind::KeyMismatch,
            address.to_owned(),
        ),
    ];
    for (fleet, kind, named) in cases {
        let started = std::time::Instant::now();
        let error = fleet
            .check()
            .await
            .expect_err("a wrong configuration fails");
        assert_eq!(error.kind(), kind, "{error}");
        let text = error.to_string();
        assert!(text.contains(&named), "names {named}: {text}");
        assert!(
            !text.contains("PASSWORD") && !text.contains("not-it"),
            "{text}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{kind}: answered at once, not after a stall ({:?})",
            started.elapsed()
        );
    }
}
