//! [`RedisFleet`]: a [`FleetStore`] on Redis (or Valkey), feature `redis`.

use std::fmt;
use std::time::{Duration, SystemTime};

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use super::{FleetError, FleetFuture, FleetStore};
use crate::Token;
use crate::store::{decode_record, encode_record};

/// Stores the token and releases the lease only if the caller still holds it: one atomic step.
const PUBLISH: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Releases the lease only if the caller holds it.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
";

/// A fleet's token and minting lease in Redis.
///
/// Keys, for a fleet named `billing-api`: `tokenwarden:{billing-api}:token` (the token as a
/// JSON record, expiring with it) and `tokenwarden:{billing-api}:lease` (the minting lease,
/// expiring after the fetch bound). The braces keep both in one Redis Cluster slot. The record
/// holds the access token and refresh token in plain text: restrict who can read these keys
/// (Redis ACLs), and use `rediss://` across a network.
///
/// The connection is made on first use and re-made after failures; a Redis that is down at
/// start only makes replicas fetch on their own until it is back.
///
/// ```no_run
/// use tokenwarden::fleet::RedisFleet;
/// use tokenwarden::{Refresher, sources::ClientCredentials};
///
/// # fn run(source: ClientCredentials) -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://:password@127.0.0.1:6379/")?;
/// let handle = Refresher::builder(source)
///     .shared(RedisFleet::new(client, "billing-api"))
///     .spawn();
/// # Ok(()) }
/// ```
pub struct RedisFleet {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    token_key: String,
    lease_key: String,
}

impl RedisFleet {
    /// The fleet `name` (every replica sharing a credential uses the same name) on `client`.
    pub fn new(client: redis::Client, name: &str) -> RedisFleet {
        RedisFleet {
            client,
            connection: OnceCell::new(),
            token_key: format!("tokenwarden:{{{name}}}:token"),
            lease_key: format!("tokenwarden:{{{name}}}:lease"),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, FleetError> {
        self.connection
            .get_or_try_init(|| ConnectionManager::new(self.client.clone()))
            .await
            .cloned()
            .map_err(failed)
    }
}

/// A Redis error as a fleet error: its kind and category only (never a value).
fn failed(error: redis::RedisError) -> FleetError {
    FleetError::new(format!("redis: {:?}: {}", error.kind(), error.category()))
}

impl FleetStore for RedisFleet {
    fn load(&self) -> FleetFuture<'_, Option<Token>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let record: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&self.token_key)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            let record = record.map(zeroize::Zeroizing::new);
            match record {
                None => Ok(None),
                Some(record) => decode_record(&record).map(Some).map_err(|why| {
                    FleetError::new(format!("the fleet's token is corrupt ({why})"))
                }),
            }
        })
    }

    fn try_lease(&self, holder: &str, ttl: Duration) -> FleetFuture<'_, bool> {
        let holder = holder.to_owned();
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let taken: Option<String> = redis::cmd("SET")
                .arg(&self.lease_key)
                .arg(holder)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(taken.is_some())
        })
    }

    fn publish(&self, holder: &str, token: &Token) -> FleetFuture<'_, bool> {
        let holder = holder.to_owned();
        let record = encode_record(token);
        // Kept as long as the token lives (an hour when it states no expiry).
        let keep = token
            .expiry()
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(3600))
            .as_millis()
            .max(1) as u64;
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let stored: i64 = redis::Script::new(PUBLISH)
                .key(&self.lease_key)
                .key(&self.token_key)
                .arg(holder)
                .arg(&record[..])
                .arg(keep)
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(stored == 1)
        })
    }

    fn release(&self, holder: &str) -> FleetFuture<'_, ()> {
        let holder = holder.to_owned();
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let _: i64 = redis::Script::new(RELEASE)
                .key(&self.lease_key)
                .arg(holder)
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(())
        })
    }
}

impl fmt::Debug for RedisFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFleet")
            .field("token_key", &self.token_key)
            .finish_non_exhaustive()
    }
}
