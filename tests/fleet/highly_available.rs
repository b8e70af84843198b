//! The fleet on highly available Redis: a Sentinel-watched primary that fails over mid-run,
//! and a Redis Cluster. Both started for real on loopback (Debian's `redis-server`,
//! `redis-sentinel`, `redis-cli`), with a real rotating grant (oidc-provider).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokenwarden::fleet::FleetStore;

use crate::faults::Fleet;
use crate::redis_servers::{Cluster, Sentinels};

/// Twenty rotations of a rotating grant through three replicas on Sentinel; after the
/// eighth, the primary is killed and Sentinel promotes the replica. The replicas follow the
/// new primary, never present a spent refresh token, and never run out of their 10 s tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_during_twenty_rotations_loses_nothing() {
    let Some(mut sentinels) = Sentinels::start() else {
        return;
    };
    let Some(server) = crate::oidc::start(10) else {
        return;
    };
    sentinels
        .fleet("ha")
        .check()
        .await
        .expect("the check passes");
    let calls = Arc::new(AtomicU32::new(0));
    let mut fleet = Fleet::of_grant(&server, &calls, (0..3).map(|_| sentinels.fleet("ha"))).await;
    fleet.read_continuously();
    for round in 0..20 {
        if round == 8 {
            // Let the last write reach the replica, then fail over.
            tokio::time::sleep(Duration::from_millis(300)).await;
            sentinels.primary.kill();
            let port = sentinels.replica.port();
            tokio::task::spawn_blocking({
                let urls = sentinels.sentinel_urls.clone();
                move || wait_for_promotion(&urls, &port)
            })
            .await
            .unwrap();
        }
        fleet.rotate(round % 3, Duration::from_secs(15)).await;
    }
    let (misses, reads) = fleet.stop_reading();
    assert_eq!(misses, 0, "{misses} of {reads} reads found no token");
    fleet.assert_grant_alive().await;
    assert!(
        calls.load(Ordering::SeqCst) >= 21,
        "the rotations went to the endpoint"
    );
    fleet.shutdown();
}

/// Waits (bounded: 20 s) until the Sentinels name the primary on `port`.
fn wait_for_promotion(urls: &[String], port: &str) {
    use tokenwarden::fleet::redis;
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < until {
        let named = urls.iter().any(|url| {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .and_then(|mut c| {
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(crate::redis_servers::SENTINEL_SERVICE)
                        .query::<Vec<String>>(&mut c)
                })
                .is_ok_and(|addr| addr.get(1).is_some_and(|p| p == port))
        });
        if named {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("Sentinel did not promote the replica within 20 s");
}

/// A rotating grant through three replicas on a three-node Redis Cluster: the fleet's keys
/// share one slot (hash tag), its scripts run there, the chain holds over ten rotations and
/// no read finds no token.
/// Two fleets whose names hash to different nodes both work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_runs_on_a_redis_cluster() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let Some(server) = crate::oidc::start(10) else {
        return;
    };
    // Two fleet names on different nodes.
    let first = "cluster-a";
    let node = cluster.node_of(&format!("tokenwarden:{{{first}}}:token"));
    let second = (0..100)
        .map(|i| format!("cluster-{i}"))
        .find(|name| cluster.node_of(&format!("tokenwarden:{{{name}}}:token")) != node)
        .expect("a name on another node");
    for name in [first, second.as_str()] {
        cluster
            .fleet(name)
            .check()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }

    let calls = Arc::new(AtomicU32::new(0));
    let mut fleet = Fleet::of_grant(&server, &calls, (0..3).map(|_| cluster.fleet(first))).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one mint for the fleet");
    fleet.read_continuously();
    for round in 0..10 {
        fleet.rotate(round % 3, Duration::from_secs(10)).await;
    }
    let (misses, reads) = fleet.stop_reading();
    assert_eq!(misses, 0, "{misses} of {reads} reads found no token");
    let calls = calls.load(Ordering::SeqCst);
    assert!(
        calls >= 11,
        "{calls}: a mint per rotation (scheduled refreshes add some)"
    );
    fleet.assert_grant_alive().await;
    fleet.shutdown();

    let mints = Arc::new(AtomicU32::new(0));
    let replicas: Vec<_> = (0..3)
        .map(|_| crate::replica(cluster.fleet(&second), crate::counting_source(&mints)))
        .collect();
    for handle in &replicas {
        handle.ready().await.unwrap();
    }
    assert_eq!(mints.load(Ordering::SeqCst), 1, "{second}: one mint");
}
