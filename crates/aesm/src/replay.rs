//! A stand-in aesmd for machines without SGX: it speaks aesmd's protocol on a unix
//! socket and answers `GetQuoteEx` with one real quote, recorded on SGX hardware, when
//! asked to quote the REPORT that quote carries. It checks what a real aesmd checks
//! (the ECDSA key id, the buffer sizes, `required` fields) and records what it was asked.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use prost::Message;

use crate::proto::*;
use crate::{
    report_of_quote, ALGORITHM_ID_AT, ALG_ECDSA_P256, ATT_KEY_ID_SIZE, REPORT_BODY_SIZE,
    REPORT_SIZE, TARGET_INFO_SIZE,
};

const PARAMETER: u32 = 3;
const MESSAGE: u32 = 22;
const UNSUPPORTED_KEY: u32 = 38;
const INVALID_REPORT: u32 = 47;
/// aesmd hands back its whole buffer, larger than the quote.
const SLACK: usize = 64;

/// The requests of one quote, in the order the client sends them.
pub const QUOTE_EXCHANGE: [&str; 6] = [
    "GetSupportedAttKeyIDNum",
    "GetSupportedAttKeyIDs",
    "InitQuoteEx",
    "InitQuoteEx",
    "GetQuoteSizeEx",
    "GetQuoteEx",
];

/// How the stand-in behaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Answer this request (by its aesm name, e.g. "GetQuoteEx") with this error code.
    pub fail: Option<(&'static str, u32)>,
    /// Return the quote whatever REPORT was sent (a host swapping quotes).
    pub quote_any_report: bool,
    /// List no ECDSA key (a machine with only EPID).
    pub no_ecdsa_key: bool,
}

/// A running stand-in; stopped, and its socket removed, when dropped.
pub struct ReplayAesmd {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<&'static str>>>,
    thread: Option<JoinHandle<()>>,
}

struct State {
    quote: Vec<u8>,
    key_ids: Vec<u8>,
    target_info: Vec<u8>,
    behaviour: Behaviour,
}

impl ReplayAesmd {
    /// Serves `quote` on `socket`.
    pub fn start(socket: &Path, quote: Vec<u8>, behaviour: Behaviour) -> std::io::Result<Self> {
        report_of_quote(&quote).map_err(std::io::Error::other)?;
        let listener = UnixListener::bind(socket)?;
        // An EPID key first, then the ECDSA P-256 one, as aesmd lists them.
        let mut key_ids = vec![0u8; 2 * ATT_KEY_ID_SIZE];
        let ecdsa = &mut key_ids[ATT_KEY_ID_SIZE..];
        ecdsa[4] = 32; // mrsigner_length
        ecdsa[6..38].copy_from_slice(&[0x8c; 32]);
        if !behaviour.no_ecdsa_key {
            ecdsa[ALGORITHM_ID_AT..ALGORITHM_ID_AT + 4]
                .copy_from_slice(&ALG_ECDSA_P256.to_le_bytes());
        }
        let state = Arc::new(State {
            target_info: qe_target_info(&quote),
            quote,
            key_ids,
            behaviour,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(mut conn) = conn {
                        // A client that never writes must not keep the stand-in from
                        // stopping.
                        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                        let _ = serve(&mut conn, &state, &seen);
                    }
                }
            })
        };
        Ok(ReplayAesmd {
            path: socket.to_path_buf(),
            stop,
            seen,
            thread: Some(thread),
        })
    }

    /// The requests answered so far, by aesm name.
    pub fn requests(&self) -> Vec<&'static str> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for ReplayAesmd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The quoting enclave's TARGETINFO: its MRENCLAVE and ATTRIBUTES, taken from the QE
/// report inside the quote's signature data (v3/v4: after the 64-byte signature and
/// the 64-byte attestation key).
fn qe_target_info(quote: &[u8]) -> Vec<u8> {
    let mut ti = vec![0u8; TARGET_INFO_SIZE];
    let qe = 48 + REPORT_BODY_SIZE + 4 + 128;
    if let Some(body) = quote.get(qe..qe + REPORT_BODY_SIZE) {
        ti[..32].copy_from_slice(&body[64..96]); // MRENCLAVE
        ti[32..48].copy_from_slice(&body[48..64]); // ATTRIBUTES
        ti[52..56].copy_from_slice(&body[16..20]); // MISCSELECT
    }
    ti
}

fn serve(
    conn: &mut UnixStream,
    state: &State,
    seen: &Mutex<Vec<&'static str>>,
) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len)?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    conn.read_exact(&mut body)?;
    let response = match Request::decode(body.as_slice()) {
        Ok(req) => answer(req, state, seen),
        Err(_) => Response {
            unsupported_request_response: Some(UnsupportedRequestResponse {
                error_code: Some(MESSAGE),
            }),
            ..Default::default()
        },
    };
    let body = response.encode_to_vec();
    conn.write_all(&(body.len() as u32).to_le_bytes())?;
    conn.write_all(&body)
}

fn answer(req: Request, state: &State, seen: &Mutex<Vec<&'static str>>) -> Response {
    let b = &state.behaviour;
    let ecdsa_key = &state.key_ids[ATT_KEY_ID_SIZE..];
    let name = if req.get_supported_att_key_id_num_req.is_some() {
        "GetSupportedAttKeyIDNum"
    } else if req.get_supported_att_key_ids_req.is_some() {
        "GetSupportedAttKeyIDs"
    } else if req.init_quote_ex_req.is_some() {
        "InitQuoteEx"
    } else if req.get_quote_size_ex_req.is_some() {
        "GetQuoteSizeEx"
    } else if req.get_quote_ex_req.is_some() {
        "GetQuoteEx"
    } else {
        "unsupported"
    };
    seen.lock().unwrap_or_else(|p| p.into_inner()).push(name);
    let forced = b.fail.filter(|(n, _)| *n == name).map(|(_, c)| c);
    let code = |c: u32| Some(forced.unwrap_or(c));
    let mut r = Response::default();
    if let Some(_q) = req.get_supported_att_key_id_num_req {
        r.get_supported_att_key_id_num_res = Some(GetSupportedAttKeyIdNumResponse {
            error_code: code(0),
            att_key_id_num: Some(2),
        });
    } else if let Some(q) = req.get_supported_att_key_ids_req {
        let ok = q.buf_size == Some(state.key_ids.len() as u32);
        r.get_supported_att_key_ids_res = Some(GetSupportedAttKeyIdsResponse {
            error_code: code(if ok { 0 } else { PARAMETER }),
            att_key_ids: ok.then(|| state.key_ids.clone()),
        });
    } else if let Some(q) = req.init_quote_ex_req {
        let c = match (q.att_key_id.as_deref(), q.b_pub_key_id, q.buf_size) {
            (_, None, _) => MESSAGE,
            (Some(k), _, _) if k != ecdsa_key => UNSUPPORTED_KEY,
            (None, _, _) => UNSUPPORTED_KEY,
            (_, Some(true), size) if size != Some(32) => PARAMETER,
            _ => 0,
        };
        let with_key = q.b_pub_key_id == Some(true);
        r.init_quote_ex_res = Some(InitQuoteExResponse {
            error_code: code(c),
            target_info: (c == 0).then(|| state.target_info.clone()),
            pub_key_id_size: Some(32),
            pub_key_id: (c == 0 && with_key).then(|| vec![0x11; 32]),
        });
    } else if let Some(q) = req.get_quote_size_ex_req {
        let c = if q.att_key_id.as_deref() == Some(ecdsa_key) {
            0
        } else {
            UNSUPPORTED_KEY
        };
        r.get_quote_size_ex_res = Some(GetQuoteSizeExResponse {
            error_code: code(c),
            quote_size: Some((state.quote.len() + SLACK) as u32),
        });
    } else if let Some(q) = req.get_quote_ex_req {
        let report = q.report.unwrap_or_default();
        let size = q.buf_size.unwrap_or(0) as usize;
        let c = if q.att_key_id.as_deref() != Some(ecdsa_key) {
            UNSUPPORTED_KEY
        } else if report.len() != REPORT_SIZE || size < state.quote.len() {
            PARAMETER
        } else if !b.quote_any_report
            && report[..REPORT_BODY_SIZE]
                != report_of_quote(&state.quote).expect("checked at start")[..REPORT_BODY_SIZE]
        {
            INVALID_REPORT
        } else {
            0
        };
        r.get_quote_ex_res = Some(GetQuoteExResponse {
            error_code: code(c),
            quote: (c == 0 && forced.is_none()).then(|| {
                let mut q = state.quote.clone();
                q.resize(size, 0);
                q
            }),
            qe_report_info: None,
        });
    } else {
        r.unsupported_request_response = Some(UnsupportedRequestResponse {
            error_code: Some(1),
        });
    }
    r
}
