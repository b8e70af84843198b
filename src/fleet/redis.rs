//! [`RedisFleet`]: a [`FleetStore`] on Redis (or Valkey), feature `redis`.

use std::fmt;
use std::time::{Duration, SystemTime};

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
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

/// The length of an XChaCha20-Poly1305 nonce, stored before the ciphertext.
const NONCE: usize = 24;

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

/// A fleet's token and minting lease in Redis.
///
/// Keys, for a fleet named `billing-api`: `tokenwarden:{billing-api}:token` (the token as a
/// JSON record, expiring with it) and `tokenwarden:{billing-api}:lease` (the minting lease,
/// expiring after the fetch bound). The braces keep both in one Redis Cluster slot.
///
/// The record holds the access and refresh tokens. Seal it with a key every replica shares
/// ([`with_key`](RedisFleet::with_key), XChaCha20-Poly1305), so that someone who can read
/// Redis cannot use them; without a key it is plain JSON: then restrict who can read these
/// keys (Redis ACLs). Use `rediss://` across a network either way.
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
    seal: Option<XChaCha20Poly1305>,
}

impl RedisFleet {
    /// The fleet `name` (every replica sharing a credential uses the same name) on `client`.
    pub fn new(client: redis::Client, name: &str) -> RedisFleet {
        RedisFleet {
            client,
            connection: OnceCell::new(),
            token_key: format!("tokenwarden:{{{name}}}:token"),
            lease_key: format!("tokenwarden:{{{name}}}:lease"),
            seal: None,
        }
    }

    /// Seals the token record with this 32-byte key (XChaCha20-Poly1305, a random nonce per
    /// record, bound to the fleet's name). Every replica of the fleet needs the same key; a
    /// replica with another key cannot open the record and fetches on its own (with a
    /// `FleetUnavailable` event saying why).
    pub fn with_key(mut self, key: [u8; 32]) -> RedisFleet {
        let key = zeroize::Zeroizing::new(key);
        self.seal = Some(XChaCha20Poly1305::new(Key::from_slice(&key[..])));
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
        out.extend(
            cipher
                .encrypt(&nonce, payload)
                .map_err(|_| FleetError::new("sealing the fleet's token failed"))?,
        );
        Ok(out)
    }

    /// The record from what is stored.
    fn opened(&self, stored: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, FleetError> {
        let Some(cipher) = &self.seal else {
            return Ok(zeroize::Zeroizing::new(stored.to_vec()));
        };
        let cannot = || {
            FleetError::new(
                "the fleet's token cannot be opened with this key (another key, or tampered with)",
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
            let Some(stored) = record.map(zeroize::Zeroizing::new) else {
                return Ok(None);
            };
            let record = self.opened(&stored)?;
            decode_record(&record)
                .map(Some)
                .map_err(|why| FleetError::new(format!("the fleet's token is corrupt ({why})")))
        })
    }

    fn try_lease(&self, holder: &str, ttl: Duration) -> FleetFuture<'_, bool> {
        let holder = holder.to_owned();
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let taken: i64 = redis::Script::new(LEASE)
                .key(&self.lease_key)
                .arg(holder)
                .arg(ttl.as_millis().max(1) as u64)
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(taken == 1)
        })
    }

    fn publish(&self, holder: &str, token: &Token) -> FleetFuture<'_, bool> {
        let holder = holder.to_owned();
        let record = self.sealed(&encode_record(token));
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
                .arg(record?)
                .arg(keep)
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(stored == 1)
        })
    }
}

impl fmt::Debug for RedisFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFleet")
            .field("token_key", &self.token_key)
            .field("sealed", &self.seal.is_some())
            .finish_non_exhaustive()
    }
}
