//! Connection limits (issue 16.3): slow or idle clients cannot exhaust the server.
//!
//! * **At most `max_connections` open connections, and `max_connections_per_source` from one
//!   source address** (0: no per-source cap). A connection over either cap is closed as soon as it
//!   is accepted, before any TLS handshake or read, so refused connections cost no memory beyond
//!   the accept itself. Counted by [`Limiter`] (one short lock per open and close).
//! * **Header read timeout** (`header_read_timeout`, hyper's own): a request head must arrive
//!   complete within it, counted from the connection's start or the end of the previous answer
//!   (so a client sending its headers byte by byte, or nothing, is closed).
//! * **Idle keep-alive timeout** (`keep_alive_timeout`): a connection with no request in flight on
//!   which nothing is read or written for this long is closed ([`Limited`]: the stream wrapper;
//!   [`InFlight`]: the service wrapper that tells it a request is running, until its answer's
//!   body is sent, so a slow handler is bounded by the request timeout instead). HTTP/1
//!   connections waiting for their next request are also bounded by the header read timeout,
//!   whichever is shorter.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The limits, from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    /// 0: no per-source cap.
    pub max_per_source: usize,
    pub keep_alive_timeout: Duration,
}

/// Counts open connections, overall and per source address.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    open: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only sources with open connections: the map is bounded by the connection cap.
    by_source: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    Source,
}

/// One open connection's place; freed on drop.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
    source: IpAddr,
}

impl Limiter {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: Mutex::default(),
        })
    }

    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Permit, Refused> {
        let mut c = self.open.lock().map_err(|_| Refused::Total)?;
        if c.total >= self.limits.max_connections {
            return Err(Refused::Total);
        }
        let mine = c.by_source.get(&source).copied().unwrap_or(0);
        if self.limits.max_per_source > 0 && mine >= self.limits.max_per_source {
            return Err(Refused::Source);
        }
        c.total += 1;
        c.by_source.insert(source, mine + 1);
        Ok(Permit {
            limiter: self.clone(),
            source,
        })
    }

    /// Open connections (overall, from `source`).
    pub fn open(&self, source: IpAddr) -> (usize, usize) {
        self.open.lock().map_or((0, 0), |c| {
            (c.total, c.by_source.get(&source).copied().unwrap_or(0))
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut c) = self.limiter.open.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.by_source.get_mut(&self.source) {
                *n -= 1;
                if *n == 0 {
                    c.by_source.remove(&self.source);
                }
            }
        }
    }
}

/// Requests in flight on one connection (shared by [`Limited`] and [`InFlight`]).
#[derive(Debug, Default)]
struct Busy(AtomicUsize);

/// An accepted stream holding its [`Permit`] and closing itself after `keep_alive_timeout` idle.
#[derive(Debug)]
pub struct Limited<S> {
    inner: S,
    _permit: Permit,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
    busy: Arc<Busy>,
}

impl<S> Limited<S> {
    fn active(&mut self) {
        self.last = Instant::now();
    }

    /// On a pending read or write: closed when idle too long with no request running; otherwise
    /// the timer is armed for the next check.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let deadline = self.last + self.idle;
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if self.busy.0.load(Ordering::Acquire) == 0 {
                return true;
            }
            // A request is running: it is bounded by the request timeout, not by this one.
            self.last = Instant::now();
        }
    }
}

fn idle_error() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle too long")
}

impl<S: AsyncRead + Unpin> AsyncRead for Limited<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.active();
                Poll::Ready(r)
            }
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Limited<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.active();
                Poll::Ready(r)
            }
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.active();
                Poll::Ready(r)
            }
            Poll::Pending if this.idle_expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The per-connection service, counting its requests in flight for [`Limited`].
#[derive(Debug, Clone)]
pub struct InFlight<S> {
    inner: S,
    busy: Arc<Busy>,
}

struct BusyGuard(Arc<Busy>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, R> tower::Service<R> for InFlight<S>
where
    S: tower::Service<R, Response = axum::http::Response<axum::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.busy.0.fetch_add(1, Ordering::AcqRel);
        let guard = BusyGuard(self.busy.clone());
        let fut = self.inner.call(req);
        // Busy until the answer's body is sent too: a backup streamed slowly is not idle.
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|body| {
                axum::body::Body::new(BusyBody {
                    body,
                    _guard: guard,
                })
            }))
        })
    }
}

/// A response body holding its connection busy until it is sent (or dropped).
struct BusyBody {
    body: axum::body::Body,
    _guard: BusyGuard,
}

impl http_body::Body for BusyBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The acceptor: admits a connection under the limits (or closes it), then hands it to `inner`
/// (plain, or TLS) wrapped in [`Limited`].
#[derive(Debug, Clone)]
pub struct LimitedAcceptor<A> {
    inner: A,
    limiter: Arc<Limiter>,
}

impl<A> LimitedAcceptor<A> {
    pub fn new(inner: A, limiter: Arc<Limiter>) -> Self {
        Self { inner, limiter }
    }
}

impl<A, S> Accept<TcpStream, S> for LimitedAcceptor<A>
where
    A: Accept<Limited<TcpStream>, InFlight<S>> + Clone + Send + 'static,
    A::Future: Send + 'static,
    A::Stream: Send,
    A::Service: Send,
    S: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let source = stream
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a: SocketAddr| a.ip());
        let permit = match self.limiter.admit(source) {
            Ok(p) => p,
            Err(why) => {
                let reason = match why {
                    Refused::Total => "max_connections",
                    Refused::Source => "max_connections_per_source",
                };
                metrics::counter!("credvault_connections_refused_total", "reason" => reason)
                    .increment(1);
                tracing::debug!(%source, reason, "connection refused: over the limit");
                // Dropping the stream closes it at once.
                return Box::pin(std::future::ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "over the connection limit",
                ))));
            }
        };
        let idle = self.limiter.limits.keep_alive_timeout;
        let busy = Arc::new(Busy::default());
        let now = Instant::now();
        let io = Limited {
            inner: stream,
            _permit: permit,
            idle,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            busy: busy.clone(),
        };
        let fut = self.inner.accept(
            io,
            InFlight {
                inner: service,
                busy,
            },
        );
        Box::pin(fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_count_overall_and_per_source_and_free_on_close() {
        let l = Limiter::new(Limits {
            max_connections: 3,
            max_per_source: 2,
            keep_alive_timeout: Duration::from_secs(1),
        });
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Refused::Source);
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Refused::Total);
        drop(a1);
        assert_eq!(l.open(a), (2, 1));
        let _b2 = l.admit(b).unwrap();
        assert_eq!(l.open(b), (3, 2));
    }

    #[test]
    fn no_per_source_cap_when_zero() {
        let l = Limiter::new(Limits {
            max_connections: 3,
            max_per_source: 0,
            keep_alive_timeout: Duration::from_secs(1),
        });
        let a = IpAddr::from([10, 0, 0, 1]);
        let held: Vec<_> = (0..3).map(|_| l.admit(a).unwrap()).collect();
        assert_eq!(l.admit(a).unwrap_err(), Refused::Total);
        drop(held);
        assert_eq!(l.open(a), (0, 0));
    }
}
