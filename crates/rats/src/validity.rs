//! Validity windows of collateral and certificates, said the way people read them:
//! which item, which of its dates (RFC 3339, UTC), and the verification time, e.g.
//! "collateral expired: the PCK CRL's nextUpdate 2026-04-03T11:21:57Z is before the
//! verification time 2026-12-01T00:00:00Z". dcap-qvl and webpki report the same
//! facts as `CrlExpired { time: UnixTime(…), next_update: UnixTime(…) }` or "QE
//! Identity expired"; [`explain_dcap`] finds the item in the collateral instead.

use ::time::format_description::well_known::Rfc3339;
use ::time::OffsetDateTime;
use dcap_qvl::QuoteCollateralV3;
use x509_parser::prelude::{parse_x509_crl, FromDer, Pem, X509Certificate};

/// Unix seconds as RFC 3339 in UTC (`2026-04-03T11:21:57Z`); the number itself if it is
/// outside the years the format can write.
pub fn rfc3339(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{secs} (Unix seconds)"))
}

/// One item outside its validity window at the verification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfWindow {
    /// The item, as a reader names it: "the PCK CRL", "the TCB info",
    /// "the certificate CN=Intel SGX PCK Certificate, …".
    pub what: String,
    /// The date that was passed: `nextUpdate`, `notAfter`, `issueDate`, `notBefore`, ….
    pub field: &'static str,
    /// That date, Unix seconds.
    pub at: i64,
    /// True if the window ended before the verification time, false if it starts after.
    pub expired: bool,
}

impl OutOfWindow {
    /// The one-line reason, starting "collateral expired:" or "collateral not yet valid:"
    /// when `collateral`, else "expired:" / "not yet valid:".
    pub fn reason(&self, now: i64, collateral: bool) -> String {
        let (state, relation) = if self.expired {
            ("expired", "before")
        } else {
            ("not yet valid", "after")
        };
        let prefix = if collateral { "collateral " } else { "" };
        format!(
            "{prefix}{state}: {}'s {} {} is {relation} the verification time {}",
            self.what,
            self.field,
            rfc3339(self.at),
            rfc3339(now)
        )
    }
}

/// `what`, valid from `from` (named `from_field`) to `to` (`to_field`), checked at `now`.
pub fn window(
    what: &str,
    (from_field, from): (&'static str, i64),
    (to_field, to): (&'static str, i64),
    now: i64,
) -> Option<OutOfWindow> {
    let out = |field, at, expired| {
        Some(OutOfWindow {
            what: what.to_string(),
            field,
            at,
            expired,
        })
    };
    if now < from {
        out(from_field, from, false)
    } else if now > to {
        out(to_field, to, true)
    } else {
        None
    }
}

/// A certificate's `notBefore`..`notAfter` at `now`, named by `what` or, if empty, by its
/// subject's common name.
pub fn certificate(what: &str, cert: &X509Certificate<'_>, now: i64) -> Option<OutOfWindow> {
    let what = if what.is_empty() {
        // The common name reads as a name ("Intel SGX PCK Certificate"); a subject
        // without one is given whole.
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        format!(
            "the certificate \"{}\"",
            cn.unwrap_or_else(|| cert.subject().to_string())
        )
    } else {
        what.to_string()
    };
    let v = cert.validity();
    window(
        &what,
        ("notBefore", v.not_before.timestamp()),
        ("notAfter", v.not_after.timestamp()),
        now,
    )
}

fn crl_window(what: &str, bytes: &[u8], now: i64) -> Option<OutOfWindow> {
    let der = crate::dcap::crl_der(bytes).ok()?;
    let (_, crl) = parse_x509_crl(&der).ok()?;
    let next = crl.next_update().map(|t| t.timestamp()).unwrap_or(i64::MAX);
    window(
        what,
        ("thisUpdate", crl.last_update().timestamp()),
        ("nextUpdate", next),
        now,
    )
}

fn document_window(what: &str, json: &str, now: i64) -> Option<OutOfWindow> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Dates {
        issue_date: String,
        next_update: String,
    }
    let d: Dates = serde_json::from_str(json).ok()?;
    let secs = |s: &str| {
        OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp())
    };
    window(
        what,
        ("issueDate", secs(&d.issue_date)?),
        ("nextUpdate", secs(&d.next_update)?),
        now,
    )
}

fn chain_windows(chain: &[u8], now: i64, out: &mut Vec<OutOfWindow>) {
    for pem in Pem::iter_from_buffer(chain).flatten() {
        if let Ok(cert) = pem.parse_x509() {
            out.extend(certificate("", &cert, now));
        }
    }
}

/// Every item of DCAP collateral (and of the quote's PCK chain, DER certificates)
/// outside its window at `now`, in dcap-qvl's order of checks.
pub fn dcap_collateral(
    collateral: &QuoteCollateralV3,
    pck_chain: &[Vec<u8>],
    now: i64,
) -> Vec<OutOfWindow> {
    let mut out = Vec::new();
    out.extend(crl_window("the root CA CRL", &collateral.root_ca_crl, now));
    out.extend(crl_window("the PCK CRL", &collateral.pck_crl, now));
    chain_windows(collateral.pck_crl_issuer_chain.as_bytes(), now, &mut out);
    out.extend(document_window("the TCB info", &collateral.tcb_info, now));
    chain_windows(collateral.tcb_info_issuer_chain.as_bytes(), now, &mut out);
    out.extend(document_window(
        "the QE identity",
        &collateral.qe_identity,
        now,
    ));
    chain_windows(
        collateral.qe_identity_issuer_chain.as_bytes(),
        now,
        &mut out,
    );
    for der in pck_chain {
        if let Ok((_, cert)) = X509Certificate::from_der(der) {
            out.extend(certificate("", &cert, now));
        }
    }
    out.dedup();
    out
}

/// The Unix seconds following `key` in webpki's Debug text (`next_update: UnixTime(N)`).
fn unix_after(msg: &str, key: &str) -> Option<i64> {
    let rest = &msg[msg.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Writes every `UnixTime(N)` of webpki's Debug text as RFC 3339.
pub fn humanise_unix_times(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find("UnixTime(") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "UnixTime(".len()..];
        let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
        match (
            digits.parse::<i64>(),
            after[digits.len()..].starts_with(')'),
        ) {
            (Ok(n), true) => {
                out.push_str(&rfc3339(n));
                rest = &after[digits.len() + 1..];
            }
            _ => {
                out.push_str("UnixTime(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The reason for dcap-qvl's expiry error `msg` at `now`: the item of `found` (from
/// [`dcap_collateral`]) it is about, with its dates; without one, dcap-qvl's words with
/// dates in RFC 3339 and the verification time.
pub fn explain_dcap(msg: &str, found: &[OutOfWindow], now: i64) -> String {
    let m = msg.to_ascii_lowercase();
    let is = |w: &OutOfWindow, what: &str| w.what.contains(what);
    let pick = if m.contains("crlexpired") {
        let next = unix_after(msg, "next_update: UnixTime(");
        found
            .iter()
            .find(|w| is(w, "CRL") && Some(w.at) == next)
            .or_else(|| found.iter().find(|w| is(w, "CRL")))
    } else if m.contains("tcbinfo") || m.contains("tcb info") {
        found.iter().find(|w| is(w, "TCB info"))
    } else if m.contains("qe identity") {
        found.iter().find(|w| is(w, "QE identity"))
    } else if m.contains("cert") {
        found.iter().find(|w| is(w, "certificate"))
    } else {
        None
    };
    match pick.or(found.first()) {
        Some(w) => w.reason(now, true),
        None => format!(
            "collateral expired or not yet valid: {} at the verification time {}",
            humanise_unix_times(msg),
            rfc3339(now)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_rfc3339_utc() {
        assert_eq!(rfc3339(1_775_215_317), "2026-04-03T11:21:57Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn webpki_debug_times_are_humanised() {
        let msg = "CrlExpired { time: UnixTime(1796135129), next_update: UnixTime(1775215317) }";
        let h = humanise_unix_times(msg);
        assert_eq!(
            h,
            "CrlExpired { time: 2026-12-01T14:25:29Z, next_update: 2026-04-03T11:21:57Z }"
        );
        assert_eq!(humanise_unix_times("UnixTime(x"), "UnixTime(x");
    }

    #[test]
    fn windows_name_the_date_passed() {
        let w = window("the X", ("issueDate", 100), ("nextUpdate", 200), 300).unwrap();
        assert_eq!(
            w.reason(300, true),
            "collateral expired: the X's nextUpdate 1970-01-01T00:03:20Z is before the \
             verification time 1970-01-01T00:05:00Z"
        );
        let w = window("the X", ("issueDate", 100), ("nextUpdate", 200), 50).unwrap();
        assert!(w
            .reason(50, false)
            .starts_with("not yet valid: the X's issueDate"));
        assert!(window("the X", ("a", 100), ("b", 200), 150).is_none());
    }
}
