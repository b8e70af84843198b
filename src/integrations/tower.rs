//! [`TokenAuthLayer`]: a tower `Layer` for `http::Request`s (feature `tower`): hyper, tonic,
//! and any client built on tower.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Token, TokenHandle};

/// The error a [`TokenAuthService`] returns: the inner service's, or the handle's
/// [`Error`](crate::Error) when there is no valid token (then nothing was sent). Tonic and
/// hyper-util accept it as is.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Sets `Authorization` on every outgoing `http::Request` from a [`TokenHandle`]; when the
/// server rejects the token (HTTP 401, `WWW-Authenticate: Bearer error="invalid_token"`, or
/// gRPC status `UNAUTHENTICATED`), tells the refresher ([`TokenHandle::reject`]) and, if the
/// request can be replayed, retries it **once** with the new token. The rules are the
/// reqwest middleware's ([`TokenAuth`](super::middleware::TokenAuth)):
///
/// - Only requests whose body a [`Replay`] can copy are retried. The default, [`NoReplay`],
///   suits streaming bodies (tonic's): the rejected answer is handed back, and the next call
///   carries the new token. [`retry_cloned_bodies`](TokenAuthLayer::retry_cloned_bodies)
///   retries requests whose body is `Clone` (`String`, `Bytes`, `Full<Bytes>`).
/// - Concurrent rejections of the same token cause one refresh; a rejected request waits at
///   most [`max_refresh_wait`](TokenAuthLayer::max_refresh_wait) (default 2 s) for it.
/// - With no valid token the call fails at once with the handle's error, unsent;
///   [`wait_for_token`](TokenAuthLayer::wait_for_token) lets it wait a bounded time.
/// - No wait outlasts the request's own timeout where it has one: a gRPC call's
///   `grpc-timeout` header (tonic's `Request::set_timeout`) cuts both waits to what is left.
///
/// ```no_run
/// # #[cfg(feature = "tower")] {
/// use tokenwarden::TokenHandle;
/// use tokenwarden::integrations::tower::TokenAuthLayer;
/// use tower_layer::Layer;
///
/// # fn wrap<S>(channel: S, handle: TokenHandle) {
/// // e.g. a tonic `Channel`; then `MyServiceClient::new(authorised)`.
/// let authorised = TokenAuthLayer::new(handle).layer(channel);
/// # let _ = authorised;
/// # }
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TokenAuthLayer<R = NoReplay> {
    config: Arc<Config<R>>,
}

#[derive(Clone, Debug)]
struct Config<R> {
    handle: TokenHandle,
    replay: R,
    wait_for_token: Duration,
    max_refresh_wait: Duration,
}

impl TokenAuthLayer<NoReplay> {
    /// A layer that authorises requests with `handle`'s token and never replays a request.
    pub fn new(handle: TokenHandle) -> TokenAuthLayer<NoReplay> {
        TokenAuthLayer {
            config: Arc::new(Config {
                handle,
                replay: NoReplay,
                wait_for_token: Duration::ZERO,
                max_refresh_wait: super::DEFAULT_REFRESH_WAIT,
            }),
        }
    }
}

impl<R: Clone> TokenAuthLayer<R> {
    fn with<T>(self, change: impl FnOnce(Config<R>) -> Config<T>) -> TokenAuthLayer<T> {
        let config = Config::clone(&self.config);
        TokenAuthLayer {
            config: Arc::new(change(config)),
        }
    }

    /// Retries a rejected request once, copying requests with [`CloneBody`] (bodies that are
    /// `Clone`).
    pub fn retry_cloned_bodies(self) -> TokenAuthLayer<CloneBody> {
        self.replay_with(CloneBody)
    }

    /// Retries a rejected request once, copying requests with `replay`.
    pub fn replay_with<T>(self, replay: T) -> TokenAuthLayer<T> {
        self.with(|c| Config {
            handle: c.handle,
            replay,
            wait_for_token: c.wait_for_token,
            max_refresh_wait: c.max_refresh_wait,
        })
    }

    /// With no valid token, wait up to this long for one before failing the call. Default
    /// zero: fail at once, so the caller's own deadline decides.
    pub fn wait_for_token(self, wait: Duration) -> TokenAuthLayer<R> {
        self.with(|c| Config {
            wait_for_token: wait,
            ..c
        })
    }

    /// How long a rejected request waits for the new token before the server's answer is
    /// handed back (never longer than what is left of a gRPC call's `grpc-timeout`). Default
    /// 2 s: a retry after the whole wait still fits a 5 s deadline.
    pub fn max_refresh_wait(self, wait: Duration) -> TokenAuthLayer<R> {
        self.with(|c| Config {
            max_refresh_wait: wait,
            ..c
        })
    }
}

impl<S, R> Layer<S> for TokenAuthLayer<R> {
    type Service = TokenAuthService<S, R>;

    fn layer(&self, inner: S) -> TokenAuthService<S, R> {
        TokenAuthService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Copies a request so that it can be sent again after its token was rejected.
pub trait Replay<B>: Send + Sync + 'static {
    /// A copy of `request` to send again, or `None` if it cannot be replayed.
    fn replay(&self, request: &Request<B>) -> Option<Request<B>>;
}

/// Never replays (streaming bodies, tonic): the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoReplay;

impl<B> Replay<B> for NoReplay {
    fn replay(&self, _request: &Request<B>) -> Option<Request<B>> {
        None
    }
}

/// Replays requests whose body is `Clone`: method, URI, version, headers, extensions and body.
#[derive(Clone, Copy, Debug, Default)]
pub struct CloneBody;

impl<B: Clone> Replay<B> for CloneBody {
    fn replay(&self, request: &Request<B>) -> Option<Request<B>> {
        let mut copy = Request::new(request.body().clone());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

/// The service [`TokenAuthLayer`] wraps around `S`.
#[derive(Clone, Debug)]
pub struct TokenAuthService<S, R = NoReplay> {
    inner: S,
    config: Arc<Config<R>>,
}

/// Sets `Authorization` (and, for a DPoP-bound token, a fresh `DPoP` proof) on `request`.
fn authorize<B>(request: &mut Request<B>, token: &Token) -> Result<(), BoxError> {
    let header = super::authorization(token)?;
    let uri = request.uri().to_string();
    let proof = super::dpop_proof(token, request.method().as_str(), &uri)?;
    request.headers_mut().insert(AUTHORIZATION, header);
    if let Some(proof) = proof {
        request.headers_mut().insert("dpop", proof);
    }
    Ok(())
}

impl<S, R, B, Rb> Service<Request<B>> for TokenAuthService<S, R>
where
    S: Service<Request<B>, Response = Response<Rb>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    R: Replay<B>,
    B: Send + 'static,
    Rb: Send + 'static,
{
    type Response = Response<Rb>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Rb>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone is not ready; the service polled ready is the one that sends (tower's
        // rule for services moved into a future).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let config = self.config.clone();
        Box::pin(async move {
            let started = tokio::time::Instant::now();
            let own_timeout = super::grpc_timeout(request.headers());
            let budget = |configured| super::wait_budget(configured, own_timeout, started);
            let (token, header) = config
                .handle
                .authorized_within(budget(config.wait_for_token))
                .await?;
            let retry = config.replay.replay(&request);
            let response = if !super::dpop_bound(&token) {
                request.headers_mut().insert(AUTHORIZATION, header);
                inner.call(request).await.map_err(Into::into)?
            } else {
                // DPoP-bound: a proof per request, and once more with the nonce a server asks
                // for (when the request can be replayed).
                let uri = request.uri().to_string();
                let again = config.replay.replay(&request);
                authorize(&mut request, &token)?;
                let response = inner.call(request).await.map_err(Into::into)?;
                match again {
                    Some(mut again)
                        if super::asks_for_dpop_nonce(
                            &token,
                            &uri,
                            response.status(),
                            response.headers(),
                        ) =>
                    {
                        drop(response);
                        authorize(&mut again, &token)?;
                        poll_fn(|cx| inner.poll_ready(cx))
                            .await
                            .map_err(Into::into)?;
                        inner.call(again).await.map_err(Into::into)?
                    }
                    _ => response,
                }
            };
            if !super::rejects_token(response.status(), response.headers()) {
                return Ok(response);
            }
            // Refresh even if this request cannot be replayed, so the next call succeeds.
            let wait = budget(config.max_refresh_wait);
            let fresh = tokio::time::timeout(wait, config.handle.reject(&token)).await;
            let (Ok(Ok(fresh)), Some(mut retry)) = (fresh, retry) else {
                return Ok(response);
            };
            drop(response);
            authorize(&mut retry, &fresh)?;
            poll_fn(|cx| inner.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            inner.call(retry).await.map_err(Into::into)
        })
    }
}
