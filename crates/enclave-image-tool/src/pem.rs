//! The one PEM block a key file holds (openssl may put `EC PARAMETERS` before it).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The DER inside the first `-----BEGIN <label>-----` block whose label ends in
/// `PRIVATE KEY`, and that label.
///
/// Errors: a one-line reason (not text, no such block, bad base64).
pub fn private_key_der(pem: &[u8]) -> Result<(String, Vec<u8>), String> {
    let text = std::str::from_utf8(pem).map_err(|_| "not PEM text".to_string())?;
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(end_label) = after.find("-----") else {
            break;
        };
        let label = &after[..end_label];
        let body_start = end_label + 5;
        let end_marker = format!("-----END {label}-----");
        let Some(body_end) = after[body_start..].find(&end_marker) else {
            return Err(format!("no {end_marker:?}"));
        };
        if label.ends_with("PRIVATE KEY") {
            let b64: String = after[body_start..body_start + body_end]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let der = STANDARD
                .decode(b64)
                .map_err(|e| format!("{label}: bad base64: {e}"))?;
            return Ok((label.to_string(), der));
        }
        rest = &after[body_start + body_end + end_marker.len()..];
    }
    Err("no PEM private key block".into())
}
