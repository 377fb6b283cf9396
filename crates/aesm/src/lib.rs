//! A client of aesmd for SGX DCAP quotes: a local REPORT from the enclave, targeted at
//! the quoting enclave, turned into an ECDSA quote.
//!
//! aesmd (Intel's Architectural Enclave Service Manager) listens on
//! [`AESM_SOCKET`]; each request is one connection carrying a 4-byte little-endian
//! length and a protobuf `aesm.message.Request` (Intel's `messages.proto`, proto2),
//! answered the same way. A quote takes four exchanges:
//!
//! 1. `GetSupportedAttKeyIDNum` and `GetSupportedAttKeyIDs`: pick the ECDSA P-256 key
//!    (the DCAP quoting enclave);
//! 2. `InitQuoteEx` twice (size of the public key id, then the key id and the QE's
//!    TARGETINFO);
//! 3. the enclave makes a REPORT for that TARGETINFO (the PAL's `pal_get_local_report`,
//!    or `EREPORT` inside the enclave);
//! 4. `GetQuoteSizeEx` and `GetQuoteEx`: the quote.
//!
//! aesmd runs on the untrusted host, so what it returns is checked: the quote must
//! carry exactly the REPORT body we handed in, and the REPORT the report data asked
//! for. (A verifier checks the quote's signatures; this only stops a host from
//! swapping in another enclave's quote unnoticed.)

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use prost::Message;

/// Where aesmd listens.
pub const AESM_SOCKET: &str = "/var/run/aesmd/aesm.socket";
/// An SGX TARGETINFO.
pub const TARGET_INFO_SIZE: usize = 512;
/// An SGX REPORT: the 384-byte body, a 32-byte key id and a 16-byte MAC.
pub const REPORT_SIZE: usize = 432;
pub const REPORT_BODY_SIZE: usize = 384;
/// Where the report data sits in a REPORT body.
const REPORT_DATA_AT: usize = 320;
/// The size of one `sgx_att_key_id_ext_t`, and where its `algorithm_id` sits.
const ATT_KEY_ID_SIZE: usize = 256;
const ALGORITHM_ID_AT: usize = 154;
const ALG_ECDSA_P256: u32 = 2;
/// aesmd's answers are a few kilobytes; refuse to allocate for a hostile length.
const MAX_RESPONSE: usize = 1 << 20;

/// Why no quote was had. Each renders as one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AesmError {
    #[error("aesmd is not reachable at {}: {reason}", socket.display())]
    Unreachable { socket: PathBuf, reason: String },
    #[error("aesmd {what}: {reason}")]
    Exchange { what: &'static str, reason: String },
    #[error("aesmd {what}: {}", error_name(*code))]
    Refused { what: &'static str, code: u32 },
    #[error("aesmd {what}: not supported by this aesmd ({}): is the DCAP quote provider installed?", error_name(*code))]
    Unsupported { what: &'static str, code: u32 },
    #[error("aesmd offers no ECDSA P-256 attestation key: is the DCAP quoting enclave installed?")]
    NoEcdsaKey,
    #[error("aesmd returned a bad quote: {0}")]
    BadQuote(String),
    #[error("aesmd returned a quote of another report (not the one this enclave made)")]
    OtherReport,
}

/// The messages of Intel's `messages.proto` that a DCAP quote needs (field numbers as
/// there; proto2, so `required` fields are `Option`s that are always set).
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InitQuoteExRequest {
        #[prost(bytes = "vec", optional, tag = "1")]
        pub att_key_id: Option<Vec<u8>>,
        #[prost(bool, optional, tag = "3")]
        pub b_pub_key_id: Option<bool>,
        #[prost(uint64, optional, tag = "4")]
        pub buf_size: Option<u64>,
        #[prost(uint32, optional, tag = "9")]
        pub timeout: Option<u32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetQuoteSizeExRequest {
        #[prost(bytes = "vec", optional, tag = "1")]
        pub att_key_id: Option<Vec<u8>>,
        #[prost(uint32, optional, tag = "9")]
        pub timeout: Option<u32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetQuoteExRequest {
        #[prost(bytes = "vec", optional, tag = "1")]
        pub report: Option<Vec<u8>>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub att_key_id: Option<Vec<u8>>,
        #[prost(bytes = "vec", optional, tag = "3")]
        pub qe_report_info: Option<Vec<u8>>,
        #[prost(uint32, optional, tag = "4")]
        pub buf_size: Option<u32>,
        #[prost(uint32, optional, tag = "9")]
        pub timeout: Option<u32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetSupportedAttKeyIdNumRequest {
        #[prost(uint32, optional, tag = "9")]
        pub timeout: Option<u32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetSupportedAttKeyIdsRequest {
        #[prost(uint32, optional, tag = "1")]
        pub buf_size: Option<u32>,
        #[prost(uint32, optional, tag = "9")]
        pub timeout: Option<u32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, optional, tag = "15")]
        pub init_quote_ex_req: Option<InitQuoteExRequest>,
        #[prost(message, optional, tag = "16")]
        pub get_quote_size_ex_req: Option<GetQuoteSizeExRequest>,
        #[prost(message, optional, tag = "17")]
        pub get_quote_ex_req: Option<GetQuoteExRequest>,
        #[prost(message, optional, tag = "21")]
        pub get_supported_att_key_id_num_req: Option<GetSupportedAttKeyIdNumRequest>,
        #[prost(message, optional, tag = "22")]
        pub get_supported_att_key_ids_req: Option<GetSupportedAttKeyIdsRequest>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InitQuoteExResponse {
        #[prost(uint32, optional, tag = "1")]
        pub error_code: Option<u32>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub target_info: Option<Vec<u8>>,
        #[prost(uint64, optional, tag = "3")]
        pub pub_key_id_size: Option<u64>,
        #[prost(bytes = "vec", optional, tag = "4")]
        pub pub_key_id: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetQuoteSizeExResponse {
        #[prost(uint32, optional, tag = "1")]
        pub error_code: Option<u32>,
        #[prost(uint32, optional, tag = "2")]
        pub quote_size: Option<u32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetQuoteExResponse {
        #[prost(uint32, optional, tag = "1")]
        pub error_code: Option<u32>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub quote: Option<Vec<u8>>,
        #[prost(bytes = "vec", optional, tag = "3")]
        pub qe_report_info: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct UnsupportedRequestResponse {
        #[prost(uint32, optional, tag = "1")]
        pub error_code: Option<u32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetSupportedAttKeyIdNumResponse {
        #[prost(uint32, optional, tag = "1")]
        pub error_code: Option<u32>,
        #[prost(uint32, optional, tag = "2")]
        pub att_key_id_num: Option<u32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GetSupportedAttKeyIdsResponse {
        #[prost(uint32, optional, tag = "1")]
        pub error_code: Option<u32>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub att_key_ids: Option<Vec<u8>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(message, optional, tag = "15")]
        pub init_quote_ex_res: Option<InitQuoteExResponse>,
        #[prost(message, optional, tag = "16")]
        pub get_quote_size_ex_res: Option<GetQuoteSizeExResponse>,
        #[prost(message, optional, tag = "17")]
        pub get_quote_ex_res: Option<GetQuoteExResponse>,
        #[prost(message, optional, tag = "20")]
        pub unsupported_request_response: Option<UnsupportedRequestResponse>,
        #[prost(message, optional, tag = "21")]
        pub get_supported_att_key_id_num_res: Option<GetSupportedAttKeyIdNumResponse>,
        #[prost(message, optional, tag = "22")]
        pub get_supported_att_key_ids_res: Option<GetSupportedAttKeyIdsResponse>,
    }
}

/// aesmd's name for an `aesm_error_t` code, for the codes a quote can meet.
pub fn error_name(code: u32) -> String {
    let name = match code {
        1 => "unexpected error",
        2 => "no SGX device",
        3 => "parameter error",
        12 => "network error",
        13 => "network busy",
        15 => "file access error",
        16 => "SGX provisioning failed",
        17 => "service stopped",
        18 => "busy",
        19 => "backend server busy",
        21 => "out of memory",
        22 => "message error",
        24 => "SGX device not available",
        27 => "service not available",
        29 => "out of EPC",
        30 => "service unavailable",
        31 => "unrecognized platform",
        38 => "unsupported attestation key id",
        41 => "platform quote provider library unavailable",
        42 => "attestation key not initialized",
        43 => "attestation key certification data invalid",
        44 => "no platform certification data (is the PCCS reachable?)",
        45 => "report error",
        47 => "invalid report",
        49 => "unable to generate the QE report",
        _ => "",
    };
    if name.is_empty() {
        format!("error {code}")
    } else {
        format!("error {code} ({name})")
    }
}

/// A client of aesmd.
#[derive(Debug, Clone)]
pub struct Aesm {
    path: PathBuf,
    timeout: Duration,
}

impl Default for Aesm {
    fn default() -> Self {
        Aesm::new(AESM_SOCKET)
    }
}

impl Aesm {
    /// aesmd at `socket`, with the 15 s timeout Inclavare used.
    pub fn new(socket: impl Into<PathBuf>) -> Aesm {
        Aesm {
            path: socket.into(),
            timeout: Duration::from_secs(15),
        }
    }

    /// Sets how long one exchange may take (a quote may wait for the PCCS).
    pub fn with_timeout(mut self, timeout: Duration) -> Aesm {
        self.timeout = timeout;
        self
    }

    /// Whether aesmd's socket exists.
    pub fn present(&self) -> bool {
        std::fs::symlink_metadata(&self.path).is_ok()
    }

    fn timeout_us(&self) -> Option<u32> {
        Some(u32::try_from(self.timeout.as_micros()).unwrap_or(u32::MAX))
    }

    /// One request, one connection.
    fn exchange(
        &self,
        what: &'static str,
        request: &proto::Request,
    ) -> Result<proto::Response, AesmError> {
        let fail = |reason: String| AesmError::Exchange { what, reason };
        let mut s = UnixStream::connect(&self.path).map_err(|e| AesmError::Unreachable {
            socket: self.path.clone(),
            reason: e.to_string(),
        })?;
        s.set_read_timeout(Some(self.timeout))
            .and_then(|()| s.set_write_timeout(Some(self.timeout)))
            .map_err(|e| fail(e.to_string()))?;
        let body = request.encode_to_vec();
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&body);
        s.write_all(&frame).map_err(|e| fail(e.to_string()))?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len)
            .map_err(|e| fail(format!("no answer: {e}")))?;
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_RESPONSE {
            return Err(fail(format!("a {len}-byte answer is too large")));
        }
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)
            .map_err(|e| fail(format!("truncated answer: {e}")))?;
        decode_response(what, &body)
    }

    /// The attestation key id of the DCAP quoting enclave (ECDSA P-256).
    pub fn ecdsa_key_id(&self) -> Result<Vec<u8>, AesmError> {
        const NUM: &str = "GetSupportedAttKeyIDNum";
        const IDS: &str = "GetSupportedAttKeyIDs";
        let r = self.exchange(
            NUM,
            &proto::Request {
                get_supported_att_key_id_num_req: Some(proto::GetSupportedAttKeyIdNumRequest {
                    timeout: self.timeout_us(),
                }),
                ..Default::default()
            },
        )?;
        let r = answer(NUM, r.get_supported_att_key_id_num_res)?;
        check_code(NUM, r.error_code)?;
        let n = r.att_key_id_num.unwrap_or(0) as usize;
        if n == 0 || n > 64 {
            return Err(AesmError::Exchange {
                what: NUM,
                reason: format!("{n} attestation keys"),
            });
        }
        let r = self.exchange(
            IDS,
            &proto::Request {
                get_supported_att_key_ids_req: Some(proto::GetSupportedAttKeyIdsRequest {
                    buf_size: Some((n * ATT_KEY_ID_SIZE) as u32),
                    timeout: self.timeout_us(),
                }),
                ..Default::default()
            },
        )?;
        let r = answer(IDS, r.get_supported_att_key_ids_res)?;
        check_code(IDS, r.error_code)?;
        select_ecdsa_key(&r.att_key_ids.unwrap_or_default())
    }

    /// The quoting enclave's TARGETINFO for `key_id`: what the enclave's REPORT must
    /// be targeted at.
    pub fn qe_target_info(&self, key_id: &[u8]) -> Result<[u8; TARGET_INFO_SIZE], AesmError> {
        const INIT: &str = "InitQuoteEx";
        let init = |with_key: bool, buf_size: Option<u64>| {
            self.exchange(
                INIT,
                &proto::Request {
                    init_quote_ex_req: Some(proto::InitQuoteExRequest {
                        att_key_id: Some(key_id.to_vec()),
                        b_pub_key_id: Some(with_key),
                        buf_size,
                        timeout: self.timeout_us(),
                    }),
                    ..Default::default()
                },
            )
            .and_then(|r| answer(INIT, r.init_quote_ex_res))
            .and_then(|r| check_code(INIT, r.error_code).map(|()| r))
        };
        let size = init(false, None)?.pub_key_id_size.unwrap_or(0);
        if size == 0 || size > 4096 {
            return Err(AesmError::Exchange {
                what: INIT,
                reason: format!("a public key id of {size} bytes"),
            });
        }
        let ti = init(true, Some(size))?.target_info.unwrap_or_default();
        ti.as_slice().try_into().map_err(|_| AesmError::Exchange {
            what: INIT,
            reason: format!("a {}-byte TARGETINFO, not {TARGET_INFO_SIZE}", ti.len()),
        })
    }

    /// The quote of `report`, checked to carry exactly that REPORT's body.
    pub fn quote(&self, key_id: &[u8], report: &[u8; REPORT_SIZE]) -> Result<Vec<u8>, AesmError> {
        const SIZE: &str = "GetQuoteSizeEx";
        const QUOTE: &str = "GetQuoteEx";
        let r = self.exchange(
            SIZE,
            &proto::Request {
                get_quote_size_ex_req: Some(proto::GetQuoteSizeExRequest {
                    att_key_id: Some(key_id.to_vec()),
                    timeout: self.timeout_us(),
                }),
                ..Default::default()
            },
        )?;
        let r = answer(SIZE, r.get_quote_size_ex_res)?;
        check_code(SIZE, r.error_code)?;
        let size = r.quote_size.unwrap_or(0);
        if size == 0 || size as usize > MAX_RESPONSE {
            return Err(AesmError::Exchange {
                what: SIZE,
                reason: format!("a quote of {size} bytes"),
            });
        }
        let r = self.exchange(
            QUOTE,
            &proto::Request {
                get_quote_ex_req: Some(proto::GetQuoteExRequest {
                    report: Some(report.to_vec()),
                    att_key_id: Some(key_id.to_vec()),
                    qe_report_info: None,
                    buf_size: Some(size),
                    timeout: self.timeout_us(),
                }),
                ..Default::default()
            },
        )?;
        let r = answer(QUOTE, r.get_quote_ex_res)?;
        check_code(QUOTE, r.error_code)?;
        let mut quote = r.quote.unwrap_or_default();
        // aesmd hands back its whole buffer; the quote inside says how long it is.
        let len = quote_len(&quote)?;
        quote.truncate(len);
        check_quote_matches(&quote, report)?;
        Ok(quote)
    }

    /// The whole exchange for an enclave: the QE's TARGETINFO goes to `make_report`,
    /// whose REPORT comes back quoted.
    pub fn quote_with<E>(
        &self,
        make_report: impl FnOnce(&[u8; TARGET_INFO_SIZE]) -> Result<[u8; REPORT_SIZE], E>,
    ) -> Result<Result<Vec<u8>, E>, AesmError> {
        let key = self.ecdsa_key_id()?;
        let ti = self.qe_target_info(&key)?;
        match make_report(&ti) {
            Ok(report) => self.quote(&key, &report).map(Ok),
            Err(e) => Ok(Err(e)),
        }
    }
}

/// Decodes one aesmd answer; used by the client and by the fuzz target.
pub fn decode_response(what: &'static str, body: &[u8]) -> Result<proto::Response, AesmError> {
    let r = proto::Response::decode(body).map_err(|e| AesmError::Exchange {
        what,
        reason: format!("not an aesm message: {e}"),
    })?;
    if let Some(u) = &r.unsupported_request_response {
        return Err(AesmError::Unsupported {
            what,
            code: u.error_code.unwrap_or(1),
        });
    }
    Ok(r)
}

fn answer<T>(what: &'static str, part: Option<T>) -> Result<T, AesmError> {
    part.ok_or_else(|| AesmError::Exchange {
        what,
        reason: "answered another request".into(),
    })
}

fn check_code(what: &'static str, code: Option<u32>) -> Result<(), AesmError> {
    // proto2's default for errorCode is 1: a missing code is a failure.
    match code.unwrap_or(1) {
        0 => Ok(()),
        code => Err(AesmError::Refused { what, code }),
    }
}

/// The ECDSA P-256 key among `sgx_att_key_id_ext_t`s (EPID keys may be listed too).
pub fn select_ecdsa_key(ids: &[u8]) -> Result<Vec<u8>, AesmError> {
    ids.chunks_exact(ATT_KEY_ID_SIZE)
        .find(|id| algorithm_id(id) == ALG_ECDSA_P256)
        .map(<[u8]>::to_vec)
        .ok_or(AesmError::NoEcdsaKey)
}

fn algorithm_id(key_id: &[u8]) -> u32 {
    key_id
        .get(ALGORITHM_ID_AT..ALGORITHM_ID_AT + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .unwrap_or(u32::MAX)
}

/// Where a quote's SGX report body starts: after the 48-byte header (v3, v4), or after
/// the header and v5's body type (2 bytes, 1 = SGX) and size (4 bytes).
fn body_offset(quote: &[u8]) -> Result<usize, AesmError> {
    let bad = |reason: String| AesmError::BadQuote(reason);
    if quote.len() < 48 {
        return Err(bad(format!("{} bytes", quote.len())));
    }
    let version = u16::from_le_bytes([quote[0], quote[1]]);
    let tee_type = u32::from_le_bytes(quote[4..8].try_into().expect("4 bytes"));
    if tee_type != 0 {
        return Err(bad(format!("TEE type {tee_type:#x}, not SGX")));
    }
    match version {
        3 | 4 => Ok(48),
        5 => match quote.get(48..50) {
            Some([1, 0]) => Ok(54),
            _ => Err(bad("a v5 quote whose body is not an SGX report".into())),
        },
        v => Err(bad(format!("version {v}"))),
    }
}

/// The length of the quote at the start of `buf`: header, body, then the 4-byte
/// signature-data length and the signature data.
pub fn quote_len(buf: &[u8]) -> Result<usize, AesmError> {
    let at = body_offset(buf)? + REPORT_BODY_SIZE;
    let n = buf
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| AesmError::BadQuote(format!("truncated at {} bytes", buf.len())))?;
    let end = at + 4 + n;
    if end > buf.len() {
        return Err(AesmError::BadQuote(format!(
            "truncated: {} of {end} bytes",
            buf.len()
        )));
    }
    Ok(end)
}

/// Checks that `quote` carries `report`'s body byte for byte.
pub fn check_quote_matches(quote: &[u8], report: &[u8; REPORT_SIZE]) -> Result<(), AesmError> {
    if report_of_quote(quote)?[..REPORT_BODY_SIZE] != report[..REPORT_BODY_SIZE] {
        return Err(AesmError::OtherReport);
    }
    Ok(())
}

/// The report data of a REPORT (or of a REPORT body).
pub fn report_data(report: &[u8]) -> Option<&[u8]> {
    report.get(REPORT_DATA_AT..REPORT_DATA_AT + 64)
}

/// The REPORT whose body a quote carries (key id and MAC zero: only the quoting
/// enclave could check them). For stand-ins replaying a real quote.
pub fn report_of_quote(quote: &[u8]) -> Result<[u8; REPORT_SIZE], AesmError> {
    let at = body_offset(quote)?;
    let body = quote
        .get(at..at + REPORT_BODY_SIZE)
        .ok_or_else(|| AesmError::BadQuote(format!("truncated at {} bytes", quote.len())))?;
    let mut report = [0u8; REPORT_SIZE];
    report[..REPORT_BODY_SIZE].copy_from_slice(body);
    Ok(report)
}

#[cfg(feature = "replay")]
pub mod replay;

#[cfg(test)]
mod tests {
    use super::*;

    /// The field numbers against Intel's `messages.proto`, encoded by hand:
    /// Request.getQuoteExReq = 17 (key 0x8a 0x01), its report = 1, att_key_id = 2,
    /// buf_size = 4, timeout = 9.
    #[test]
    fn requests_use_intels_field_numbers() {
        let req = proto::Request {
            get_quote_ex_req: Some(proto::GetQuoteExRequest {
                report: Some(vec![0xaa]),
                att_key_id: Some(vec![0xbb]),
                qe_report_info: None,
                buf_size: Some(5),
                timeout: Some(7),
            }),
            ..Default::default()
        };
        assert_eq!(
            req.encode_to_vec(),
            [0x8a, 0x01, 10, 0x0a, 1, 0xaa, 0x12, 1, 0xbb, 0x20, 5, 0x48, 7]
        );
        // InitQuoteExRequest (15, key 0x7a) must carry b_pub_key_id = false
        // explicitly: it is `required` in proto2.
        let req = proto::Request {
            init_quote_ex_req: Some(proto::InitQuoteExRequest {
                att_key_id: None,
                b_pub_key_id: Some(false),
                buf_size: None,
                timeout: None,
            }),
            ..Default::default()
        };
        assert_eq!(req.encode_to_vec(), [0x7a, 2, 0x18, 0]);
        let req = proto::Request {
            get_supported_att_key_ids_req: Some(proto::GetSupportedAttKeyIdsRequest {
                buf_size: Some(256),
                timeout: None,
            }),
            ..Default::default()
        };
        assert_eq!(req.encode_to_vec(), [0xb2, 0x01, 3, 0x08, 0x80, 0x02]);
        // Response.getQuoteExRes = 17 with errorCode 0 and a quote.
        let r = decode_response("t", &[0x8a, 0x01, 5, 0x08, 0, 0x12, 1, 0x33]).unwrap();
        let q = r.get_quote_ex_res.unwrap();
        assert_eq!((q.error_code, q.quote), (Some(0), Some(vec![0x33])));
    }

    #[test]
    fn an_unsupported_request_and_a_missing_error_code_are_failures() {
        let e = decode_response("GetQuoteEx", &[0xa2, 0x01, 2, 0x08, 3]).unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        assert!(check_code("x", None).is_err());
        let e = check_code("GetQuoteEx", Some(44)).unwrap_err().to_string();
        assert!(e.contains("no platform certification data"), "{e}");
        assert!(decode_response("x", &[0xff, 0xff]).is_err());
    }

    #[test]
    fn the_ecdsa_key_is_picked_among_others() {
        let mut ids = vec![0u8; 3 * ATT_KEY_ID_SIZE];
        ids[ATT_KEY_ID_SIZE + ALGORITHM_ID_AT] = 3; // P-384
        ids[2 * ATT_KEY_ID_SIZE + ALGORITHM_ID_AT] = 2; // P-256
        ids[2 * ATT_KEY_ID_SIZE] = 0x42;
        assert_eq!(select_ecdsa_key(&ids).unwrap()[0], 0x42);
        assert_eq!(
            select_ecdsa_key(&ids[..2 * ATT_KEY_ID_SIZE]),
            Err(AesmError::NoEcdsaKey)
        );
    }

    #[test]
    fn quote_shapes_are_checked() {
        let mut q = vec![0u8; 48 + REPORT_BODY_SIZE + 4 + 10];
        q[0] = 3;
        q[48 + REPORT_BODY_SIZE] = 10;
        assert_eq!(quote_len(&q), Ok(q.len()));
        q.extend_from_slice(&[0; 7]);
        assert_eq!(quote_len(&q), Ok(q.len() - 7), "aesmd's padding is dropped");
        q[48 + REPORT_BODY_SIZE] = 20;
        assert!(matches!(quote_len(&q), Err(AesmError::BadQuote(_))));
        q[4] = 0x81;
        assert!(matches!(quote_len(&q), Err(AesmError::BadQuote(m)) if m.contains("not SGX")));
        assert!(quote_len(&[3, 0]).is_err());
        let mut report = [0u8; REPORT_SIZE];
        q[4] = 0;
        assert_eq!(check_quote_matches(&q, &report), Ok(()));
        report[REPORT_DATA_AT] = 1;
        assert_eq!(
            check_quote_matches(&q, &report),
            Err(AesmError::OtherReport)
        );
    }
}
