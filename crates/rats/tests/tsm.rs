//! The configfs-tsm protocol against an emulation of the kernel's semantics (an entry
//! appears with its attributes on mkdir; writing `inblob` bumps `generation` and makes
//! `outblob`), returning the real fixture evidence as the TEE's answer.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rats::tsm::{ConfigFs, TsmAttester};
use rats::{Attester, RatsError, Tee};

#[derive(Default)]
struct Entry {
    inblob: Option<Vec<u8>>,
    generation: u64,
}

/// An emulated `/sys/kernel/config/tsm/report`.
struct FakeKernel {
    provider: &'static str,
    outblob: Vec<u8>,
    auxblob: Option<Vec<u8>>,
    entries: Mutex<BTreeMap<PathBuf, Entry>>,
    /// Bump the generation between the attester's two reads (a racing writer).
    race: bool,
    seen: Mutex<Vec<Vec<u8>>>,
}

impl FakeKernel {
    fn new(provider: &'static str, outblob: Vec<u8>, auxblob: Option<Vec<u8>>) -> Self {
        FakeKernel {
            provider,
            outblob,
            auxblob,
            entries: Mutex::default(),
            race: false,
            seen: Mutex::default(),
        }
    }

    fn split(path: &Path) -> (PathBuf, String) {
        (
            path.parent().unwrap().to_path_buf(),
            path.file_name().unwrap().to_string_lossy().into_owned(),
        )
    }
}

impl ConfigFs for FakeKernel {
    fn mkdir(&self, path: &Path) -> io::Result<()> {
        let mut e = self.entries.lock().unwrap();
        if e.contains_key(path) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        e.insert(path.to_path_buf(), Entry::default());
        Ok(())
    }
    fn rmdir(&self, path: &Path) -> io::Result<()> {
        self.entries
            .lock()
            .unwrap()
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let (dir, attr) = Self::split(path);
        let mut entries = self.entries.lock().unwrap();
        let e = entries.get_mut(&dir).ok_or(io::ErrorKind::NotFound)?;
        match attr.as_str() {
            "provider" => Ok(format!("{}\n", self.provider).into_bytes()),
            "generation" => {
                let g = e.generation;
                if self.race && attr == "generation" && e.inblob.is_some() {
                    e.generation += 1;
                }
                Ok(format!("{g}\n").into_bytes())
            }
            "outblob" if e.inblob.is_some() => Ok(self.outblob.clone()),
            "outblob" => Err(io::Error::from_raw_os_error(22)),
            "auxblob" => self
                .auxblob
                .clone()
                .ok_or_else(|| io::Error::from_raw_os_error(61)),
            _ => Err(io::ErrorKind::NotFound.into()),
        }
    }
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let (dir, attr) = Self::split(path);
        let mut entries = self.entries.lock().unwrap();
        let e = entries.get_mut(&dir).ok_or(io::ErrorKind::NotFound)?;
        if attr != "inblob" || data.len() > 64 {
            return Err(io::Error::from_raw_os_error(22));
        }
        e.inblob = Some(data.to_vec());
        e.generation += 1;
        self.seen.lock().unwrap().push(data.to_vec());
        Ok(())
    }
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn tdx_guest_gives_its_quote_and_leaves_no_entry() {
    let root = Path::new("/sys/kernel/config/tsm/report");
    let kernel = FakeKernel::new("tdx_guest", data("tdx_quote"), None);
    let attester = TsmAttester::with_fs(root, &kernel);
    let e = attester.attest(&[7; 64]).unwrap();
    assert!(kernel.entries.lock().unwrap().is_empty(), "entry removed");
    assert_eq!(e.tee, Tee::TdxEcdsa);
    assert_eq!(e.bytes, data("tdx_quote"));
    assert_eq!(e.collateral, None);
    assert_eq!(Tee::detect(&e.bytes).unwrap(), Tee::TdxEcdsa);
}

#[test]
fn snp_guest_gives_report_and_certificate_table() {
    let vcek = data("test-vcek.der");
    // A one-entry table as the SNP extended report returns it, written by virtee/sev
    // (the VCEK's GUID in RFC 4122 order: 63 da 75 8d …).
    let table = sev::firmware::host::CertTableEntry::cert_table_to_vec_bytes(&[
        sev::firmware::host::CertTableEntry::new(sev::firmware::host::CertType::VCEK, vcek),
    ])
    .unwrap();
    assert_eq!(&table[..4], [0x63, 0xda, 0x75, 0x8d]);
    let kernel = FakeKernel::new("sev_guest", data("test-report.bin"), Some(table));
    let attester = TsmAttester::with_fs(Path::new("/tsm"), kernel);
    let e = attester.attest(&[1; 64]).unwrap();
    assert_eq!(e.tee, Tee::SevSnp);
    // What the attester hands over verifies as it is.
    let input = rats::Input {
        report_data: None,
        collateral: Some(rats::Collateral::parse(e.tee, e.collateral.as_ref().unwrap()).unwrap()),
        now: 1_735_689_600,
    };
    rats::verify(&e.bytes, Some(e.tee), &input).unwrap();
}

#[test]
fn report_data_reaches_inblob_and_races_and_strangers_are_errors() {
    let kernel = FakeKernel::new("tdx_guest", data("tdx_quote"), None);
    let attester = TsmAttester::with_fs(Path::new("/tsm"), &kernel);
    attester.attest(&[0xab; 64]).unwrap();
    attester.attest(&[0xcd; 64]).unwrap();
    assert_eq!(
        *kernel.seen.lock().unwrap(),
        vec![vec![0xab; 64], vec![0xcd; 64]]
    );

    let mut racing = FakeKernel::new("tdx_guest", data("tdx_quote"), None);
    racing.race = true;
    let e = TsmAttester::with_fs(Path::new("/tsm"), &racing)
        .attest(&[0; 64])
        .unwrap_err();
    assert!(e.to_string().contains("another writer"), "{e}");
    assert!(
        racing.entries.lock().unwrap().is_empty(),
        "removed after an error too"
    );

    let e = TsmAttester::with_fs(Path::new("/tsm"), FakeKernel::new("arm_cca", vec![1], None))
        .attest(&[0; 64])
        .unwrap_err();
    assert!(matches!(e, RatsError::Attester { .. }), "{e}");
    assert!(e.to_string().contains("arm_cca"), "{e}");
}

#[test]
fn the_real_interface_is_absent_here_or_used() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(rats::tsm::TsmAttester::probe(&tmp.path().join("missing")).is_none());
    // A plain directory is not configfs: the entry has no provider, which is a clear
    // error, not a panic.
    let a = rats::tsm::TsmAttester::probe(tmp.path()).unwrap();
    let e = a.attest(&[0; 64]).unwrap_err();
    assert!(e.to_string().contains("provider"), "{e}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "entry removed"
    );
}

/// The JSON envelope of a configfs-tsm report is the evidence in its outblob, with
/// its auxblob as SNP collateral, not `sample` evidence ("missing field svn").
#[test]
fn the_json_envelope_verifies_as_its_outblob() {
    use rats::tsm::TsmReport;
    let vcek = data("test-vcek.der");
    let table = sev::firmware::host::CertTableEntry::cert_table_to_vec_bytes(&[
        sev::firmware::host::CertTableEntry::new(sev::firmware::host::CertType::VCEK, vcek),
    ])
    .unwrap();
    let kernel = FakeKernel::new("sev_guest", data("test-report.bin"), Some(table.clone()));
    let e = TsmAttester::with_fs(Path::new("/tsm"), kernel)
        .attest(&[1; 64])
        .unwrap();
    let json = TsmReport::from_evidence(&e).unwrap().to_json();
    assert_eq!(Tee::detect(json.as_bytes()).unwrap(), Tee::SevSnp);
    let input = rats::Input {
        now: 1_735_689_600,
        ..Default::default()
    };
    let v = rats::verify(json.as_bytes(), None, &input).unwrap();
    assert_eq!(v.tee, Tee::SevSnp);
    assert_eq!(v.claims["snp_reported_tcb_microcode"].canonical(), ["115"]);

    // Go's field names, hex blobs: the same evidence.
    let go = serde_json::json!({
        "Provider": "sev_guest",
        "OutBlob": hex::encode(data("test-report.bin")),
        "AuxBlob": hex::encode(&table),
    })
    .to_string();
    rats::verify(go.as_bytes(), None, &input).unwrap();

    // TDX: the quote, with its DCAP collateral given separately.
    let tdx = TsmReport {
        provider: "tdx_guest".into(),
        outblob: data("tdx_quote"),
        auxblob: None,
    }
    .to_json();
    let dcap = rats::Input {
        collateral: Some(
            rats::Collateral::parse(Tee::TdxEcdsa, &data("tdx_quote_collateral.json")).unwrap(),
        ),
        now: 1_750_377_600,
        ..Default::default()
    };
    let v = rats::verify(tdx.as_bytes(), None, &dcap).unwrap();
    assert_eq!(v.tcb_status.as_deref(), Some("UpToDate"));

    // Bad envelopes: one-line typed errors.
    let lying = TsmReport {
        provider: "tdx_guest".into(),
        outblob: data("test-report.bin"),
        auxblob: None,
    }
    .to_json();
    let e = rats::verify(lying.as_bytes(), None, &input).unwrap_err();
    assert!(
        e.to_string()
            .contains("provider tdx_guest but the outblob is sev_snp"),
        "{e}"
    );
    let e = rats::verify(br#"{"provider":"sev_guest","outblob":"%%"}"#, None, &input).unwrap_err();
    assert!(
        e.to_string().contains("outblob is neither base64 nor hex"),
        "{e}"
    );
    let e = rats::verify(br#"{"provider":"arm_cca","outblob":"AAAA"}"#, None, &input).unwrap_err();
    assert!(matches!(e, RatsError::UnknownType(_)), "{e}");
    let e = rats::verify(json.as_bytes(), Some(Tee::Sample), &input).unwrap_err();
    assert!(
        e.to_string()
            .contains("a configfs-tsm report from sev_guest"),
        "{e}"
    );
}
