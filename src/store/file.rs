//! [`FileStore`]: a token in a JSON file, written atomically and readable by its owner only.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use zeroize::{Zeroize, Zeroizing};

use super::{StoreError, StoreFuture, TokenStore};
use crate::Token;

/// Keeps the token in a JSON file.
///
/// Writes are atomic: a temporary file in the same directory, flushed to disk, then renamed
/// over the old one, so a crash leaves either the old token or the new one, never half of
/// either. Temporary files a crashed process left behind (each a whole token file) are removed
/// at the next load or save. The file is created with mode 0600 (owner only) and missing parent
/// directories with 0700; loading a file that others can read logs a warning. If the path is a
/// symbolic link, the file it points to is replaced, and the link kept.
///
/// A missing file means "no token yet"; a corrupt one (truncated, not JSON, fields of the wrong
/// type), a directory or an unreadable file is an error that names the file and leaves it in
/// place for inspection; the refresher then fetches anew, and only a successful fetch replaces
/// the file, so a refresh token is never overwritten with nothing.
///
/// ```no_run
/// # #[cfg(feature = "http-sources")]
/// # mod example {
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::RefreshTokenGrant;
/// use tokenwarden::store::FileStore;
///
/// # fn run(source: RefreshTokenGrant) {
/// let handle = Refresher::builder(source)
///     .store(FileStore::new("/var/lib/myapp/token.json"))
///     .spawn();
/// # }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileStore {
        FileStore { path: path.into() }
    }

    /// Where the token is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The file's format. `format` lets a later version read older files.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: u32,
    access_token: String,
    token_type: String,
    /// Unix seconds.
    issued_at: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    extra: Map<String, Value>,
    /// The DPoP key (PKCS#8 PEM) the token and its refresh token are bound to: without it the
    /// refresh token is useless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop_key: Option<String>,
}

/// The plain copies of the secrets are wiped when the record is dropped.
impl Drop for Stored {
    fn drop(&mut self) {
        self.access_token.zeroize();
        if let Some(refresh_token) = &mut self.refresh_token {
            refresh_token.zeroize();
        }
        if let Some(key) = &mut self.dpop_key {
            key.zeroize();
        }
    }
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn from_unix(secs: f64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
}

impl Stored {
    fn from_token(token: &Token) -> Stored {
        use secrecy::ExposeSecret;
        Stored {
            format: 1,
            access_token: token.expose_secret().to_owned(),
            token_type: token.token_type().to_owned(),
            issued_at: unix(token.issued_at()),
            expires_at: token.expiry().map(unix),
            scope: token.scope().map(str::to_owned),
            refresh_token: token.refresh_token().map(|t| t.expose_secret().to_owned()),
            extra: token.extra().clone(),
            #[cfg(feature = "dpop")]
            dpop_key: token.dpop_key().map(|key| key.to_pkcs8_pem()),
            #[cfg(not(feature = "dpop"))]
            dpop_key: None,
        }
    }

    fn into_token(mut self) -> Result<Token, &'static str> {
        const TIME: &str = "a time is out of range";
        use std::mem::take;
        let mut token =
            Token::new(take(&mut self.access_token)).with_token_type(take(&mut self.token_type));
        if let Some(expires_at) = self.expires_at {
            token = token.expires_at(from_unix(expires_at).ok_or(TIME)?);
        }
        if let Some(scope) = self.scope.take() {
            token = token.with_scope(scope);
        }
        if let Some(refresh_token) = self.refresh_token.take() {
            token = token.with_refresh_token(refresh_token);
        }
        // Without feature `dpop` the key cannot sign: the token is loaded unbound, and a
        // server that wants proofs refuses it (the refresher then fetches anew).
        #[cfg(feature = "dpop")]
        if let Some(pem) = &self.dpop_key {
            let key = crate::dpop::DpopKey::from_pkcs8_pem(pem);
            token = token.with_dpop_key(key.map_err(|_| "the DPoP key is not a P-256 PKCS#8 key")?);
        }
        Ok(token
            .with_extra(take(&mut self.extra))
            .anchored_at(from_unix(self.issued_at).ok_or(TIME)?))
    }
}

/// A token as the store's JSON record: what `FileStore` writes, and what a fleet shares. The
/// buffer is wiped when dropped.
pub(crate) fn encode_record(token: &Token) -> Zeroizing<Vec<u8>> {
    // Serialising plain strings and numbers cannot fail.
    Zeroizing::new(serde_json::to_vec_pretty(&Stored::from_token(token)).unwrap_or_default())
}

/// A record back into a token, or why not (never quoting a value from it).
pub(crate) fn decode_record(bytes: &[u8]) -> Result<Token, String> {
    let stored: Stored =
        serde_json::from_slice(bytes).map_err(|e| without_values(&e.to_string()))?;
    if stored.format != 1 {
        return Err(format!("unknown format {}", stored.format));
    }
    stored.into_token().map_err(str::to_owned)
}

impl FileStore {
    fn load_now(&self) -> Result<Option<Token>, StoreError> {
        let path = self.path.display();
        if let Ok(target) = self.target() {
            remove_stale_temporaries(&target);
        }
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::new(format!("token store {path}: {e}"))),
        };
        warn_if_others_can_read(&self.path);
        decode_record(&bytes).map(Some).map_err(|why| {
            StoreError::new(format!(
                "token store {path} is corrupt ({why}); it was left in place"
            ))
        })
    }

    /// The file to replace: the path itself, or where a symbolic link at the path points.
    fn target(&self) -> std::io::Result<PathBuf> {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = fs::read_link(&self.path)?;
                Ok(match self.path.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                })
            }
            _ => Ok(self.path.clone()),
        }
    }

    fn save_now(&self, record: &[u8]) -> Result<(), StoreError> {
        let path = self.path.display();
        let failed = |what: &str, e: std::io::Error| {
            StoreError::new(format!("token store {path}: {what}: {e}"))
        };
        let target = self
            .target()
            .map_err(|e| failed("following its symbolic link", e))?;
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|e| failed("creating its directory", e))?;
        remove_stale_temporaries(&target);
        let name = target
            .file_name()
            .ok_or_else(|| StoreError::new(format!("token store {path}: not a file path")))?;
        let temporary = dir.join(format!(
            ".{}.{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            fastrand::u64(..)
        ));

        let write = || -> std::io::Result<()> {
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary)?;
            file.write_all(record)?;
            file.sync_all()?;
            fs::rename(&temporary, &target)?;
            // Make the rename itself durable.
            #[cfg(unix)]
            fs::File::open(&dir)?.sync_all()?;
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temporary);
            failed("writing", e)
        })
    }
}

/// The name prefix of `target`'s temporary files: `.<name>.<pid>-<random>.tmp`.
fn temporary_prefix(target: &Path) -> Option<String> {
    Some(format!(".{}.", target.file_name()?.to_string_lossy()))
}

/// Removes temporary files of `target` that no running writer owns: a process killed
/// mid-save leaves one behind, a whole token file with every secret in it. A file is stale when
/// its process is gone (Linux) or, elsewhere, when it is over ten minutes old.
fn remove_stale_temporaries(target: &Path) {
    let (Some(dir), Some(prefix)) = (target.parent(), temporary_prefix(target)) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(rest) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
        else {
            continue;
        };
        let pid = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| writer_is_gone(pid, &entry.path())) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::debug!(file = %entry.path().display(), "removed a temporary token file left by a crashed writer")
                }
                Err(error) => {
                    tracing::warn!(file = %entry.path().display(), %error, "could not remove a temporary token file left by a crashed writer")
                }
            }
        }
    }
}

fn writer_is_gone(pid: u32, file: &Path) -> bool {
    if pid == std::process::id() {
        return false; // ours, possibly being written right now
    }
    if cfg!(target_os = "linux") {
        return !Path::new("/proc").join(pid.to_string()).exists();
    }
    fs::metadata(file)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|at| at.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(600))
}

/// Warns when others than the owner may read the store file: it holds secrets.
fn warn_if_others_can_read(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "the token store file is readable by others than its owner; it holds secrets (chmod 600)"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// A serde message without the values it quotes (a wrongly typed field may hold a secret):
/// `invalid type: string "…", expected u32 at line 1 column 20`.
fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        match (c, quoted) {
            ('"', false) => {
                out.push_str("\"…");
                quoted = true;
            }
            ('"', true) => {
                out.push('"');
                quoted = false;
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

impl TokenStore for FileStore {
    fn load(&self) -> StoreFuture<'_, Option<Token>> {
        let store = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || store.load_now())
                .await
                .map_err(|e| StoreError::new(format!("token store: {e}")))?
        })
    }

    fn save(&self, token: &Token) -> StoreFuture<'_, ()> {
        let store = self.clone();
        let record = encode_record(token);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || store.save_now(&record))
                .await
                .map_err(|e| StoreError::new(format!("token store: {e}")))?
        })
    }
}

#[cfg(all(test, feature = "dpop"))]
mod tests {
    use super::*;

    /// The record `FileStore` writes and the fleet seals: a DPoP-bound token keeps its key.
    #[test]
    fn a_record_keeps_the_dpop_key_its_refresh_token_is_bound_to() {
        let key = crate::dpop::DpopKey::generate().unwrap();
        let token = Token::new("at")
            .with_token_type("DPoP")
            .with_refresh_token("rt")
            .with_dpop_key(key.clone());
        let record = encode_record(&token);
        let back = decode_record(&record).unwrap();
        assert_eq!(back.dpop_key(), Some(&key));
        assert_eq!(back.token_type(), "DPoP");

        let text = String::from_utf8(record.to_vec()).unwrap();
        // In the JSON, the PEM's line breaks are `\n` escapes.
        let broken = text.replace(r"BEGIN PRIVATE KEY-----\n", r"BEGIN PRIVATE KEY-----\nAA");
        assert_ne!(broken, text);
        let why = decode_record(broken.as_bytes()).unwrap_err();
        assert!(why.contains("DPoP key"), "{why}");
    }
}
