//! The HTTP server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::Digest as _;
use tokio::net::TcpListener;

use crate::keys::{KeyError, Keys};
use crate::wire::{SignaturePayload, Standard, MAX_BODY};

/// A client that sends nothing for this long is dropped, so idle connections cannot
/// pile up.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// And a body that trickles in is cut off.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the API on `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, keys: Arc<Keys>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            // Out of descriptors or an aborted handshake: the next accept may succeed.
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let keys = keys.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let keys = keys.clone();
                async move { Ok::<_, Infallible>(handle(req, &keys, peer).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("{peer}: {e}");
            }
        });
    }
}

async fn handle(req: Request<Incoming>, keys: &Keys, peer: SocketAddr) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let signing = [Standard::Pkcs1, Standard::Ed25519]
        .into_iter()
        .find(|s| s.sign_path() == path);
    let key_of = [Standard::Pkcs1, Standard::Ed25519]
        .into_iter()
        .find(|s| s.public_key_path() == path);
    let response = match (method.clone(), signing, key_of) {
        (Method::POST, Some(standard), _) => sign(req, keys, standard, peer).await,
        (Method::GET, _, Some(standard)) => {
            let pem = match standard {
                Standard::Pkcs1 => keys.pkcs1_public_pem(),
                Standard::Ed25519 => keys.ed25519_public_pem(),
            };
            match pem {
                Ok(pem) => json(StatusCode::OK, &pem),
                Err(e) => error(&e),
            }
        }
        (_, Some(_), _) | (_, _, Some(_)) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => text(StatusCode::NOT_FOUND, format!("no such path: {path}")),
    };
    tracing::debug!("{peer} {method} {path} {}", response.status().as_u16());
    response
}

async fn sign(
    req: Request<Incoming>,
    keys: &Keys,
    standard: Standard,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {MAX_BODY} bytes"),
        )
    };
    // Refused by its declared length before a byte of it is read.
    if hyper::body::Body::size_hint(req.body()).lower() > MAX_BODY as u64 {
        return too_large();
    }
    let collect = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Err(_) => {
            return text(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {}s", BODY_TIMEOUT.as_secs()),
            )
        }
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Ok(Err(e)) => return text(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    if body.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "nothing to sign: the body is empty",
        );
    }
    // Inline: an RSA-3072 signature is a few milliseconds, Ed25519 microseconds.
    let signed = match standard {
        Standard::Pkcs1 => keys.sign_pkcs1(&body),
        Standard::Ed25519 => keys.sign_ed25519(&body),
    };
    match signed {
        Ok((sig, public_key)) => {
            // What was signed, by digest only: an audit trail without the material.
            tracing::info!(
                "{peer}: signed {} bytes ({}) sha256 {}",
                body.len(),
                standard.name(),
                hex_digest(&body)
            );
            json(
                StatusCode::OK,
                &SignaturePayload {
                    signature: base64::engine::general_purpose::STANDARD.encode(sig),
                    public_key,
                },
            )
        }
        Err(e) => error(&e),
    }
}

fn hex_digest(data: &[u8]) -> String {
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn error(e: &KeyError) -> Response<Full<Bytes>> {
    let status = match e {
        KeyError::NotConfigured(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, e.to_string())
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).expect("replies serialize");
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Full<Bytes>> {
    let mut body = message.into();
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
