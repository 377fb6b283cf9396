//! Agent requests arriving on an enclave container's socket: framing and protobuf
//! decoding never panic.
#![no_main]
use rune_core::agent::{read_frame, AgentServiceRequest, AgentServiceResponse};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = read_frame::<AgentServiceRequest>(&mut &data[..]);
    let _ = read_frame::<AgentServiceResponse>(&mut &data[..]);
});
