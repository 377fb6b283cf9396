//! The HTTP(S) front: routes, the RCAR handlers and the accept loop. The admin
//! endpoints are in [`crate::admin_api`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hyper_util::rt::{TokioIo, TokioTimer};
use kbs_protocol::{Attestation, AuthRequest, Challenge, TeePubKey, TokenReply};
use rand::RngCore;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::admin_api;
use crate::audit::{Actor, Kind};
use crate::sessions::State as Session;
use crate::storage::resource_path;
use crate::token::{unix_now, TEE_PUBKEY_POINTER};
use crate::{AppState, KbsError};

pub(crate) type Shared = Arc<AppState>;

/// The peer of a connection, put into each of its requests by [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The peer's address as an extractor (`None` when the router runs without
/// [`serve`]); for the audit log.
pub struct Peer(pub Option<std::net::SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<PeerAddr>().map(|p| p.0)))
    }
}

const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_TIMEOUT: Duration = Duration::from_secs(10);

/// The routes of KBS protocol 0.4.0, the admin API, `/healthz` and `/metrics`.
pub fn router(state: Shared) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/kbs/v0/auth", post(auth))
        .route("/kbs/v0/attest", post(attest))
        .route(
            "/kbs/v0/resource/{*path}",
            get(get_resource)
                .post(admin_api::set_resource)
                .delete(admin_api::delete_resource),
        )
        .route(
            "/kbs/v0/resource-policy",
            get(admin_api::get_resource_policy).post(admin_api::set_resource_policy),
        )
        .route(
            "/kbs/v0/attestation-policy",
            post(admin_api::set_attestation_policy),
        )
        .route(
            "/kbs/v0/reference-value",
            post(admin_api::set_reference_value),
        )
        .route(
            "/kbs/v0/reference-value/{*id}",
            get(admin_api::get_reference_value).delete(admin_api::delete_reference_value),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .fallback(|req: Request| async move { unknown_endpoint(req.uri().path()) })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// What Trustee answers for a path it has no handler for: the first segment after
/// `/kbs/v0/` is taken as a plugin name, and there is no such plugin (404). Also for a
/// known endpoint with a method it does not take (Trustee routes those to plugins too).
fn unknown_endpoint(path: &str) -> KbsError {
    match path.strip_prefix("/kbs/v0/") {
        Some(rest) => KbsError::PluginNotFound(format!(
            "Plugin {} not found",
            rest.split('/').next().unwrap_or("")
        )),
        None => KbsError::InvalidRequestPath(format!("Request path {path} is invalid")),
    }
}

/// Counts and times every request, and turns the framework's own refusals (plain
/// text: a body over the limit, a method an endpoint does not take, a path it cannot
/// decode) into JSON errors like every other.
async fn track(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let endpoint = crate::metrics::endpoint(req.uri().path());
    let path = req.uri().path().to_string();
    let start = Instant::now();
    let mut response = next.run(req).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json && response.status().is_client_error() {
        response = match response.status() {
            StatusCode::PAYLOAD_TOO_LARGE => KbsError::PayloadTooLarge(format!(
                "the request body is over max_body_bytes ({} bytes)",
                state.config.max_body_bytes
            ))
            .into_response(),
            StatusCode::METHOD_NOT_ALLOWED => unknown_endpoint(&path).into_response(),
            _ => KbsError::InvalidRequestPath(format!("Request path {path} is invalid"))
                .into_response(),
        };
    }
    let labels = crate::metrics::EndpointLabels {
        endpoint: endpoint.clone(),
    };
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            endpoint,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

pub(crate) fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).unwrap_or_default(),
    )
        .into_response()
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == kbs_protocol::SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
}

fn cookie(id: &str, expires: std::time::SystemTime) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{}={id}; Expires={}",
        kbs_protocol::SESSION_COOKIE,
        httpdate::fmt_http_date(expires)
    ))
    .expect("cookie is ASCII")
}

async fn auth(State(state): State<Shared>, body: Bytes) -> Result<Response, KbsError> {
    let request: AuthRequest = serde_json::from_slice(&body)
        .map_err(|e| KbsError::Attestation(format!("deserialize Request: {e}")))?;
    if request.version != kbs_protocol::VERSION {
        return Err(KbsError::Attestation(format!(
            "protocol version {:?} is not supported: this broker speaks exactly {}",
            request.version,
            kbs_protocol::VERSION
        )));
    }
    let tee = crate::appraise::tee_of(&request.tee)?;
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let (id, expires) = state.sessions.open(tee, nonce);
    let mut response = json_response(
        StatusCode::OK,
        &Challenge {
            nonce: STANDARD.encode(nonce),
            extra_params: Value::String(String::new()),
        },
    );
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&id, expires));
    Ok(response)
}

async fn attest(
    State(state): State<Shared>,
    Peer(addr): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KbsError> {
    let id = session_id(&headers).ok_or_else(|| {
        KbsError::Attestation("no kbs-session-id cookie: POST /kbs/v0/auth first".into())
    })?;
    // The session, and (postgres) the database's attestation policy and reference
    // values as of now, in one read.
    let read = state
        .read_ahead(Some(&id), crate::PolicyKind::Attestation, None)
        .await?;
    let session = read
        .session
        .unwrap_or_else(|| Err(crate::sessions::unknown()));
    let (tee, nonce, hash) = match session? {
        Session::Attested { token } => {
            return Ok(json_response(StatusCode::OK, &TokenReply { token }))
        }
        Session::Authed { tee, nonce, hash } => (tee, STANDARD.encode(nonce), hash),
    };
    let attestation: Attestation = serde_json::from_slice(&body)
        .map_err(|e| KbsError::Attestation(format!("deserialize Attestation: {e}")))?;
    if let Some(init) = &attestation.init_data {
        crate::initdata::check_size(&init.body).map_err(KbsError::Attestation)?;
    }
    if attestation.runtime_data.nonce != nonce {
        return Err(KbsError::Attestation(
            "the nonce in the handshake session is different from the one in the attestation"
                .into(),
        ));
    }
    // The only additional evidence taken is the agent's event log (device evidence is
    // refused); it is read here for its shape, and bound by the report data below.
    kbs_protocol::eventlog::EventLog::from_additional_evidence(
        &attestation.tee_evidence.additional_evidence,
    )
    .map_err(|e| KbsError::Attestation(e.to_string()))?;
    usable_key(&attestation.runtime_data.tee_pubkey)?;
    let digest = kbs_protocol::binding::digest(
        hash,
        &nonce,
        &attestation.runtime_data.tee_pubkey,
        &attestation.tee_evidence.additional_evidence,
    )
    .map_err(|e| KbsError::Attestation(e.to_string()))?;
    let appraiser_state = state.clone();
    let appraised = tokio::task::spawn_blocking(move || {
        appraiser_state
            .appraiser
            .appraise(tee, &attestation, &digest, unix_now())
    })
    .await
    .map_err(|e| KbsError::Attestation(format!("verifier task: {e}")))?;
    let actor = Actor {
        session: Some(crate::audit::session_id(&id)),
        ..Actor::from_addr(addr)
    };
    let tee_name = crate::appraise::tee_name(tee);
    let cpu0 = match appraised {
        Ok(cpu0) => cpu0,
        Err(e) => {
            let reason: String = e.to_string().chars().take(512).collect();
            state
                .audit
                .append(
                    Kind::Admission,
                    &actor,
                    json!({"tee": tee_name, "verdict": "refused", "reason": reason}),
                )
                .await?;
            return Err(e);
        }
    };
    let reasons = reasons_of(&cpu0);
    tracing::info!(
        session = %&id[..id.len().min(8)],
        status = %cpu0["ear.status"].as_str().unwrap_or(""),
        reasons = %reasons.join("; "),
        "attested"
    );
    let (token, claims) = state.signer.issue(cpu0)?;
    let verdict = claims
        .pointer("/submods/cpu0/ear.status")
        .and_then(Value::as_str)
        .unwrap_or("none");
    let details = json!({
        "tee": tee_name,
        "verdict": verdict,
        "claims_sha256": crate::audit::json_sha256(&claims),
        "token": crate::audit::token_id(&token),
    });
    let expires = state.admit(&id, token.clone(), &actor, details).await?;
    let mut response = json_response(StatusCode::OK, &TokenReply { token });
    response
        .headers_mut()
        .insert(header::SET_COOKIE, cookie(&id, expires));
    Ok(response)
}

/// The appraisal's reasons for not affirming ([`crate::appraise::REASONS`]).
fn reasons_of(cpu0: &Value) -> Vec<String> {
    cpu0[crate::appraise::REASONS]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Refuses at attestation a key no secret could later be encrypted to.
fn usable_key(key: &TeePubKey) -> Result<(), KbsError> {
    kbs_protocol::jwe::check_key(key).map_err(|e| KbsError::Attestation(format!("tee-pubkey: {e}")))
}

/// The verified claims of the caller, by its Bearer token (`bearer`: the token and its
/// claims, already verified) or its attested session (`session`: what
/// [`crate::AppState::read_ahead`] read for its cookie); and who it is for the audit log.
fn caller_claims(
    state: &AppState,
    headers: &HeaderMap,
    addr: Option<std::net::SocketAddr>,
    bearer: Option<(&str, Value)>,
    session: Option<Result<crate::sessions::State, KbsError>>,
) -> Result<(Value, Actor), KbsError> {
    let mut actor = Actor::from_addr(addr);
    if let Some((token, claims)) = bearer {
        actor.token = Some(crate::audit::token_id(token));
        return Ok((claims, actor));
    }
    let (Some(id), Some(session)) = (session_id(headers), session) else {
        return Err(KbsError::TokenNotFound(
            "Attestation Token not found: attest first (session cookie) or send Authorization: Bearer"
                .into(),
        ));
    };
    actor.session = Some(crate::audit::session_id(&id));
    match session {
        Ok(Session::Attested { token }) => {
            actor.token = Some(crate::audit::token_id(&token));
            Ok((state.signer.verify(&token)?, actor))
        }
        // As Trustee: no token to be found in this request.
        Ok(Session::Authed { .. }) => Err(KbsError::TokenNotFound(
            "Attestation Token not found: this session has not attested yet".into(),
        )),
        Err(e @ KbsError::Unavailable(_)) => Err(e),
        Err(e) => Err(KbsError::TokenNotFound(format!(
            "Attestation Token not found: {e}"
        ))),
    }
}

/// GET a resource, in Trustee's order: the token, the resource policy (on the path
/// as sent), then the path's shape and the resource itself.
async fn get_resource(
    State(state): State<Shared>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    Peer(addr): Peer,
    headers: HeaderMap,
) -> Result<Response, KbsError> {
    // The caller's session, (postgres) the database's resource policy as of now and the
    // resource's sealed row, in one read; the answers count in Trustee's order, and the
    // row is opened only once the policy released it. The row is read ahead only for a
    // caller whose cookie or token is genuine (a local MAC or signature check): an
    // anonymous request costs the database no resource read. A Bearer token is verified
    // first, before any read, and once.
    let bearer = match crate::admin::bearer(&headers) {
        Some(token) => Some((token, state.signer.verify(token)?)),
        None => None,
    };
    let cookie = if bearer.is_some() {
        None
    } else {
        session_id(&headers)
    };
    let genuine = bearer.is_some()
        || cookie
            .as_deref()
            .is_some_and(|id| state.sessions.challenge(id).is_ok());
    let key = resource_path(&path).ok().filter(|_| genuine);
    let read = state
        .read_ahead(cookie.as_deref(), crate::PolicyKind::Resource, key.as_ref())
        .await?;
    let (claims, actor) = caller_claims(&state, &headers, addr, bearer, read.session)?;
    let prefetched = read.prefetched;
    let segments: Vec<&str> = path.split('/').collect();
    let query = crate::policy::query_object(query.as_deref());
    if !state
        .resource_policy
        .allows_query(&claims, "resource", &segments, &query)?
    {
        // Why the attestation fell short, when it did: the client's one chance to
        // learn which claim to fix (Trustee's token only has the trust vector).
        let cpu0 = claims.pointer("/submods/cpu0").unwrap_or(&Value::Null);
        let why = match (cpu0["ear.status"].as_str(), reasons_of(cpu0)) {
            (Some(status), reasons) if status != "affirming" && !reasons.is_empty() => {
                format!(" (the attestation is {status}: {})", reasons.join("; "))
            }
            _ => String::new(),
        };
        state
            .audit
            .append(
                Kind::Release,
                &actor,
                json!({"path": path, "verdict": "denied"}),
            )
            .await?;
        return Err(KbsError::PolicyDeny(format!(
            "Access denied by policy: the resource policy denies {path}{why}"
        )));
    }
    let key = resource_path(&path)?;
    let secret = state
        .storage
        .get_prefetched(&key, prefetched)
        .await?
        .ok_or_else(|| KbsError::PluginInternal(format!("resource {path} not found")))?;
    let tee_pubkey: TeePubKey = claims
        .pointer(TEE_PUBKEY_POINTER)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .ok_or_else(|| KbsError::TokenVerifier("the token carries no tee-pubkey".into()))?;
    let jwe = kbs_protocol::jwe::encrypt(&tee_pubkey, &secret)
        .map_err(|e| KbsError::Jwe(e.to_string()))?;
    drop(secret);
    let body = serde_json::to_vec(&jwe).map_err(|e| KbsError::Jwe(e.to_string()))?;
    // Never sent without its entry: a failed append fails the request.
    state
        .audit
        .append(
            Kind::Release,
            &actor,
            json!({"path": path, "verdict": "released", "jwe_sha256": crate::audit::sha256_hex(&body)}),
        )
        .await?;
    tracing::info!(resource = %path, "released");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

async fn metrics(State(state): State<Shared>) -> Response {
    // With postgres the gauge is the last sweep's count, for the whole database.
    if state.pg.is_none() {
        state.metrics.sessions.set(state.sessions.len() as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Loads the `[tls]` certificate chain and key.
pub fn tls_acceptor(tls: &crate::config::TlsConfig) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&tls.certificate)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", tls.certificate.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.private_key)
        .map_err(|e| anyhow::anyhow!("{}: {e}", tls.private_key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves until the listener fails. Each connection gets a header timeout (and a
/// handshake timeout with TLS) so idle peers cannot hold it forever.
pub async fn serve(
    listener: TcpListener,
    state: Shared,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let app = router(state.clone());
    if let Some(every) = state.audit.checkpoint_interval() {
        let auditor = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                // A failure was logged where it happened; the next tick tries again.
                let _ = auditor.audit.checkpoint_if_due().await;
            }
        });
    }
    let sweeper = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            // A database that is away was logged where it failed; next minute again.
            if let Ok(left) = sweeper.sweep().await {
                sweeper.metrics.sessions.set(left as i64);
            }
        }
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin or die.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // Each request carries its peer's address (for the audit log).
        let router = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                tower_service::Service::call(&mut router.clone(), req)
            });
        let tls = tls.clone();
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let result = match tls {
                None => http.serve_connection(TokioIo::new(stream), service).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => http.serve_connection(TokioIo::new(s), service).await,
                        Ok(Err(e)) => {
                            tracing::debug!("TLS handshake: {e}");
                            return;
                        }
                        Err(_) => return,
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection: {e}");
            }
        });
    }
}
