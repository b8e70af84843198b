//! [`StaticToken`] and [`FileToken`]: tokens that something else provides.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::{FetchContext, FetchError, FetchFuture, Token, TokenSource};

/// Always hands out the same token: for tests, and for services whose token is configured.
///
/// ```
/// use tokenwarden::{Refresher, Token};
/// use tokenwarden::sources::StaticToken;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let handle = Refresher::builder(StaticToken::new(Token::new("fixed"))).spawn();
/// assert_eq!(handle.ready().await.unwrap().expose_secret(), "fixed");
/// # }
/// ```
pub struct StaticToken {
    token: Token,
}

impl StaticToken {
    /// A source that always returns `token`.
    pub fn new(token: Token) -> StaticToken {
        StaticToken { token }
    }
}

impl TokenSource for StaticToken {
    fn fetch(&self, _ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(std::future::ready(Ok(self.token.clone())))
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StaticToken").field(&self.token).finish()
    }
}

/// Where the kubelet mounts a pod's service-account token.
const KUBERNETES_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Reads the token from a file that something else keeps fresh (a sidecar, a Kubernetes
/// projected service-account token, a CLI login).
///
/// The file holds the token alone; surrounding whitespace is ignored. It is read at start, at
/// least every [`reread_every`](FileToken::reread_every) (default 30 s) so a rotation is picked
/// up, sooner when a JWT's `exp` says so, and at once on `refresh()` or `reject()` (a server
/// answering 401 usually means the file has changed). A missing or empty file is a transient
/// error: whatever writes it may be about to. The path must name a regular file (a symbolic
/// link to one is fine): a FIFO or device would block a thread for ever, and is refused. A file
/// over [`max_bytes`](FileToken::max_bytes) (default 64 KiB) is refused without being read.
///
/// ```no_run
/// use std::time::Duration;
/// use tokenwarden::Refresher;
/// use tokenwarden::sources::FileToken;
///
/// # async fn run() {
/// let source = FileToken::new("/var/run/secrets/tokens/api-token")
///     .reread_every(Duration::from_secs(60));
/// let handle = Refresher::builder(source).spawn();
/// # }
/// ```
pub struct FileToken {
    path: PathBuf,
    reread_every: Duration,
    max_bytes: u64,
}

impl FileToken {
    /// A source that reads the token from `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileToken {
        FileToken {
            path: path.into(),
            reread_every: Duration::from_secs(30),
            max_bytes: 64 * 1024,
        }
    }

    /// The Kubernetes service-account token the kubelet mounts in every pod,
    /// `/var/run/secrets/kubernetes.io/serviceaccount/token`. For a projected token with its
    /// own audience (what workload identity federation trades), name the projected volume's
    /// path with [`new`](FileToken::new).
    ///
    /// The kubelet rewrites the file (by swapping a symbolic link, so a read never sees half a
    /// token) once 80 % of the token's life has passed; this source reads it again at least
    /// every 30 s and before the JWT's `exp`, so a rotated token is picked up and an expired one
    /// is never kept (azure_identity read it once and failed an hour later).
    pub fn kubernetes() -> FileToken {
        FileToken::new(KUBERNETES_TOKEN_PATH)
    }

    /// The largest file read. Default 64 KiB: large JWTs are a few KiB; a file far larger is
    /// a wrong path, not a token.
    pub fn max_bytes(mut self, limit: u64) -> FileToken {
        self.max_bytes = limit;
        self
    }

    /// How often the file is read again at most. Default 30 s.
    pub fn reread_every(mut self, interval: Duration) -> FileToken {
        self.reread_every = interval;
        self
    }
}

impl TokenSource for FileToken {
    fn fetch(&self, _ctx: FetchContext) -> FetchFuture<'_> {
        Box::pin(async move {
            use tokio::io::AsyncReadExt;

            let path = self.path.display();
            let failed =
                |e: std::io::Error| FetchError::transient(format!("token file {path}: {e}"));
            let meta = tokio::fs::metadata(&self.path).await.map_err(failed)?;
            if !meta.is_file() {
                return Err(FetchError::permanent(format!(
                    "token file {path} is not a regular file"
                )));
            }
            if meta.len() > self.max_bytes {
                return Err(FetchError::transient(format!(
                    "token file {path} has {} bytes, more than the {} a token may have",
                    meta.len(),
                    self.max_bytes
                )));
            }
            let file = tokio::fs::File::open(&self.path).await.map_err(failed)?;
            // Bounded again while reading: the file may grow after the check.
            let mut bytes = Vec::new();
            file.take(self.max_bytes + 1)
                .read_to_end(&mut bytes)
                .await
                .map_err(failed)?;
            if bytes.len() as u64 > self.max_bytes {
                return Err(FetchError::transient(format!(
                    "token file {path} is larger than the {} bytes a token may have",
                    self.max_bytes
                )));
            }
            let text = String::from_utf8(bytes).map_err(|_| {
                FetchError::transient(format!("token file {path} is not UTF-8 text"))
            })?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(FetchError::transient(format!("token file {path} is empty")));
            }
            Ok(Token::new(secret.to_owned()).with_refresh_in(self.reread_every))
        })
    }

    fn origin(&self) -> Option<String> {
        Some(format!("token file {}", self.path.display()))
    }
}

impl fmt::Debug for FileToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileToken")
            .field("path", &self.path)
            .field("reread_every", &self.reread_every)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}
