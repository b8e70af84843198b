//! Real Redis deployments on loopback for the fleet tests: one server, a Sentinel-watched
//! primary with a replica, and a three-node Cluster, from Debian's `redis-server` and
//! `redis-sentinel` (`.ci/test` installs them). Each is started in a temporary directory on free
//! ports and stopped by its process ids when dropped.

#![allow(dead_code)] // each test target uses a part

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokenwarden::fleet::RedisFleet;
use tokenwarden::fleet::redis;

use super::required::server_missing;

pub struct RedisServer {
    pub child: Child,
    pub url: String,
    /// How it was started, to start it again on the same port.
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `program` can be run; when not, [`server_missing`] decides (fail, or skip).
fn installed(program: &str) -> bool {
    let found = Command::new(program).arg("--version").output().is_ok();
    if !found {
        server_missing(
            program,
            "Debian: apt-get install redis-server redis-sentinel",
        );
    }
    found
}

/// Starts `redis-server` on loopback, saving nothing, with `args`, in `dir`.
fn launch(args: &[String], dir: &Path) -> Child {
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
}

/// Waits (bounded: 10 s) until the server answers `client`.
fn wait_until_ready(client: &redis::Client) {
    for _ in 0..200 {
        if let Ok(mut connection) = client.get_connection()
            && redis::cmd("PING").query::<String>(&mut connection).is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server did not answer PING within 10 s");
}

impl RedisServer {
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[], "")
    }

    /// With extra server arguments, and `credentials` (`user:password@`) in the URL.
    pub fn start_with(extra: &[&str], credentials: &str) -> Option<RedisServer> {
        if !installed("redis-server") {
            return None;
        }
        let port = free_port();
        let mut args = vec!["--port".to_owned(), port.to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let url = format!("redis://{credentials}127.0.0.1:{port}/");
        let client = redis::Client::open(url.as_str()).unwrap();
        Some(RedisServer::run(args, url, &client))
    }

    /// A TLS-only server: `extra` configures TLS, `port` is its TLS port, `ca` the CA file.
    pub fn start_tls(extra: &[&str], port: &str, ca: &str) -> Option<RedisServer> {
        if !installed("redis-server") {
            return None;
        }
        let args = extra.iter().map(|a| a.to_string()).collect();
        let url = format!("rediss://127.0.0.1:{port}/");
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(ca).unwrap()),
        };
        let client = redis::Client::build_with_tls(url.as_str(), certificates).unwrap();
        Some(RedisServer::run(args, url, &client))
    }

    fn run(args: Vec<String>, url: String, client: &redis::Client) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let child = launch(&args, dir.path());
        let server = RedisServer {
            child,
            url,
            args,
            dir,
        };
        wait_until_ready(client);
        server
    }

    /// Starts a fresh, empty server on the same port (after the old one was killed).
    pub fn restart(&mut self) {
        self.child = launch(&self.args, self.dir.path());
        wait_until_ready(&redis::Client::open(self.url.as_str()).unwrap());
    }

    /// Kills the server (SIGKILL, by its process id).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The port it listens on.
    pub fn port(&self) -> String {
        let port = self.url.rsplit(':').next().unwrap_or_default();
        port.trim_end_matches('/').to_owned()
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url.as_str()).unwrap()
    }

    pub fn fleet(&self, name: &str) -> RedisFleet {
        RedisFleet::new(self.client(), name)
    }
}

/// Sends `signal` (`-STOP`, `-CONT`, ...) to `child`.
pub fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A primary, a replica of it, and three Sentinels watching them (quorum 2, a primary is down
/// after 500 ms), as a service named `tokenwarden`.
pub struct Sentinels {
    pub primary: RedisServer,
    pub replica: RedisServer,
    sentinels: Vec<Child>,
    pub sentinel_urls: Vec<String>,
    _dir: tempfile::TempDir,
}

pub const SENTINEL_SERVICE: &str = "tokenwarden";

impl Drop for Sentinels {
    fn drop(&mut self) {
        for child in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Sentinels {
    pub fn start() -> Option<Sentinels> {
        if !installed("redis-server") || !installed("redis-sentinel") {
            return None;
        }
        let primary = RedisServer::start()?;
        let primary_port = primary.port();
        let primary_port = primary_port.as_str();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", primary_port], "")?;
        let dir = tempfile::tempdir().unwrap();
        let mut sentinels = Vec::new();
        let mut sentinel_urls = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let config = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                     sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_SERVICE} 500\n\
                     sentinel failover-timeout {SENTINEL_SERVICE} 2000\n\
                     sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
                    dir = dir.path().display()
                ),
            )
            .unwrap();
            sentinels.push(
                Command::new("redis-sentinel")
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-sentinel starts"),
            );
            sentinel_urls.push(format!("redis://127.0.0.1:{port}/"));
        }
        let this = Sentinels {
            primary,
            replica,
            sentinels,
            sentinel_urls,
            _dir: dir,
        };
        this.wait_for_primary_at(primary_port);
        Some(this)
    }

    /// Waits (bounded: 20 s) until every Sentinel names the primary on `port` and knows the
    /// replica and the other Sentinels.
    pub fn wait_for_primary_at(&self, port: &str) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            let agreed = self.sentinel_urls.iter().all(|url| {
                let Ok(mut connection) =
                    redis::Client::open(url.as_str()).and_then(|client| client.get_connection())
                else {
                    return false;
                };
                let named: Result<Vec<String>, _> = redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(SENTINEL_SERVICE)
                    .query(&mut connection);
                let replicas: Result<Vec<redis::Value>, _> = redis::cmd("SENTINEL")
                    .arg("replicas")
                    .arg(SENTINEL_SERVICE)
                    .query(&mut connection);
                let others: Result<Vec<redis::Value>, _> = redis::cmd("SENTINEL")
                    .arg("sentinels")
                    .arg(SENTINEL_SERVICE)
                    .query(&mut connection);
                named.is_ok_and(|addr| addr.get(1).is_some_and(|p| p == port))
                    && replicas.is_ok_and(|r| !r.is_empty())
                    && others.is_ok_and(|o| o.len() >= 2)
            });
            if agreed {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the Sentinels did not agree on the primary at port {port} within 20 s");
    }

    pub fn fleet(&self, name: &str) -> RedisFleet {
        use redis::sentinel::{SentinelClient, SentinelServerType};
        let client = SentinelClient::build(
            self.sentinel_urls.clone(),
            SENTINEL_SERVICE,
            None,
            SentinelServerType::Master,
        )
        .unwrap();
        RedisFleet::sentinel(client, SENTINEL_SERVICE, name)
    }
}

/// A Redis Cluster of three primaries (no replicas), each slot served.
pub struct Cluster {
    nodes: Vec<Child>,
    pub urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free port whose cluster bus port (10,000 above it) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl Cluster {
    pub fn start() -> Option<Cluster> {
        if !installed("redis-server") || !installed("redis-cli") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_cluster_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                let node_dir = dir.path().join(port.to_string());
                std::fs::create_dir(&node_dir).unwrap();
                let args: Vec<String> = [
                    "--port",
                    &port.to_string(),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ]
                .iter()
                .map(|a| a.to_string())
                .collect();
                launch(&args, &node_dir)
            })
            .collect();
        let urls: Vec<String> = ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}/"))
            .collect();
        let cluster = Cluster {
            nodes,
            urls,
            _dir: dir,
        };
        for url in &cluster.urls {
            wait_until_ready(&redis::Client::open(url.as_str()).unwrap());
        }
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(ports.iter().map(|port| format!("127.0.0.1:{port}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_until_ok();
        Some(cluster)
    }

    /// Waits (bounded: 20 s) until every node says `cluster_state:ok`.
    fn wait_until_ok(&self) {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            let ok = self.urls.iter().all(|url| {
                redis::Client::open(url.as_str())
                    .and_then(|client| client.get_connection())
                    .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the cluster did not reach cluster_state:ok within 20 s");
    }

    pub fn fleet(&self, name: &str) -> RedisFleet {
        let client = redis::cluster::ClusterClient::new(self.urls.clone()).unwrap();
        RedisFleet::cluster(client, name)
    }

    /// The node (its URL) that holds `key`'s slot.
    pub fn node_of(&self, key: &str) -> String {
        let mut connection = redis::Client::open(self.urls[0].as_str())
            .unwrap()
            .get_connection()
            .unwrap();
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut connection)
            .unwrap();
        let slots: Vec<(u16, u16, (String, u16))> = {
            let raw: redis::Value = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query(&mut connection)
                .unwrap();
            let redis::Value::Array(ranges) = raw else {
                panic!("CLUSTER SLOTS: {raw:?}")
            };
            ranges
                .into_iter()
                .map(|range| {
                    let redis::Value::Array(parts) = range else {
                        panic!()
                    };
                    let start: u16 = redis::from_redis_value(parts[0].clone()).unwrap();
                    let end: u16 = redis::from_redis_value(parts[1].clone()).unwrap();
                    let redis::Value::Array(node) = parts[2].clone() else {
                        panic!()
                    };
                    let host: String = redis::from_redis_value(node[0].clone()).unwrap();
                    let port: u16 = redis::from_redis_value(node[1].clone()).unwrap();
                    (start, end, (host, port))
                })
                .collect()
        };
        let (_, _, (host, port)) = slots
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .expect("every slot is served");
        format!("redis://{host}:{port}/")
    }
}
