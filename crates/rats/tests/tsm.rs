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
    // A one-entry table as the SNP extended report returns it.
    let mut table = Vec::new();
    let guid = hex::decode("8d75da6364e66445adc5f4b93be8accd").unwrap();
    table.extend_from_slice(&guid);
    table.extend_from_slice(&48u32.to_le_bytes());
    table.extend_from_slice(&(vcek.len() as u32).to_le_bytes());
    table.extend_from_slice(&[0; 24]);
    table.extend_from_slice(&vcek);
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
