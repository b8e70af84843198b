//! [`Secret`]: a client secret or API key held in memory, or read from a file at each fetch.

use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use tokio::io::AsyncReadExt;
use zeroize::Zeroizing;

use crate::FetchError;

/// The largest secret file read, in bytes: secrets are short, and a wrong path (a log file)
/// must not be read into memory whole.
const LARGEST_SECRET_FILE: u64 = 64 * 1024;

/// A secret a source sends: a value in memory, or a file read **at every fetch**.
///
/// A file suits secrets that something else rotates without restarting the process: a
/// Kubernetes secret mounted as a volume (the kubelet swaps the file in place), a Vault agent's
/// template. The file's content is used with surrounding whitespace trimmed (a trailing newline
/// is the usual accident). Strings and [`SecretString`]s convert into a value, so
/// `ClientCredentials::builder(url, "id", "secret")` reads as before.
///
/// Reading errors name the file, never its content: a missing file is transient (a volume
/// being mounted or swapped; retried with backoff), an unreadable, empty or oversized one
/// (over 64 KiB) is permanent.
///
/// ```
/// use tokenwarden::sources::Secret;
///
/// let from_memory: Secret = "s3cr3t".into();
/// let from_a_mount = Secret::file("/var/run/secrets/idp/client-secret");
/// assert!(!format!("{from_memory:?}").contains("s3cr3t"));
/// assert!(format!("{from_a_mount:?}").contains("client-secret"));
/// ```
#[derive(Clone)]
pub struct Secret(Kind);

#[derive(Clone)]
enum Kind {
    Value(SecretString),
    File(PathBuf),
}

impl Secret {
    /// A secret held in memory.
    pub fn value(secret: impl Into<SecretString>) -> Secret {
        Secret(Kind::Value(secret.into()))
    }

    /// A secret read from `path` at each fetch.
    pub fn file(path: impl Into<PathBuf>) -> Secret {
        Secret(Kind::File(path.into()))
    }

    /// The value, when it is held in memory.
    pub(crate) fn in_memory(&self) -> Option<&SecretString> {
        match &self.0 {
            Kind::Value(secret) => Some(secret),
            Kind::File(_) => None,
        }
    }

    /// The secret now: the value, or the file's trimmed content. `what` names the secret in
    /// errors ("the client secret").
    pub(crate) async fn read(&self, what: &str) -> Result<SecretString, FetchError> {
        match &self.0 {
            Kind::Value(secret) => Ok(secret.clone()),
            Kind::File(path) => read_file(path, what).await,
        }
    }
}

async fn read_file(path: &Path, what: &str) -> Result<SecretString, FetchError> {
    let shown = path.display();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => {
                FetchError::transient(format!("{what} file {shown} does not exist (yet)"))
            }
            _ => FetchError::permanent(format!("{what} file {shown} cannot be opened: {e}")),
        })?;
    let mut content = Zeroizing::new(Vec::new());
    file.take(LARGEST_SECRET_FILE + 1)
        .read_to_end(&mut content)
        .await
        .map_err(|e| FetchError::permanent(format!("{what} file {shown} cannot be read: {e}")))?;
    if content.len() as u64 > LARGEST_SECRET_FILE {
        return Err(FetchError::permanent(format!(
            "{what} file {shown} is larger than {LARGEST_SECRET_FILE} bytes; is it the right file?"
        )));
    }
    let text = std::str::from_utf8(&content)
        .map_err(|_| FetchError::permanent(format!("{what} file {shown} is not UTF-8 text")))?
        .trim();
    if text.is_empty() {
        return Err(FetchError::permanent(format!(
            "{what} file {shown} is empty"
        )));
    }
    Ok(SecretString::from(text))
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Secret {
        Secret::value(secret)
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Secret {
        Secret::value(secret)
    }
}

impl From<SecretString> for Secret {
    fn from(secret: SecretString) -> Secret {
        Secret(Kind::Value(secret))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Value(_) => f.write_str("Secret(<redacted>)"),
            Kind::File(path) => f.debug_tuple("Secret::file").field(path).finish(),
        }
    }
}

impl Secret {
    /// Whether the secret is a value that is empty (a file is checked when read).
    pub(crate) fn is_empty_value(&self) -> bool {
        self.in_memory()
            .is_some_and(|secret| secret.expose_secret().trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_is_read_at_every_call_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let secret = Secret::file(&path);

        let missing = secret.read("the client secret").await.unwrap_err();
        assert!(missing.is_transient(), "{missing}");
        assert!(missing.to_string().contains("the client secret file"));

        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(secret.read("x").await.unwrap().expose_secret(), "first");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(secret.read("x").await.unwrap().expose_secret(), "second");

        std::fs::write(&path, " \n").unwrap();
        let empty = secret.read("the API key").await.unwrap_err();
        assert!(empty.is_permanent() && empty.to_string().contains("is empty"));

        std::fs::write(&path, vec![b'a'; 70 * 1024]).unwrap();
        let large = secret.read("x").await.unwrap_err();
        assert!(large.is_permanent() && large.to_string().contains("larger than"));
    }

    #[test]
    fn debug_never_shows_a_value() {
        let secret = Secret::from(String::from("hunter2"));
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
