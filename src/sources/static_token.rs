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

/// Reads the token from a file that something else keeps fresh (a sidecar, a Kubernetes
/// projected service-account token, a CLI login).
///
/// The file holds the token alone; surrounding whitespace is ignored. It is read at start, at
/// least every [`reread_every`](FileToken::reread_every) (default 30 s) so a rotation is picked
/// up, sooner when a JWT's `exp` says so, and at once on `refresh()` or `reject()` (a server
/// answering 401 usually means the file has changed). A missing or empty file is a transient
/// error: whatever writes it may be about to.
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
}

impl FileToken {
    /// A source that reads the token from `path`.
    pub fn new(path: impl Into<PathBuf>) -> FileToken {
        FileToken {
            path: path.into(),
            reread_every: Duration::from_secs(30),
        }
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
            let path = self.path.display();
            let text = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| FetchError::transient(format!("token file {path}: {e}")))?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(FetchError::transient(format!("token file {path} is empty")));
            }
            Ok(Token::new(secret.to_owned()).with_refresh_in(self.reread_every))
        })
    }
}

impl fmt::Debug for FileToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileToken")
            .field("path", &self.path)
            .field("reread_every", &self.reread_every)
            .finish()
    }
}
