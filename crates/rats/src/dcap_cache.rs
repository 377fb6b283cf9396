//! The DCAP verification fast path: what a full `dcap-qvl` verification established
//! about a quote's collateral and platform, kept by content hash and validity window,
//! so that the next quote from that platform against that collateral costs only its
//! own two signatures.
//!
//! A cold verification (`dcap-qvl`'s `verify_impl`, dcap-qvl 0.7.1 `src/verify.rs`)
//! checks, besides the quote's own signatures: both CRLs, the TCB signing chain, the
//! TCB info and QE identity signatures and JSON, the PCK chain to the root with
//! revocation, and then matches the platform's and the QE's TCB levels. All of that is
//! a function of the collateral bytes, the PCK chain and a few quote fields, and of the
//! time only through validity windows. An entry is the outcome of such a verification,
//! keyed by SHA-256 over exactly those inputs ([`CacheKey`]):
//!
//! - the root CA and every collateral byte (TCB info, its signature and issuer chain;
//!   QE identity, signature and chain; both CRLs and the PCK CRL issuer chain);
//! - the TEE, the quote's 48-byte header (version, key type, TEE type, QE vendor, …:
//!   what `verify_impl` checks before step 1);
//! - the PCK certificate chain the quote carries (certification data type 5; its leaf
//!   gives the PPID, CPUSVN, PCESVN and FMSPC the TCB is matched with, and its CA the
//!   revocation checks);
//! - the QE report's fields the QE identity is matched with (`verify_qe_identity_policy`:
//!   MRSIGNER, ATTRIBUTES, ISVPRODID, MISCSELECT, ISVSVN);
//! - the report body's fields the TCB and attribute checks read: the body layout, and
//!   for a TD `tee_tcb_svn` (and `tee_tcb_svn2`), `mr_signer_seam`, `seam_attributes`
//!   (`match_platform_tcb`, `verify_tdx_module_identity`), `td_attributes` and
//!   `mr_servicetd` (`validate_attrs`); for an enclave its ATTRIBUTES.
//!
//! An entry holds the TCB status, advisories and collateral claims that verification
//! produced, the PCK certificate's public key, and the window `[latest issue date,
//! earliest expiration)` `dcap-qvl` computed over every dated item it checked (both
//! CRLs, TCB info, QE identity and the certificates of every verified chain, the PCK
//! chain included). A hit re-checks, at the caller's time: that time is inside the
//! window (else the quote is verified cold, and expired collateral fails as it always
//! did), the QE report's signature by the cached PCK key, the QE report data binding
//! the attestation key (SHA-256 of key ‖ QE authentication data), and the quote's
//! signature by that key. Anything else, or any of those failing, falls back to the
//! full verification, so every refusal is `dcap-qvl`'s own, with its own message.
//!
//! The platform is part of the key, so each platform's first quote against new
//! collateral is verified in full once: `dcap-qvl` 0.7 keeps its steps private (one
//! `verify_impl` from CRL parsing to TCB matching), and checking a new PCK certificate
//! against a cached CA here would mean re-implementing its webpki path checks and
//! Intel's TCB-level matching beside it. With the key as it is, every accepted quote's
//! chain, revocation and TCB outcome are ones `dcap-qvl` itself computed.
//!
//! Only verifications that succeeded are inserted, never on a failure. Quotes whose
//! PCK chain is not in the quote (certification data other than type 5, or collateral
//! with its own `pck_certificate_chain`, which `dcap-qvl` prefers) are always verified
//! cold. The cache is bounded (least recently used entries go first) and shared by
//! threads behind one mutex held only to look up or insert.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use dcap_qvl::quote::{AuthDataV3, Quote, Report};
use dcap_qvl::QuoteCollateralV3;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use sha2::{Digest as _, Sha256};

use crate::{ClaimValue, Tee, Verified};

/// Entries the process-wide cache ([`CollateralCache::global`]) keeps: one per platform
/// (PCK certificate) and collateral set, about 2 KiB each.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Offset of REPORTDATA in the QE's report (an SGX report body).
const QE_REPORT_DATA_AT: usize = 320;
/// The QE authentication data `dcap-qvl` accepts (`AUTHENTICATION_DATA_LEN`).
const QE_AUTH_DATA_LEN: usize = 32;
/// Certification data type 5: the PCK chain, in PEM, in the quote.
const PCK_CERT_CHAIN: u16 = 5;

/// The SHA-256 a cache entry is found by (see the module documentation for what it
/// covers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey(pub [u8; 32]);

/// What a cold verification established, for quotes with the same [`CacheKey`].
#[derive(Debug)]
pub(crate) struct Entry {
    /// The latest issue date (`issueDate`, `thisUpdate`, `notBefore`), Unix seconds.
    not_before: u64,
    /// The earliest expiration (`nextUpdate`, `notAfter`), Unix seconds; the entry is
    /// used strictly before it.
    not_after: u64,
    /// The PCK certificate's key (SEC1, uncompressed), which signs the QE report.
    pck_key: Vec<u8>,
    tcb_status: String,
    advisory_ids: Vec<String>,
    /// The claims the collateral gave (`dcap_*`, see `dcap_claims`).
    claims: BTreeMap<String, ClaimValue>,
}

impl Entry {
    /// An entry for a quote `dcap-qvl` verified with this outcome; `None` when the PCK
    /// key cannot be read or does not sign this quote's QE report (then `dcap-qvl` read
    /// another chain than ours, and nothing is cached).
    pub(crate) fn new(
        quote: &Quote,
        window: (u64, u64),
        tcb_status: String,
        advisory_ids: Vec<String>,
        claims: BTreeMap<String, ClaimValue>,
    ) -> Option<Entry> {
        let chain = dcap_qvl::intel::extract_cert_chain(quote).ok()?;
        let leaf = chain.first()?;
        use x509_parser::prelude::FromDer as _;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf).ok()?;
        let pck_key = cert.public_key().subject_public_key.data.to_vec();
        let auth = auth_v3(quote);
        ecdsa_p256(&pck_key, &auth.qe_report, &auth.qe_report_signature)?;
        Some(Entry {
            not_before: window.0,
            not_after: window.1,
            pck_key,
            tcb_status,
            advisory_ids,
            claims,
        })
    }

    /// Whether `now` is inside the window.
    fn covers(&self, now: u64) -> bool {
        self.not_before <= now && now < self.not_after
    }

    /// The quote's own checks against this entry, as `dcap-qvl` does them (steps 4, 5
    /// and 7 of `verify_impl`), and its claims; `None` when any fails.
    pub(crate) fn verify(&self, tee: Tee, raw: &[u8], quote: &Quote) -> Option<Verified> {
        let auth = auth_v3(quote);
        // Step 4: the QE report, signed by the PCK key.
        ecdsa_p256(&self.pck_key, &auth.qe_report, &auth.qe_report_signature)?;
        // Step 5: the QE report binds the attestation key.
        if auth.qe_auth_data.data.len() != QE_AUTH_DATA_LEN {
            return None;
        }
        let mut h = Sha256::new();
        h.update(auth.ecdsa_attestation_key);
        h.update(&auth.qe_auth_data.data);
        if h.finalize()[..] != auth.qe_report[QE_REPORT_DATA_AT..QE_REPORT_DATA_AT + 32] {
            return None;
        }
        // Step 7: the quote, signed by the attestation key.
        let mut key = [0x04u8; 65];
        key[1..].copy_from_slice(&auth.ecdsa_attestation_key);
        let signed = raw.get(..quote.signed_length())?;
        ecdsa_p256(&key, signed, &auth.ecdsa_signature)?;
        let mut v = crate::dcap::body_claims(tee, &quote.report).ok()?;
        v.tcb_status = Some(self.tcb_status.clone());
        v.advisory_ids = self.advisory_ids.clone();
        v.claims
            .extend(self.claims.iter().map(|(k, c)| (k.clone(), c.clone())));
        Some(v)
    }
}

/// ECDSA P-256 with SHA-256, `key` an uncompressed SEC1 point and `sig` the raw
/// `r ‖ s` the quote carries. ring's, about four times as fast here as the RustCrypto
/// verifier `dcap-qvl` is built with (the same standard check: both refuse r or s
/// outside [1, n−1] and points off the curve).
fn ecdsa_p256(key: &[u8], message: &[u8], sig: &[u8]) -> Option<()> {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(message, sig)
        .ok()
}

/// The quote's authentication data as `dcap-qvl` reads it (v4/v5 quotes' QE report
/// certification data flattened into the v3 shape).
fn auth_v3(quote: &Quote) -> AuthDataV3 {
    quote.auth_data.clone().into_v3()
}

/// The key of the DCAP quote `raw` of TEE `tee` against `collateral` and `root` (the
/// trust anchor's DER); `None` for bytes that are no quote and for a quote the fast
/// path does not take (its PCK chain is not in the quote, or the collateral carries
/// one).
pub fn cache_key(
    tee: Tee,
    raw: &[u8],
    collateral: &QuoteCollateralV3,
    root: &[u8],
) -> Option<CacheKey> {
    key_of(tee, raw, &Quote::parse(raw).ok()?, collateral, root)
}

/// [`cache_key`] of `raw` parsed as `quote`.
pub(crate) fn key_of(
    tee: Tee,
    raw: &[u8],
    quote: &Quote,
    collateral: &QuoteCollateralV3,
    root: &[u8],
) -> Option<CacheKey> {
    if collateral.pck_certificate_chain.is_some() {
        return None;
    }
    let auth = auth_v3(quote);
    if auth.certification_data.cert_type != PCK_CERT_CHAIN {
        return None;
    }
    let header = raw.get(..48)?;
    let mut h = Sha256::new();
    // Every field length-prefixed, so no two inputs hash the same bytes.
    let mut put = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    put(b"rats dcap collateral cache v1");
    put(root);
    let c = collateral;
    for b in [
        c.pck_crl_issuer_chain.as_bytes(),
        &c.root_ca_crl,
        &c.pck_crl,
        c.tcb_info_issuer_chain.as_bytes(),
        c.tcb_info.as_bytes(),
        &c.tcb_info_signature,
        c.qe_identity_issuer_chain.as_bytes(),
        c.qe_identity.as_bytes(),
        &c.qe_identity_signature,
    ] {
        put(b);
    }
    put(tee.name().as_bytes());
    put(header);
    put(&auth.certification_data.body.data);
    // The QE report fields the QE identity is matched with (SGX report body offsets:
    // MISCSELECT 16, ATTRIBUTES 48, MRSIGNER 128, ISVPRODID 256, ISVSVN 258).
    let qe = &auth.qe_report;
    for (at, len) in [(16, 4), (48, 16), (128, 32), (256, 2), (258, 2)] {
        put(&qe[at..at + len]);
    }
    match &quote.report {
        Report::SgxEnclave(r) => {
            put(b"sgx");
            put(&r.attributes);
        }
        r => {
            let td = r.as_td10()?;
            put(match r {
                Report::TD10(_) => b"td10",
                Report::TD15(_) => b"td15",
                _ => b"td15ex",
            });
            put(&td.tee_tcb_svn);
            put(&td.mr_signer_seam);
            put(&td.seam_attributes);
            put(&td.td_attributes);
            if let Some(r15) = r.as_td15() {
                put(&r15.tee_tcb_svn2);
                put(&r15.mr_service_td);
            }
        }
    }
    Some(CacheKey(h.finalize().into()))
}

/// How often the cache was asked, and what it answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Quotes verified from an entry.
    pub hits: u64,
    /// Lookups that found no entry, or one whose window does not cover the time.
    pub misses: u64,
    /// Entries found and in their window whose quote failed its own checks (then
    /// verified cold).
    pub rejected: u64,
    /// Entries added after a cold verification succeeded.
    pub inserts: u64,
    /// Entries currently held.
    pub len: usize,
}

struct Slot {
    entry: Arc<Entry>,
    used: u64,
}

#[derive(Default)]
struct Slots {
    map: HashMap<CacheKey, Slot>,
    tick: u64,
}

/// A bounded, thread-safe cache of verified DCAP collateral outcomes (see the module
/// documentation). [`crate::verify`] uses [`CollateralCache::global`];
/// [`crate::verify_with_cache`] takes another or none.
pub struct CollateralCache {
    capacity: AtomicUsize,
    slots: Mutex<Slots>,
    hits: AtomicU64,
    misses: AtomicU64,
    rejected: AtomicU64,
    inserts: AtomicU64,
}

impl CollateralCache {
    /// An empty cache keeping at most `capacity` entries (0 keeps none).
    pub fn new(capacity: usize) -> CollateralCache {
        CollateralCache {
            capacity: AtomicUsize::new(capacity),
            slots: Mutex::new(Slots::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
        }
    }

    /// The process-wide cache [`crate::verify`] uses, [`DEFAULT_CAPACITY`] entries.
    pub fn global() -> &'static CollateralCache {
        static GLOBAL: OnceLock<CollateralCache> = OnceLock::new();
        GLOBAL.get_or_init(|| CollateralCache::new(DEFAULT_CAPACITY))
    }

    /// Drops every entry and keeps at most `capacity` from now on (0 disables).
    pub fn set_capacity(&self, capacity: usize) {
        self.capacity.store(capacity, Ordering::Relaxed);
        self.clear();
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.lock().map.clear();
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            inserts: self.inserts.load(Ordering::Relaxed),
            len: self.lock().map.len(),
        }
    }

    /// Whether an entry for `key` is held whose window covers `now`.
    pub fn contains(&self, key: &CacheKey, now: u64) -> bool {
        self.lock()
            .map
            .get(key)
            .is_some_and(|s| s.entry.covers(now))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // The map stays consistent whatever a panicking holder did: every change is one
        // insert or remove.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `key` if its window covers `now`.
    pub(crate) fn get(&self, key: &CacheKey, now: u64) -> Option<Arc<Entry>> {
        let mut slots = self.lock();
        slots.tick += 1;
        let tick = slots.tick;
        let found = slots.map.get_mut(key).and_then(|s| {
            s.used = tick;
            s.entry.covers(now).then(|| s.entry.clone())
        });
        if found.is_none() {
            self.misses.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps `entry` for `key`, dropping the least recently used entry when full.
    pub(crate) fn insert(&self, key: CacheKey, entry: Entry) {
        let capacity = self.capacity.load(Ordering::Relaxed);
        if capacity == 0 {
            return;
        }
        let mut slots = self.lock();
        slots.tick += 1;
        let used = slots.tick;
        if !slots.map.contains_key(&key) && slots.map.len() >= capacity {
            let oldest = slots
                .map
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                slots.map.remove(&k);
            }
        }
        slots.map.insert(
            key,
            Slot {
                entry: Arc::new(entry),
                used,
            },
        );
        self.inserts.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for CollateralCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollateralCache")
            .field("capacity", &self.capacity.load(Ordering::Relaxed))
            .field("stats", &self.stats())
            .finish()
    }
}
