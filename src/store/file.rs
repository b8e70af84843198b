//! [`FileStore`]: a token in a JSON file, written atomically and readable by its owner only.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{StoreError, StoreFuture, TokenStore};
use crate::Token;

/// Keeps the token in a JSON file.
///
/// Writes are atomic: a temporary file in the same directory, flushed to disk, then renamed
/// over the old one, so a crash leaves either the old token or the new one, never half of
/// either. The file is created with mode 0600 (owner only) and missing parent directories are
/// created. A missing file means "no token yet"; a corrupt one is an error that leaves the file
/// in place for inspection (the next successful fetch replaces it).
///
/// ```no_run
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::RefreshTokenGrant;
/// use tokenwarden::store::FileStore;
///
/// # fn run(source: RefreshTokenGrant) {
/// let handle = Refresher::builder(source)
///     .store(FileStore::new("/var/lib/myapp/token.json"))
///     .spawn();
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
        }
    }

    fn into_token(self) -> Option<Token> {
        let mut token = Token::new(self.access_token).with_token_type(self.token_type);
        if let Some(expires_at) = self.expires_at {
            token = token.expires_at(from_unix(expires_at)?);
        }
        if let Some(scope) = self.scope {
            token = token.with_scope(scope);
        }
        if let Some(refresh_token) = self.refresh_token {
            token = token.with_refresh_token(refresh_token);
        }
        Some(
            token
                .with_extra(self.extra)
                .anchored_at(from_unix(self.issued_at)?),
        )
    }
}

impl FileStore {
    fn load_now(&self) -> Result<Option<Token>, StoreError> {
        let path = self.path.display();
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::new(format!("token store {path}: {e}"))),
        };
        let corrupt = |why: String| {
            StoreError::new(format!(
                "token store {path} is corrupt ({why}); it was left in place"
            ))
        };
        let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if stored.format != 1 {
            return Err(corrupt(format!("unknown format {}", stored.format)));
        }
        stored
            .into_token()
            .map(Some)
            .ok_or_else(|| corrupt("a time is out of range".into()))
    }

    fn save_now(&self, stored: &Stored) -> Result<(), StoreError> {
        let path = self.path.display();
        let failed = |what: &str, e: std::io::Error| {
            StoreError::new(format!("token store {path}: {what}: {e}"))
        };
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| failed("creating its directory", e))?;
        let name = self
            .path
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
            let json = serde_json::to_vec_pretty(stored).map_err(std::io::Error::other)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&temporary, &self.path)?;
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
        let stored = Stored::from_token(token);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || store.save_now(&stored))
                .await
                .map_err(|e| StoreError::new(format!("token store: {e}")))?
        })
    }
}
