//! The SNP evidence the agent sends is built from configfs-tsm's `auxblob`, a
//! certificate table whose GUIDs are AMD's, in RFC 4122 byte order (GHCB
//! specification 56421; virtee/sev and AMD's sev-guest tools write them so).

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../rats/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// A table of (GUID string, data): each GUID's 16 bytes are its hex digits in order.
fn table(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut head = Vec::new();
    let mut blobs = Vec::new();
    let start = (entries.len() + 1) * 24;
    for (guid, data) in entries {
        head.extend_from_slice(&hex::decode(guid.replace('-', "")).unwrap());
        head.extend_from_slice(&((start + blobs.len()) as u32).to_le_bytes());
        head.extend_from_slice(&(data.len() as u32).to_le_bytes());
        blobs.extend_from_slice(data);
    }
    head.extend_from_slice(&[0; 24]);
    head.extend_from_slice(&blobs);
    head
}

#[test]
fn the_cert_chain_carries_the_hosts_vcek_ask_and_ark() {
    let vcek = fixture("test-vcek.der");
    let aux = table(&[
        ("63da758d-e664-4564-adc5-f4b93be8accd", &vcek),
        ("4ab7b379-bbac-4fe4-a02f-05aef327c782", b"ask"),
        ("c0b406a4-a803-4952-9743-3fb6014cd0ae", b"ark"),
    ]);
    let e = rats::Evidence {
        tee: rats::Tee::SevSnp,
        bytes: fixture("test-report.bin"),
        collateral: Some(aux),
    };
    let v = attestation_agent::primary_evidence(&e).unwrap();
    let chain = v["cert_chain"].as_array().expect("a cert_chain, not null");
    let kinds: Vec<&str> = chain
        .iter()
        .map(|c| c["cert_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["VCEK", "ASK", "ARK"]);
    let (_, certs) = kbs_protocol::snp::parse(&v).unwrap();
    assert_eq!(certs[0].der, vcek);
}
