//! `Destination` (the tenant side): blobs and manifests written to a real docker-registry
//! (anonymous and bearer-token auth) and to OCI layouts, read back by real skopeo; what
//! a failure leaves behind. Expected digests come from `skopeo inspect`.

use std::path::Path;
use std::time::Duration;

use enclave_image::registry::{
    BlobData, Credentials, Descriptor, Error, ImageSource, Platform, Puller, RegistryConfig,
    RetryPolicy, OCI_MANIFEST,
};
use test_support::{sha256_digest, skopeo, Auth, Registry};

fn puller(host: &str, credentials: Credentials) -> Puller {
    Puller::new(RegistryConfig {
        insecure_http: vec![host.to_string()],
        credentials,
        platform: Platform::parse("linux/amd64").unwrap(),
        retry: RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(50),
        },
        ..RegistryConfig::default()
    })
    .unwrap()
}

fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
        urls: None,
        annotations: None,
        platform: None,
        artifact_type: None,
    }
}

/// A one-layer image made by hand: (config, layer, manifest bytes).
fn image(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let work = dir.join("layer");
    let tar = dir.join("layer.tar");
    // Made once: a second tar would carry other mtimes, so other digests.
    if !tar.exists() {
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(work.join("hello.txt"), "hello\n").unwrap();
        test_support::run(
            "tar",
            &[
                "-C",
                work.to_str().unwrap(),
                "-cf",
                tar.to_str().unwrap(),
                "hello.txt",
            ],
        )
        .unwrap();
    }
    let layer = std::fs::read(&tar).unwrap();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}},"config":{{}}}}"#,
        sha256_digest(&layer)
    )
    .into_bytes();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar", &layer)],
    }))
    .unwrap();
    (config, layer, manifest)
}

async fn write(p: &Puller, target: &str, dir: &Path) -> Result<String, Error> {
    let (config, layer, manifest) = image(dir);
    let layer_file = dir.join("layer.tar");
    let mut dest = p.destination(&target.parse::<ImageSource>()?)?;
    dest.put_blob(
        &desc("application/vnd.oci.image.config.v1+json", &config),
        BlobData::Bytes(&config),
    )
    .await?;
    dest.put_blob(
        &desc("application/vnd.oci.image.layer.v1.tar", &layer),
        BlobData::File(&layer_file),
    )
    .await?;
    dest.put_manifest(&manifest, OCI_MANIFEST, None).await
}

#[tokio::test]
async fn registry_pushes_read_back_with_skopeo_also_with_token_auth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, auth) in [
        ("anon", Auth::None),
        (
            "token",
            Auth::Token {
                user: "tenant".into(),
                pass: "s3cret".into(),
            },
        ),
    ] {
        let reg = Registry::start(&d.join(name), auth).unwrap();
        let host = reg.host();
        let creds = match reg.creds() {
            Some(c) => {
                let (u, p) = c.split_once(':').unwrap();
                Credentials::Basic {
                    user: u.into(),
                    password: p.into(),
                }
            }
            None => Credentials::Anonymous,
        };
        let p = puller(&host, creds);
        let digest = write(&p, &format!("{host}/test/push:v1"), d).await.unwrap();
        let mut args = vec!["inspect", "--tls-verify=false"];
        let c = reg.creds();
        if let Some(c) = &c {
            args.extend(["--creds", c.as_str()]);
        }
        let target = format!("docker://{host}/test/push:v1");
        args.push(&target);
        let v: serde_json::Value = serde_json::from_str(&skopeo(&args).unwrap()).unwrap();
        assert_eq!(v["Digest"], digest.as_str(), "{name}");
        // A second write finds the blobs there and only puts the manifest again.
        assert_eq!(
            write(&p, &format!("{host}/test/push:v2"), d).await.unwrap(),
            digest
        );
    }
    let p = puller("127.0.0.1:1", Credentials::Anonymous);
    let e = p
        .destination(
            &format!("127.0.0.1:1/a/b@sha256:{}", "0".repeat(64))
                .parse()
                .unwrap(),
        )
        .err()
        .unwrap();
    assert!(e.to_string().contains("name a tag, not a digest"), "{e}");
    let e = p
        .destination(&"oci-archive:/tmp/x.tar".parse().unwrap())
        .err()
        .unwrap();
    assert!(e.to_string().contains("read-only"), "{e}");
}

#[tokio::test]
async fn layouts_are_written_atomically_and_failures_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = puller("127.0.0.1:1", Credentials::Anonymous);
    let layout = d.join("out");
    let digest = write(&p, &format!("oci:{}:v1", layout.display()), d)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(
        &skopeo(&["inspect", &format!("oci:{}:v1", layout.display())]).unwrap(),
    )
    .unwrap();
    assert_eq!(v["Digest"], digest.as_str());
    let listing = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = walk(dir);
        v.sort();
        v
    };
    let before = listing(&layout);
    let index_before = std::fs::read(layout.join("index.json")).unwrap();

    // A blob that does not match its descriptor is refused and not kept, and a
    // destination dropped before its manifest removes what it added.
    let mut dest = p
        .destination(&format!("oci:{}:v2", layout.display()).parse().unwrap())
        .unwrap();
    let mut lie = desc("x", b"truth");
    let e = dest
        .put_blob(&lie, BlobData::Bytes(b"lies!"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Digest { .. }), "{e}");
    lie.size = 3;
    let e = dest
        .put_blob(&lie, BlobData::Bytes(b"truth"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Size { .. }), "{e}");
    dest.put_blob(&desc("x", b"new blob"), BlobData::Bytes(b"new blob"))
        .await
        .unwrap();
    assert_ne!(listing(&layout), before);
    drop(dest);
    assert_eq!(listing(&layout), before);
    assert_eq!(
        std::fs::read(layout.join("index.json")).unwrap(),
        index_before
    );

    // A layout the destination created is removed entirely.
    let fresh = d.join("fresh");
    let mut dest = p
        .destination(&format!("oci:{}", fresh.display()).parse().unwrap())
        .unwrap();
    assert_eq!(dest.tag(), "latest");
    dest.put_blob(&desc("x", b"new blob"), BlobData::Bytes(b"new blob"))
        .await
        .unwrap();
    assert!(fresh.join("oci-layout").exists());
    drop(dest);
    assert!(!fresh.exists());

    // An empty directory becomes a layout, and is left empty (not removed) on failure.
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut dest = p
        .destination(&format!("oci:{}:v1", empty.display()).parse().unwrap())
        .unwrap();
    dest.put_blob(&desc("x", b"new blob"), BlobData::Bytes(b"new blob"))
        .await
        .unwrap();
    drop(dest);
    assert!(empty.is_dir());
    assert_eq!(walk(&empty), Vec::<String>::new());

    // A directory that is not a layout and not empty is refused.
    let e = p
        .destination(
            &format!("oci:{}", d.join("layer").display())
                .parse()
                .unwrap(),
        )
        .err()
        .unwrap();
    assert!(e.to_string().contains("not an OCI layout"), "{e}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        out.push(p.display().to_string());
        if p.is_dir() {
            out.extend(walk(&p));
        }
    }
    out
}
