//! The knock page over HTTP (axum on hyper, HTTP/1.1, its own listener inside `serve`):
//! `GET /knock` shows the form with the address that will be permitted, `POST /knock` takes
//! the token (an urlencoded form) and answers with what was added and until when.
//!
//! Which address: the TCP peer's, or, when the peer is one of the trusted proxies, the
//! right-most address of `X-Forwarded-For` that is not itself a trusted proxy ([`client`]).
//! TLS is a reverse proxy's job: a client off loopback is served only when a trusted proxy
//! says `X-Forwarded-Proto: https`, unless plain HTTP is allowed explicitly; otherwise the page
//! answers 403 and says why, before any token is read.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (more wait in the backlog), each cut
//! off [`CONNECTION_LIFETIME`] after it was accepted, so a client that opens connections and
//! sends nothing holds up no one for long; bodies over 4 KiB are refused.

use std::future::Future as _;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{page, KnockSettings, Knocker, Outcome};

/// Largest request body taken (the form has one short field).
const MAX_BODY: usize = 4 * 1024;
/// Longest token text looked at; longer ones are refused as malformed.
const MAX_TOKEN: usize = 256;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay open (an exchange with the page takes milliseconds).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Why a request is answered without looking at it further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Plain HTTP from a client off loopback, and plain HTTP is not allowed.
    PlainHttp,
    /// A trusted proxy sent an `X-Forwarded-For` that does not parse.
    BadForwarded,
}

/// The page's routes over `knocker`.
pub fn router(knocker: Arc<Knocker>) -> Router {
    Router::new()
        .route("/knock", get(show).post(submit))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(knocker)
}

/// Serves the page on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, knocker: Arc<Knocker>, shutdown: CancellationToken) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "knock page on http://{addr}/knock");
    }
    let listener = Bounded {
        listener,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    let app = router(knocker).into_make_service_with_connect_info::<Peer>();
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        warn!(%error, "the knock page stopped");
    }
}

/// The requester's address (see the module's notes), or why the request is refused.
pub fn client(
    peer: IpAddr,
    headers: &HeaderMap,
    settings: &KnockSettings,
) -> Result<IpAddr, Refusal> {
    let peer = peer.to_canonical();
    let trusted = |ip: IpAddr| settings.trusted_proxies.iter().any(|n| n.contains(&ip));
    let (client, https) = if trusted(peer) {
        let mut client = peer;
        // Every X-Forwarded-For line, in order; read from the right (the nearest hop).
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.to_str().map_err(|_| Refusal::BadForwarded))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        for hop in hops.iter().rev() {
            let ip = hop
                .parse::<IpAddr>()
                .map_err(|_| Refusal::BadForwarded)?
                .to_canonical();
            client = ip;
            if !trusted(ip) {
                break;
            }
        }
        let https = headers
            .get_all("x-forwarded-proto")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        (client, https)
    } else {
        (peer, false)
    };
    if !https && !client.is_loopback() && !settings.allow_http {
        return Err(Refusal::PlainHttp);
    }
    Ok(client)
}

#[derive(Debug, Deserialize)]
struct KnockForm {
    token: String,
}

async fn show(
    State(knocker): State<Arc<Knocker>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
) -> Response {
    match client(peer.ip(), &headers, knocker.settings()) {
        Ok(ip) => html(StatusCode::OK, page::form(ip, None)),
        Err(refusal) => refused(refusal),
    }
}

async fn submit(
    State(knocker): State<Arc<Knocker>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
    headers: HeaderMap,
    form: Result<Form<KnockForm>, FormRejection>,
) -> Response {
    let ip = match client(peer.ip(), &headers, knocker.settings()) {
        Ok(ip) => ip,
        Err(refusal) => return refused(refusal),
    };
    // A missing or unreadable field is a malformed token: refused like a wrong one.
    let typed = form.map(|Form(f)| f.token).unwrap_or_default();
    let typed = if typed.len() > MAX_TOKEN { "" } else { &typed };
    match knocker.knock(ip, typed).await {
        Outcome::Permit { rule, ttl, .. } => html(
            StatusCode::OK,
            page::permitted(&format!(
                "{ip} is permitted until {}.",
                super::until(&rule, ttl)
            )),
        ),
        Outcome::Keep(_) => html(
            StatusCode::OK,
            page::permitted(&format!("{ip} is already permitted.")),
        ),
        Outcome::Refuse => html(
            StatusCode::FORBIDDEN,
            page::form(ip, Some("That token is not valid.")),
        ),
        Outcome::Limit => {
            let mut r = html(
                StatusCode::TOO_MANY_REQUESTS,
                page::form(
                    ip,
                    Some("Too many attempts. Wait a minute, then try again."),
                ),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            r
        }
        Outcome::Deny(_) => html(
            StatusCode::FORBIDDEN,
            page::message(
                "Not permitted",
                &format!(
                    "{ip} is blocked by this server's rules, and a knock cannot lift that. \
                     Ask the administrator."
                ),
            ),
        ),
        Outcome::Busy => html(
            StatusCode::SERVICE_UNAVAILABLE,
            page::message("Busy", "Too many attempts at once. Try again shortly."),
        ),
        Outcome::Fail => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            page::message(
                "Not saved",
                "The server could not save the permit. Try again later.",
            ),
        ),
    }
}

async fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        page::message("Not found", "The knock page is at /knock."),
    )
}

fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::PlainHttp => html(
            StatusCode::FORBIDDEN,
            page::message(
                "HTTPS required",
                "This page takes tokens over HTTPS only: open it with https://. (Plain HTTP is \
                 refused from any address but the server's own.)",
            ),
        ),
        Refusal::BadForwarded => html(
            StatusCode::BAD_REQUEST,
            page::message(
                "Bad request",
                "The proxy in front of this page sent an X-Forwarded-For that is not an address.",
            ),
        ),
    }
}

/// The knock page's listener: a connection slot is taken before `accept`, and released when
/// the connection ends.
struct Bounded {
    listener: TcpListener,
    slots: Arc<Semaphore>,
}

impl axum::serve::Listener for Bounded {
    type Io = Bound;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Bound, SocketAddr) {
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                // The semaphore is never closed; were it, accept nothing more.
                std::future::pending::<()>().await;
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let bound = Bound {
                        stream,
                        deadline: Box::pin(tokio::time::sleep(CONNECTION_LIFETIME)),
                        _slot: slot,
                    };
                    return (bound, addr);
                }
                Err(error) => {
                    debug!(%error, "knock page accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// The peer address of a [`Bounded`] connection, for the handlers.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, Bounded>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Bounded>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

/// A connection of the knock page: reads and writes fail once its lifetime is over; its slot
/// is freed when it drops.
struct Bound {
    stream: TcpStream,
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: OwnedSemaphorePermit,
}

impl Bound {
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn lifetime_over() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "knock page connection open too long",
    )
}

impl AsyncRead for Bound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.expired(cx) {
            return Poll::Ready(Err(lifetime_over()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Bound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.expired(cx) {
            return Poll::Ready(Err(lifetime_over()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// An HTML answer that no cache keeps and no other site frames.
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(proxies: &[&str], allow_http: bool) -> KnockSettings {
        KnockSettings {
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
            allow_http,
            ..KnockSettings::default()
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_only_from_a_trusted_proxy() {
        let xff = headers(&[
            ("x-forwarded-for", "192.0.2.1, 203.0.113.45"),
            ("x-forwarded-proto", "https"),
        ]);
        // Not trusted: the peer, and plain HTTP off loopback is refused.
        let s = settings(&[], false);
        assert_eq!(
            client(ip("198.51.100.9"), &xff, &s),
            Err(Refusal::PlainHttp)
        );
        assert_eq!(client(ip("127.0.0.1"), &xff, &s), Ok(ip("127.0.0.1")));
        // Trusted: the right-most hop that is not a trusted proxy (the left one is the
        // client's own claim, forgeable).
        let s = settings(&["127.0.0.1/32", "10.0.0.0/8"], false);
        assert_eq!(client(ip("127.0.0.1"), &xff, &s), Ok(ip("203.0.113.45")));
        let chained = headers(&[
            ("x-forwarded-for", "203.0.113.45"),
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            client(ip("127.0.0.1"), &chained, &s),
            Ok(ip("203.0.113.45"))
        );
        // Trusted but not HTTPS: refused for a remote client.
        let plain = headers(&[("x-forwarded-for", "203.0.113.45")]);
        assert_eq!(client(ip("127.0.0.1"), &plain, &s), Err(Refusal::PlainHttp));
        let s_http = settings(&["127.0.0.1/32"], true);
        assert_eq!(
            client(ip("127.0.0.1"), &plain, &s_http),
            Ok(ip("203.0.113.45"))
        );
        // Garbage from a trusted proxy is refused, not guessed at.
        let bad = headers(&[
            ("x-forwarded-for", "not-an-ip"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            client(ip("127.0.0.1"), &bad, &s),
            Err(Refusal::BadForwarded)
        );
        // A trusted proxy without the header: the proxy itself.
        assert_eq!(
            client(ip("127.0.0.1"), &HeaderMap::new(), &s),
            Ok(ip("127.0.0.1"))
        );
    }

    #[test]
    fn plain_http_is_served_off_loopback_only_when_allowed() {
        let none = HeaderMap::new();
        assert_eq!(
            client(ip("203.0.113.45"), &none, &settings(&[], false)),
            Err(Refusal::PlainHttp)
        );
        assert_eq!(
            client(ip("203.0.113.45"), &none, &settings(&[], true)),
            Ok(ip("203.0.113.45"))
        );
        assert_eq!(
            client(ip("::1"), &none, &settings(&[], false)),
            Ok(ip("::1"))
        );
        assert_eq!(
            client(ip("::ffff:127.0.0.1"), &none, &settings(&[], false)),
            Ok(ip("127.0.0.1"))
        );
    }
}
