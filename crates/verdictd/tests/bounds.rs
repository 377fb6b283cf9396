//! Memory bounds that hold whatever unauthenticated clients send, against the real
//! binary: init-data is capped at 64 KiB, and the attested sessions' tokens are held
//! within `max_session_bytes` however large each token is.

use crate::common::*;
use kbs_protocol::jwe::TeeKeyPair;
use kbs_protocol::{Attestation, CompositeEvidence, InitData, RuntimeData};

/// VmRSS of a process, in KiB (from /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Initdata TOML (Trustee's form) of exactly `len` bytes: one `plain` entry padded.
fn init_data_of(len: usize) -> String {
    let head = "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\nplain = \"";
    let tail = "\"\n";
    format!("{head}{}{tail}", "a".repeat(len - head.len() - tail.len()))
}

/// A fresh session's auth, then its sample attestation carrying `init`.
fn attest_with(v: &Verdictd, init: &str) -> (Manual, u16, serde_json::Value) {
    let mut m = Manual::auth(v);
    let key = TeeKeyPair::generate();
    let digest = kbs_protocol::binding::digest(
        kbs_protocol::HashAlgorithm::Sha384,
        &m.nonce,
        &key.public_key(),
        "",
    )
    .unwrap();
    let attestation = Attestation {
        init_data: Some(InitData {
            format: "toml".into(),
            body: init.into(),
        }),
        runtime_data: RuntimeData {
            nonce: m.nonce.clone(),
            tee_pubkey: key.public_key(),
        },
        tee_evidence: CompositeEvidence {
            primary_evidence: serde_json::to_value(rats::SampleEvidence::new(&digest)).unwrap(),
            additional_evidence: String::new(),
        },
    };
    let (status, reply) = m.attest(serde_json::to_vec(&attestation).unwrap());
    (m, status, reply)
}

const LIMIT: usize = 64 * 1024;

#[test]
fn init_data_over_64_kib_is_refused_in_one_line() {
    let v = Verdictd::start(ADMIN_OPEN);
    let (_, status, reply) = attest_with(&v, &init_data_of(LIMIT));
    assert_eq!(status, 200, "{reply}");
    let (_, status, reply) = attest_with(&v, &init_data_of(LIMIT + 1));
    assert_eq!(status, 401, "{reply}");
    assert_eq!(error_kind(&reply), "AttestationError", "{reply}");
    let detail = reply["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("{}", LIMIT + 1)) && !detail.contains('\n'),
        "{detail}"
    );
}

#[test]
fn sessions_with_max_size_tokens_stay_within_the_byte_budget() {
    if postgres() {
        // The in-memory table's byte budget; the postgres one is bounded by count at
        // each sweep and held by the database.
        eprintln!("skipped: memory backend only (the session table's byte budget)");
        return;
    }
    const BUDGET_MIB: u64 = 8;
    const SESSIONS: usize = 800;
    let v = Verdictd::start(&format!(
        "{ADMIN_OPEN}[session]\nmax_session_bytes = {}\n",
        BUDGET_MIB << 20
    ));
    let pid = v.child.id();
    let init = init_data_of(LIMIT);
    // Warm up (allocator arenas, policy engine), then the baseline.
    for _ in 0..20 {
        assert_eq!(attest_with(&v, &init).1, 200);
    }
    let baseline = rss_kib(pid);
    let mut token_len = 0;
    let mut sessions = vec![];
    for _ in 0..SESSIONS {
        let (m, status, reply) = attest_with(&v, &init);
        assert_eq!(status, 200, "{reply}");
        token_len = reply["token"].as_str().unwrap().len();
        sessions.push(m);
    }
    let after = rss_kib(pid);
    let unbounded_kib = (SESSIONS * token_len / 1024) as u64;
    eprintln!(
        "tokens of {token_len} bytes; RSS {baseline} KiB -> {after} KiB after {SESSIONS} sessions (unbounded ~{unbounded_kib} KiB more)"
    );
    // The tokens are as large as init-data makes them, so that without the budget
    // the sessions would hold several times more than the budget.
    assert!(token_len > LIMIT, "{token_len}");
    assert!(unbounded_kib > 4 * (BUDGET_MIB << 10));
    // Growth within the budget plus allocator slack.
    assert!(
        after <= baseline + (BUDGET_MIB << 10) + 16 * 1024,
        "RSS grew from {baseline} KiB to {after} KiB"
    );
    // The newest session still answers by cookie alone; the oldest was evicted (401).
    let newest = sessions.last_mut().unwrap();
    let (status, body) = newest.attest(vec![]);
    assert_eq!(status, 200, "{body}");
    let oldest = &mut sessions[0];
    let (status, body) = call(
        &mut oldest.client,
        "GET",
        "/kbs/v0/resource/default/key/x",
        None,
        None,
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_kind(&body), "TokenNotFound", "{body}");
    v.stop();
}

#[test]
fn an_auth_flood_does_not_stop_an_honest_client() {
    const FLOOD: usize = 20_000;
    // Tables far smaller than the flood: a stored challenge would have been evicted.
    let v = Verdictd::start(&format!(
        "{ADMIN_OPEN}[session]\nmax_sessions = 100\nmax_challenges = 100\n"
    ));
    let mut honest = Manual::auth(&v);
    let mut flooder = v.client();
    let body = serde_json::to_vec(&kbs_protocol::AuthRequest::new("sample")).unwrap();
    let rt = rt();
    for _ in 0..FLOOD {
        let r = rt
            .block_on(flooder.request("POST", "/kbs/v0/auth", Some(body.clone()), None))
            .unwrap();
        assert_eq!(r.status, 200);
        flooder.forget_cookies();
    }
    let key = TeeKeyPair::generate();
    let n = honest.nonce.clone();
    let (status, reply) = honest.attest(Manual::attestation(&n, &key, &key, &n));
    assert_eq!(status, 200, "{reply}");
    // The challenge opens one session only: a second attestation with it gets the
    // same token back (as Trustee answers an attested session).
    let (status, again) = honest.attest(Manual::attestation(&n, &key, &key, &n));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["token"], reply["token"]);
    v.stop();
}
