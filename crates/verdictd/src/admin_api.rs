//! The admin endpoints, as Trustee's KBS serves them (T:`kbs/src/api_server.rs`) and
//! `kbs-client config …` calls them (T:`tools/kbs-client/src/lib.rs`):
//!
//! | endpoint | body → answer | errors |
//! |---|---|---|
//! | `POST`/`DELETE /kbs/v0/resource/<repo>/<type>/<tag>` | raw bytes → 200 | `AdminAuthInitialization`, `PluginInternalError` |
//! | `POST /kbs/v0/resource-policy` | `{"policy": <base64url Rego>}` → 200 | `AdminAuthAccess`, `ParsePolicyError`, `PolicyEngineError` |
//! | `GET /kbs/v0/resource-policy` | → the policy ids, `["resource-policy"]` | `AdminAuthAccess` |
//! | `POST /kbs/v0/attestation-policy` | `{"type", "policy_id", "policy": <base64url>}` → 200 | `AdminAuthAccess`, `AttestationError` |
//! | `POST /kbs/v0/reference-value` | `{"version": "0.1.0", "type": "sample", "payload": <base64 of {name: value}>}` → 200 | `AdminAuthAccess`, `RvpsError` |
//! | `POST /kbs/v0/reference-value` | `{"version": "0.1.0", "type": "corim", "payload": <base64 of a CoRIM>}` (unsigned or COSE_Sign1, its signature unchecked as by Trustee) → 200 | `AdminAuthAccess`, `RvpsError` |
//! | `POST /kbs/v0/reference-value` (verdictd only) | `{"version": "0.1.0", "type": "dsse", "payload": <base64 of a DSSE envelope>}` (`shelter rv bundle`'s `bundle-message.json`; its values in `sample` form, a CoRIM or both) → 200 | `AdminAuthAccess`, `RvpsError` |
//! | `GET /kbs/v0/reference-value/<name>` | → the value, as registered | `AdminAuthAccess`, `RvpsError` |
//! | `DELETE /kbs/v0/reference-value/<name>` | → 200 (verdictd only: Trustee replaces values by registering them again, and has no delete) | `AdminAuthAccess`, `RvpsError` |
//!
//! Every allowed call is appended to the audit log ([`crate::audit`]) once its request
//! is checked and before it takes effect; a failed append fails the call (503).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::AdminIdentity;
use crate::audit::{json_sha256, sha256_hex, Kind};
use crate::server::{json_response, Peer, Shared};
use crate::storage::resource_path;
use crate::KbsError;

/// The resource policy's id in Trustee's policy store (T:`kbs/src/api_server.rs`
/// `KBS_POLICY_ID`), the one entry `GET /kbs/v0/resource-policy` lists.
pub const RESOURCE_POLICY_ID: &str = "resource-policy";

/// The reference-value message version Trustee's RVPS accepts (T:`rvps/src/lib.rs`).
pub const RVPS_MESSAGE_VERSION: &str = "0.1.0";

fn admin_for_resources(state: &Shared, headers: &HeaderMap) -> Result<AdminIdentity, KbsError> {
    state.admin.check(headers).map_err(|e| match e {
        KbsError::AdminAuth(detail) => KbsError::AdminAuthResource(format!(
            "failed to initialize [admin] configuration: {detail}"
        )),
        other => other,
    })
}

/// `POST /kbs/v0/resource/<repo>/<type>/<tag>`: stores the body as the resource.
pub async fn set_resource(
    State(state): State<Shared>,
    Path(path): Path<String>,
    Peer(addr): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KbsError> {
    let admin = admin_for_resources(&state, &headers)?;
    let key = resource_path(&path)?;
    let mut details = json!({"path": path, "bytes": body.len()});
    if let Some(hmac) = state.audit.value_hmac(&body) {
        details["value_hmac"] = json!(hmac);
    }
    state
        .audit
        .append(Kind::ResourceSet, &admin.actor(addr), details)
        .await?;
    state.storage.put(&key, &body).await?;
    tracing::info!(resource = %path, bytes = body.len(), "stored");
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /kbs/v0/resource/<repo>/<type>/<tag>`.
pub async fn delete_resource(
    State(state): State<Shared>,
    Path(path): Path<String>,
    Peer(addr): Peer,
    headers: HeaderMap,
) -> Result<Response, KbsError> {
    let admin = admin_for_resources(&state, &headers)?;
    let key = resource_path(&path)?;
    state
        .audit
        .append(
            Kind::ResourceDelete,
            &admin.actor(addr),
            json!({"path": path}),
        )
        .await?;
    if !state.storage.delete(&key).await? {
        return Err(KbsError::PluginInternal(format!(
            "resource {path} not found"
        )));
    }
    tracing::info!(resource = %path, "deleted");
    Ok(StatusCode::OK.into_response())
}

fn decode_policy(p: &str, err: fn(String) -> KbsError) -> Result<String, KbsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(p.trim_end_matches('='))
        .map_err(|e| err(format!("Failed to decode policy: {e}")))?;
    String::from_utf8(bytes).map_err(|e| err(format!("Failed to decode policy: {e}")))
}

/// `GET /kbs/v0/resource-policy`: the policy ids, as Trustee lists them.
pub async fn get_resource_policy(
    State(state): State<Shared>,
    Peer(addr): Peer,
    headers: HeaderMap,
) -> Result<Response, KbsError> {
    let admin = state.admin.check(&headers)?;
    state
        .audit
        .append(Kind::ResourcePolicyRead, &admin.actor(addr), json!({}))
        .await?;
    Ok(json_response(StatusCode::OK, &json!([RESOURCE_POLICY_ID])))
}

/// `POST /kbs/v0/resource-policy`: replaces the Rego resource policy.
pub async fn set_resource_policy(
    State(state): State<Shared>,
    Peer(addr): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KbsError> {
    let admin = state.admin.check(&headers)?;
    let request: Value = serde_json::from_slice(&body)
        .map_err(|_| KbsError::ParsePolicy("Illegal SetPolicy Request Json".into()))?;
    let policy = request
        .get("policy")
        .ok_or_else(|| {
            KbsError::ParsePolicy("No `policy` field inside SetPolicy Request Json".into())
        })?
        .as_str()
        .ok_or_else(|| {
            KbsError::ParsePolicy("`policy` field is not a string in SetPolicy Request Json".into())
        })?;
    let rego = decode_policy(policy, KbsError::ParsePolicy)?;
    // Checked to compile, audited, then stored.
    crate::policy::ResourcePolicy::new(&rego)?;
    state
        .audit
        .append(
            Kind::ResourcePolicySet,
            &admin.actor(addr),
            json!({"sha256": sha256_hex(rego.as_bytes()), "bytes": rego.len()}),
        )
        .await?;
    match &state.pg {
        // Every replica (this one too) takes it from the database on its next resource
        // request.
        Some(pg) => {
            pg.put_policy(crate::pg::RESOURCE_POLICY, &rego).await?;
            state.sync_resource_policy().await?;
        }
        None => state.resource_policy.replace(&rego)?,
    }
    tracing::info!("resource policy replaced");
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
struct AttestationPolicyUpload {
    policy: String,
    #[serde(default)]
    policy_id: Option<String>,
}

/// `POST /kbs/v0/attestation-policy`: stores an attestation policy by id.
pub async fn set_attestation_policy(
    State(state): State<Shared>,
    Peer(addr): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KbsError> {
    let admin = state.admin.check(&headers)?;
    let upload: AttestationPolicyUpload = serde_json::from_slice(&body)
        .map_err(|e| KbsError::Attestation(format!("set policy: parse set policy request: {e}")))?;
    let id = upload
        .policy_id
        .unwrap_or_else(|| crate::appraise::ACTIVE_POLICY.into());
    let text = decode_policy(&upload.policy, KbsError::Attestation)?;
    crate::ear_policy::AttestationPolicy::parse(&text)
        .map_err(|e| KbsError::Attestation(format!("set attestation policy {id:?}: {e}")))?;
    state
        .audit
        .append(
            Kind::AttestationPolicySet,
            &admin.actor(addr),
            json!({"policy_id": id, "sha256": sha256_hex(text.as_bytes()), "bytes": text.len()}),
        )
        .await?;
    match &state.pg {
        Some(pg) => {
            let id = if id == "default" {
                crate::appraise::ACTIVE_POLICY
            } else {
                &id
            };
            pg.put_policy(id, &text).await?;
            state.sync_appraiser().await?;
        }
        None => state.appraiser.set_policy(&id, &text)?,
    }
    tracing::info!(policy_id = %id, "attestation policy stored");
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
struct ReferenceValueMessage {
    #[serde(default = "default_version")]
    version: String,
    #[serde(rename = "type")]
    kind: String,
    payload: String,
}

fn default_version() -> String {
    RVPS_MESSAGE_VERSION.into()
}

/// Reads a reference-value message: Trustee's RVPS `Message` with the `sample`
/// extractor's payload (T:`rvps/src/extractors/sample/mod.rs`), an object of names to
/// any JSON values, or the `corim` extractor's (T:`rvps/src/extractors/corim/mod.rs`),
/// a CoRIM whose reference triples give values named as Trustee names them (and, for
/// our own CoRIMs, as the `sample` form names them: [`reference_values::corim`]).
pub fn reference_values(body: &[u8]) -> Result<BTreeMap<String, Value>, KbsError> {
    let rvps = |e: String| KbsError::Rvps(format!("Failed to register reference value: {e}"));
    let message: ReferenceValueMessage =
        serde_json::from_slice(body).map_err(|e| rvps(format!("parse message: {e}")))?;
    if message.version != RVPS_MESSAGE_VERSION {
        return Err(rvps(format!(
            "Version unmatched! Need {RVPS_MESSAGE_VERSION}, given {}.",
            message.version
        )));
    }
    if message.kind == "corim" {
        return reference_values::corim_values(&BTreeMap::new(), &message.payload)
            .map_err(|e| rvps(e.to_string()));
    }
    if message.kind != "sample" {
        return Err(rvps(format!(
            "type {:?}: only the \"sample\" provenance ({{name: value}}), \"corim\" and signed \"dsse\" bundles are supported",
            message.kind
        )));
    }
    let payload = STANDARD
        .decode(&message.payload)
        .map_err(|e| rvps(format!("base64 decode: {e}")))?;
    serde_json::from_slice(&payload)
        .map_err(|e| rvps(format!("deserialize sample provenance: {e}")))
}

/// Whether `body` is a message of type `kind`.
fn is_kind(body: &[u8], kind: &str) -> bool {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(rename = "type")]
        kind: String,
    }
    serde_json::from_slice::<Kind>(body).is_ok_and(|k| k.kind == kind)
}

/// `POST /kbs/v0/reference-value`: registers `sample` reference values, or the values
/// of a signed bundle (type `dsse`, [`reference_values::open`]): its signature checked
/// against `[rvps] trusted_keys`, refused once expired; its values count until then.
/// A refused bundle stores nothing.
pub async fn set_reference_value(
    State(state): State<Shared>,
    Peer(addr): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, KbsError> {
    let admin = state.admin.check(&headers)?;
    let digests = |values: &BTreeMap<String, Value>| -> Value {
        values
            .iter()
            .map(|(name, value)| (name.clone(), json!(json_sha256(value))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    if is_kind(&body, reference_values::MESSAGE_TYPE) {
        let opened = reference_values::open(&body, &state.rv_keys, chrono::Utc::now())
            .map_err(|e| KbsError::Rvps(format!("Failed to register reference value: {e}")))?;
        let p = opened.statement.predicate;
        let values = opened.values;
        tracing::info!(
            names = ?values.keys().collect::<Vec<_>>(),
            image = %p.image.manifest_digest,
            expires = %p.expires,
            "signed reference values registered"
        );
        state
            .audit
            .append(
                Kind::ReferenceValueSet,
                &admin.actor(addr),
                json!({"type": reference_values::MESSAGE_TYPE,
                       "values": digests(&values),
                       "expires": opened.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
            )
            .await?;
        match &state.pg {
            Some(pg) => {
                pg.put_reference_values(&values, Some(opened.expires.timestamp()))
                    .await?;
                state.sync_appraiser().await?;
            }
            None => state
                .appraiser
                .set_signed_reference_values(values, opened.expires.timestamp()),
        }
        return Ok(StatusCode::OK.into_response());
    }
    let values = reference_values(&body)?;
    let kind = if is_kind(&body, "corim") {
        "corim"
    } else {
        "sample"
    };
    tracing::info!(names = ?values.keys().collect::<Vec<_>>(), kind, "reference values registered");
    state
        .audit
        .append(
            Kind::ReferenceValueSet,
            &admin.actor(addr),
            json!({"type": kind, "values": digests(&values)}),
        )
        .await?;
    match &state.pg {
        Some(pg) => {
            pg.put_reference_values(&values, None).await?;
            state.sync_appraiser().await?;
        }
        None => state.appraiser.set_reference_values(values),
    }
    Ok(StatusCode::OK.into_response())
}

fn no_such_value(id: &str) -> KbsError {
    KbsError::Rvps(format!(
        "Failed to get reference_values: No reference value found for the given id: {id}"
    ))
}

/// `GET /kbs/v0/reference-value/<name>`: the value as registered.
pub async fn get_reference_value(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Peer(addr): Peer,
    headers: HeaderMap,
) -> Result<Response, KbsError> {
    let admin = state.admin.check(&headers)?;
    state
        .audit
        .append(
            Kind::ReferenceValueRead,
            &admin.actor(addr),
            json!({"name": id}),
        )
        .await?;
    state.sync_appraiser().await?;
    let value = state
        .appraiser
        .reference_value(&id)
        .ok_or_else(|| no_such_value(&id))?;
    Ok(json_response(StatusCode::OK, &value))
}

/// `DELETE /kbs/v0/reference-value/<name>` (verdictd only).
pub async fn delete_reference_value(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Peer(addr): Peer,
    headers: HeaderMap,
) -> Result<Response, KbsError> {
    let admin = state.admin.check(&headers)?;
    state
        .audit
        .append(
            Kind::ReferenceValueDelete,
            &admin.actor(addr),
            json!({"name": id}),
        )
        .await?;
    let existed = match &state.pg {
        Some(pg) => {
            let existed = pg.delete_reference_value(&id).await?;
            state.sync_appraiser().await?;
            existed
        }
        None => state.appraiser.delete_reference_value(&id),
    };
    if !existed {
        return Err(no_such_value(&id));
    }
    tracing::info!(name = %id, "reference value deleted");
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message `kbs-client config set-sample-reference-value` sends
    /// (T:tools/kbs-client/src/lib.rs set_sample_rv: `{key: value}`, standard base64).
    fn kbs_client_message(name: &str, value: Value) -> Vec<u8> {
        json!({"version": "0.1.0", "type": "sample",
               "payload": STANDARD.encode(json!({name: value}).to_string())})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn reference_values_are_any_json() {
        // `NAME 1 --as-integer --as-single-value`, `--as-bool`, and the default list.
        for value in [json!(1), json!(true), json!(["1"]), json!({"a": [1]})] {
            let v = reference_values(&kbs_client_message("x", value.clone())).unwrap();
            assert_eq!(v["x"], value);
        }
        for (body, want) in [
            (b"{".to_vec(), "parse message"),
            (
                json!({"version": "0.2.0", "type": "sample", "payload": ""})
                    .to_string()
                    .into_bytes(),
                "Version unmatched",
            ),
            (
                json!({"type": "swid", "payload": ""})
                    .to_string()
                    .into_bytes(),
                "swid",
            ),
            (
                json!({"type": "sample", "payload": "!!"})
                    .to_string()
                    .into_bytes(),
                "base64",
            ),
            (
                json!({"type": "sample", "payload": STANDARD.encode("[1]")})
                    .to_string()
                    .into_bytes(),
                "provenance",
            ),
        ] {
            let err = reference_values(&body).unwrap_err();
            assert_eq!(err.variant(), "RvpsError");
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
    }
}
