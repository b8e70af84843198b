//! [`RedisFleet`]: a [`FleetStore`] on Redis (or Valkey): one server, Sentinel or Cluster;
//! feature `redis`.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{Cmd, ErrorKind, RedisError, RedisFuture, Value};

use super::{FleetError, FleetErrorKind, FleetFuture, FleetStore};
use crate::Token;
use crate::store::{decode_record, encode_record};

/// Stores the token and releases the lease only if the caller still holds it: one atomic step.
/// `ARGV[3]` is how long to keep the record in milliseconds, `0` for until it is replaced.
const PUBLISH: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[3] == '0' then
    redis.call('SET', KEYS[2], ARGV[2])
  else
    redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  end
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Takes the lease if free, or renews it if the caller holds it.
const LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
";

/// Reads the lease's time to live: what [`RedisFleet::check`](FleetStore::check) runs to see
/// that scripts may run on the fleet's keys (ACLs, a cluster slot), changing nothing.
const PROBE: &str = "return redis.call('PTTL', KEYS[1])";

/// How long a publish through Sentinel waits for a replica to acknowledge it.
const REPLICA_ACK_MILLIS: u64 = 100;

/// The length of an XChaCha20-Poly1305 nonce, stored before the ciphertext.
const NONCE: usize = 24;

/// Bound on making a connection: a closed port or a wrong password is reported at once, not
/// after the caller's whole timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A fleet's token and minting lease in Redis.
///
/// Keys, for a fleet named `billing-api`: `tokenwarden:{billing-api}:token` (the token as a
/// JSON record) and `tokenwarden:{billing-api}:lease` (the minting lease, a few seconds). The
/// braces put both in one Redis Cluster slot, so the fleet's scripts run there.
///
/// A record that carries a refresh token is kept until it is replaced (or for
/// [`keep_refresh_token_for`](RedisFleet::keep_refresh_token_for)), not only as long as the
/// access token: a fleet stopped for longer than an access token's life continues its
/// refresh-token chain when it starts again. Other records expire with their token.
///
/// The record holds the access and refresh tokens. Seal it with a key every replica shares
/// ([`with_key`](RedisFleet::with_key), XChaCha20-Poly1305), so that someone who can read
/// Redis cannot use them; without a key it is plain JSON: then restrict who can read these
/// keys (Redis ACLs). Use `rediss://` across a network either way.
///
/// Three deployments: [`new`](RedisFleet::new) (one server, or a proxy),
/// [`sentinel`](RedisFleet::sentinel) (a primary found through Redis Sentinel, followed across
/// failovers) and [`cluster`](RedisFleet::cluster) (Redis Cluster). Valkey speaks the same
/// protocol; the tests run Redis (Debian's `redis-server` and `redis-sentinel`).
///
/// The connection is made on first use and re-made after failures; a Redis that is down at
/// start only delays coordination until it is back. Call [`check`](FleetStore::check) at
/// startup to fail a deploy with a wrong address, password or key at once.
///
/// ```no_run
/// use tokenwarden::fleet::{FleetStore, RedisFleet, redis};
/// use tokenwarden::{Refresher, sources::ClientCredentials};
///
/// # async fn run(source: ClientCredentials) -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://:password@127.0.0.1:6379/")?;
/// let fleet = RedisFleet::new(client, "billing-api");
/// fleet.check().await?; // a wrong URL, password or key fails the deploy here
/// let handle = Refresher::builder(source).shared(fleet).spawn();
/// # Ok(()) }
/// ```
pub struct RedisFleet {
    target: Target,
    connection: tokio::sync::Mutex<Option<Connection>>,
    /// The store for messages; for Sentinel, updated with the primary's address once found.
    described: Mutex<String>,
    token_key: String,
    lease_key: String,
    seal: Option<XChaCha20Poly1305>,
    keep_refresh_token: Option<Duration>,
}

/// Where the fleet's Redis is.
enum Target {
    Single(redis::Client),
    /// Behind a mutex: asking Sentinel for the primary takes `&mut`.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

/// A connection to the fleet's Redis, whichever its deployment.
#[derive(Clone)]
enum Connection {
    /// Reconnects by itself.
    Managed(ConnectionManager),
    /// To the primary Sentinel named; dropped on failure so the next call asks again.
    Primary(MultiplexedConnection),
    /// Follows the cluster's slots by itself.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Managed(c) => c.req_packed_command(cmd),
            Connection::Primary(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Primary(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Managed(c) => c.get_db(),
            Connection::Primary(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

impl RedisFleet {
    /// The fleet `name` (every replica sharing a credential uses the same name) on one Redis
    /// server (`client`).
    pub fn new(client: redis::Client, name: &str) -> RedisFleet {
        let described = format!("redis at {}", client.get_connection_info().addr());
        RedisFleet::on(Target::Single(client), described, name)
    }

    /// The fleet `name` on the primary that Redis Sentinel names for `client`'s service; after
    /// a failover, the new primary (a call that fails re-asks Sentinel).
    ///
    /// ```no_run
    /// use tokenwarden::fleet::RedisFleet;
    /// use tokenwarden::fleet::redis::sentinel::{SentinelClient, SentinelServerType};
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let sentinels = vec!["redis://10.0.0.1:26379/", "redis://10.0.0.2:26379/"];
    /// let client = SentinelClient::build(sentinels, "mymaster", None, SentinelServerType::Master)?;
    /// let fleet = RedisFleet::sentinel(client, "mymaster", "billing-api");
    /// # Ok(()) }
    /// ```
    pub fn sentinel(client: SentinelClient, service: &str, name: &str) -> RedisFleet {
        let described = format!("redis primary of `{service}` (through Sentinel)");
        RedisFleet::on(
            Target::Sentinel(tokio::sync::Mutex::new(client)),
            described,
            name,
        )
    }

    /// The fleet `name` on a Redis Cluster. Its two keys share one hash slot (the braces in
    /// their names), so its scripts run on the node that holds it.
    ///
    /// ```no_run
    /// use tokenwarden::fleet::RedisFleet;
    /// use tokenwarden::fleet::redis::cluster::ClusterClient;
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = ClusterClient::new(vec!["redis://10.0.0.1:7000/", "redis://10.0.0.2:7000/"])?;
    /// let fleet = RedisFleet::cluster(client, "billing-api");
    /// # Ok(()) }
    /// ```
    pub fn cluster(client: ClusterClient, name: &str) -> RedisFleet {
        RedisFleet::on(Target::Cluster(client), "redis cluster".to_owned(), name)
    }

    fn on(target: Target, described: String, name: &str) -> RedisFleet {
        RedisFleet {
            target,
            connection: tokio::sync::Mutex::new(None),
            described: Mutex::new(format!("{described} (fleet `{name}`)")),
            token_key: format!("tokenwarden:{{{name}}}:token"),
            lease_key: format!("tokenwarden:{{{name}}}:lease"),
            seal: None,
            keep_refresh_token: None,
        }
    }

    /// Seals the token record with this 32-byte key (XChaCha20-Poly1305, a random nonce per
    /// record, bound to the fleet's name). Every replica of the fleet needs the same key; a
    /// replica with another key cannot open the record: it says so loudly (an error-level log
    /// and a `FleetUnavailable` event of kind [`KeyMismatch`](FleetErrorKind::KeyMismatch))
    /// and never mints over the record; a source that spends nothing single-use fetches alone.
    pub fn with_key(mut self, key: [u8; 32]) -> RedisFleet {
        let key = zeroize::Zeroizing::new(key);
        self.seal = Some(XChaCha20Poly1305::new(Key::from_slice(&key[..])));
        self
    }

    /// How long a record that carries a refresh token is kept after it is published, when the
    /// refresh token's life is known (a server's refresh-token lifetime, or an idle timeout).
    /// Default: until it is replaced, so a fleet stopped for any length of time continues its
    /// chain. Never shorter than the access token's life.
    pub fn keep_refresh_token_for(mut self, keep: Duration) -> RedisFleet {
        self.keep_refresh_token = Some(keep);
        self
    }

    /// The record as stored: sealed (nonce, then ciphertext) when a key is set.
    fn sealed(&self, record: &[u8]) -> Result<Vec<u8>, FleetError> {
        let Some(cipher) = &self.seal else {
            return Ok(record.to_vec());
        };
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: record,
            aad: self.token_key.as_bytes(),
        };
        let mut out = nonce.to_vec();
        out.extend(cipher.encrypt(&nonce, payload).map_err(|_| {
            FleetError::with_kind(FleetErrorKind::Other, "sealing the fleet's token failed")
        })?);
        Ok(out)
    }

    /// The record from what is stored.
    fn opened(&self, stored: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, FleetError> {
        let Some(cipher) = &self.seal else {
            return Ok(zeroize::Zeroizing::new(stored.to_vec()));
        };
        let cannot = || {
            FleetError::with_kind(
                FleetErrorKind::KeyMismatch,
                format!(
                    "{}: the fleet's record {} cannot be opened with this replica's key \
                     (every replica needs the same key; or the record was tampered with)",
                    self.describe(),
                    self.token_key
                ),
            )
        };
        if stored.len() < NONCE {
            return Err(cannot());
        }
        let (nonce, ciphertext) = stored.split_at(NONCE);
        let payload = Payload {
            msg: ciphertext,
            aad: self.token_key.as_bytes(),
        };
        cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map(zeroize::Zeroizing::new)
            .map_err(|_| cannot())
    }

    /// A connection: the one made before, or a new one.
    async fn connection(&self) -> Result<Connection, FleetError> {
        let mut cached = self.connection.lock().await;
        if let Some(connection) = &*cached {
            return Ok(connection.clone());
        }
        let connection = match &self.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(1);
                Connection::Managed(
                    ConnectionManager::new_with_config(client.clone(), config)
                        .await
                        .map_err(|e| self.failed(e))?,
                )
            }
            Target::Sentinel(sentinel) => {
                let client = sentinel
                    .lock()
                    .await
                    .async_get_client()
                    .await
                    .map_err(|e| self.failed(e))?;
                let primary = client.get_connection_info().addr().to_string();
                let connection = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| self.failed(e))?;
                let mut described = self.described.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(start) = described.find(" (fleet") {
                    let fleet = described[start..].to_owned();
                    *described = format!("redis primary at {primary} (through Sentinel){fleet}");
                }
                Connection::Primary(connection)
            }
            Target::Cluster(client) => Connection::Cluster(
                client
                    .get_async_connection()
                    .await
                    .map_err(|e| self.failed(e))?,
            ),
        };
        *cached = Some(connection.clone());
        Ok(connection)
    }

    /// A command's error as a fleet error; a connection to a Sentinel-named primary that failed
    /// is dropped, so the next call asks Sentinel again (a failover moves the primary).
    async fn after_error(&self, error: RedisError) -> FleetError {
        if matches!(self.target, Target::Sentinel(_)) {
            *self.connection.lock().await = None;
        }
        self.failed(error)
    }

    /// A Redis error as a fleet error: the store's address and the cause (never a value).
    fn failed(&self, error: RedisError) -> FleetError {
        let code = error.code().unwrap_or_default().to_owned();
        let (kind, cause) = if error.kind() == ErrorKind::AuthenticationFailed
            || matches!(code.as_str(), "WRONGPASS" | "NOAUTH")
        {
            (
                FleetErrorKind::Authentication,
                "authentication failed (wrong user or password)".to_owned(),
            )
        } else if error.is_connection_refusal() {
            (FleetErrorKind::Unreachable, "connection refused".to_owned())
        } else if error.is_timeout() {
            (FleetErrorKind::Timeout, "did not answer in time".to_owned())
        } else if error.is_io_error() || error.is_connection_dropped() {
            (
                FleetErrorKind::Unreachable,
                format!("connection lost ({})", error.category()),
            )
        } else if code == "NOPERM" {
            (
                FleetErrorKind::Authentication,
                "the user may not run the fleet's commands on its keys (ACL)".to_owned(),
            )
        } else if !code.is_empty() {
            (
                FleetErrorKind::Script,
                format!("the server answered {code} to the fleet's script"),
            )
        } else {
            (
                FleetErrorKind::Other,
                format!("{:?}: {}", error.kind(), error.category()),
            )
        };
        FleetError::with_kind(kind, format!("{}: {cause}", self.describe()))
    }

    /// How long to keep `token`'s record, in milliseconds; 0 for until it is replaced.
    fn keep_millis(&self, token: &Token) -> u64 {
        let access = token
            .expiry()
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(3600));
        let keep = match (token.refresh_token(), self.keep_refresh_token) {
            (None, _) => access,
            (Some(_), None) => return 0,
            (Some(_), Some(keep)) => keep.max(access),
        };
        keep.as_millis().clamp(1, u128::from(u64::MAX)) as u64
    }
}

impl FleetStore for RedisFleet {
    fn load(&self) -> FleetFuture<'_, Option<Token>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let record: Option<Vec<u8>> = match redis::cmd("GET")
                .arg(&self.token_key)
                .query_async(&mut connection)
                .await
            {
                Ok(record) => record,
                Err(error) => return Err(self.after_error(error).await),
            };
            let Some(stored) = record.map(zeroize::Zeroizing::new) else {
                return Ok(None);
            };
            let record = self.opened(&stored)?;
            decode_record(&record).map(Some).map_err(|why| {
                FleetError::with_kind(
                    FleetErrorKind::Corrupt,
                    format!(
                        "{}: the fleet's record {} is corrupt ({why})",
                        self.describe(),
                        self.token_key
                    ),
                )
            })
        })
    }

    fn try_lease(&self, holder: &str, ttl: Duration) -> FleetFuture<'_, bool> {
        let holder = holder.to_owned();
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let taken: i64 = match redis::Script::new(LEASE)
                .key(&self.lease_key)
                .arg(holder)
                .arg(ttl.as_millis().max(1) as u64)
                .invoke_async(&mut connection)
                .await
            {
                Ok(taken) => taken,
                Err(error) => return Err(self.after_error(error).await),
            };
            Ok(taken == 1)
        })
    }

    fn publish(&self, holder: &str, token: &Token) -> FleetFuture<'_, bool> {
        let holder = holder.to_owned();
        let record = self.sealed(&encode_record(token));
        let keep = self.keep_millis(token);
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let stored: i64 = match redis::Script::new(PUBLISH)
                .key(&self.lease_key)
                .key(&self.token_key)
                .arg(holder)
                .arg(record?)
                .arg(keep)
                .invoke_async(&mut connection)
                .await
            {
                Ok(stored) => stored,
                Err(error) => return Err(self.after_error(error).await),
            };
            if stored == 1 && matches!(self.target, Target::Sentinel(_)) {
                // Replication is asynchronous: a failover right after this publish could lose
                // it. Waiting (briefly) for one replica to have it narrows that window; a
                // primary without replicas answers at once.
                let acknowledged: Result<i64, _> = redis::cmd("WAIT")
                    .arg(1)
                    .arg(REPLICA_ACK_MILLIS)
                    .query_async(&mut connection)
                    .await;
                if !acknowledged.is_ok_and(|replicas| replicas >= 1) {
                    tracing::debug!("no replica acknowledged the fleet's new token in time");
                }
            }
            Ok(stored == 1)
        })
    }

    fn describe(&self) -> String {
        self.described
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Connects, runs a script on the fleet's keys (ACLs, a cluster's slot) and opens the
    /// fleet's record, if there is one, with this replica's key. Changes nothing.
    fn check(&self) -> FleetFuture<'_, ()> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let probe: Result<i64, _> = redis::Script::new(PROBE)
                .key(&self.lease_key)
                .invoke_async(&mut connection)
                .await;
            if let Err(error) = probe {
                return Err(self.after_error(error).await);
            }
            self.load().await.map(drop)
        })
    }
}

impl fmt::Debug for RedisFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFleet")
            .field("store", &self.describe())
            .field("token_key", &self.token_key)
            .field("sealed", &self.seal.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> RedisFleet {
        RedisFleet::new(
            redis::Client::open("redis://user:hunter2@127.0.0.1:6390/").unwrap(),
            "billing",
        )
    }

    #[test]
    fn the_store_is_named_by_address_never_by_password() {
        let fleet = fleet();
        assert_eq!(
            fleet.describe(),
            "redis at 127.0.0.1:6390 (fleet `billing`)"
        );
        assert!(!format!("{fleet:?}").contains("hunter2"));
    }

    #[test]
    fn a_refresh_token_is_kept_until_replaced_or_as_configured() {
        let fleet = fleet();
        let access = Token::new("a").expires_in(Duration::from_secs(60));
        let keep = fleet.keep_millis(&access);
        assert!((59_000..=60_000).contains(&keep), "{keep}");
        let chained = access.with_refresh_token("rt");
        assert_eq!(fleet.keep_millis(&chained), 0, "until replaced");
        let fleet = fleet.keep_refresh_token_for(Duration::from_secs(86_400));
        assert_eq!(fleet.keep_millis(&chained), 86_400_000);
        let fleet = fleet.keep_refresh_token_for(Duration::from_secs(1));
        assert!(
            fleet.keep_millis(&chained) >= 59_000,
            "never shorter than the access token"
        );
    }
}
