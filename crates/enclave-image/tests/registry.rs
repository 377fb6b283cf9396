//! The registry module against a real docker-registry, images pushed with real skopeo.
//! Expected digests and bytes come from skopeo (`inspect --raw`, `copy` to a layout) or
//! from the registry (`Docker-Content-Digest`), never from the code under test.

use std::path::Path;
use std::time::{Duration, Instant};

use enclave_image::registry::{
    credentials_from_auth_file, Credentials, Error, ImageRef, ImageSource, Platform, Puller,
    RegistryConfig, RetryPolicy, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use test_support::{
    busybox_oci_tar, sha256_digest, skopeo, Auth, Fault, FaultProxy, ImageBuilder, Registry,
};

fn config(hosts: &[String]) -> RegistryConfig {
    RegistryConfig {
        insecure_http: hosts.to_vec(),
        platform: Platform::parse("linux/amd64").unwrap(),
        retry: RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        },
        ..RegistryConfig::default()
    }
}

/// Pushes the busybox layout to `repo:tag` with skopeo; returns the reference.
fn push_busybox(reg: &Registry, repo_tag: &str) -> String {
    let src = format!(
        "oci-archive:{}:latest",
        busybox_oci_tar().unwrap().display()
    );
    push(reg, &src, repo_tag)
}

fn push(reg: &Registry, src: &str, repo_tag: &str) -> String {
    let dest = format!("docker://{}/{repo_tag}", reg.host());
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    let creds = reg.creds();
    if let Some(c) = &creds {
        args.extend(["--dest-creds", c.as_str()]);
    }
    args.extend([src, dest.as_str()]);
    skopeo(&args).unwrap();
    format!("{}/{repo_tag}", reg.host())
}

fn raw_manifest(reference: &str) -> Vec<u8> {
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{reference}"),
    ])
    .unwrap()
    .into_bytes()
}

#[tokio::test]
async fn pulls_by_tag_and_digest_as_skopeo_sees_them() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("reg"), Auth::None).unwrap();
    let r = push_busybox(&reg, "test/busybox:v1");
    let raw = raw_manifest(&r);
    let inspect: serde_json::Value = serde_json::from_str(
        &skopeo(&["inspect", "--tls-verify=false", &format!("docker://{r}")]).unwrap(),
    )
    .unwrap();
    let want = inspect["Digest"].as_str().unwrap().to_string();
    assert_eq!(sha256_digest(&raw), want);

    let puller = Puller::new(config(&[reg.host()])).unwrap();
    let image = puller.open(&r.parse().unwrap()).await.unwrap();
    assert_eq!(image.manifest_digest, want);
    assert_eq!(image.manifest_bytes, raw);
    assert_eq!(image.index_digest, None);

    let by_digest = format!("{}/test/busybox@{want}", reg.host());
    let image2 = puller.open(&by_digest.parse().unwrap()).await.unwrap();
    assert_eq!(image2.manifest_bytes, raw);

    // Config and layers equal what skopeo copies out of the registry.
    let out = tmp.path().join("copy");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{r}"),
        &format!("oci:{}:x", out.display()),
    ])
    .unwrap();
    let blob = |d: &str| {
        std::fs::read(
            out.join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    assert_eq!(
        image.config().await.unwrap(),
        blob(&image.manifest.config.digest)
    );
    assert!(!image.manifest.layers.is_empty());
    for (i, layer) in image.manifest.layers.iter().enumerate() {
        let dest = tmp.path().join(format!("layer{i}"));
        let n = image.fetch_blob_to_path(layer, &dest).await.unwrap();
        assert_eq!(n, layer.size);
        assert_eq!(std::fs::read(&dest).unwrap(), blob(&layer.digest));
        let mut v = Vec::new();
        image.fetch_blob(layer, &mut v).await.unwrap();
        assert_eq!(v, blob(&layer.digest));
    }
}

#[tokio::test]
async fn index_chooses_the_platform_and_refuses_a_missing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("reg"), Auth::None).unwrap();
    let layout = tmp.path().join("layout");
    let amd = ImageBuilder::new()
        .file("arch", b"amd64")
        .build(&layout, "amd")
        .unwrap();
    let arm = ImageBuilder::new()
        .file("arch", b"arm64")
        .architecture("arm64")
        .build(&layout, "arm")
        .unwrap();
    let r_amd = push(&reg, &amd, "test/multi:amd");
    let r_arm = push(&reg, &arm, "test/multi:arm");
    let (m_amd, m_arm) = (raw_manifest(&r_amd), raw_manifest(&r_arm));
    let entry = |m: &[u8], arch: &str, variant: Option<&str>| {
        let mut p = serde_json::json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256_digest(m), "size": m.len(), "platform": p})
    };
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [entry(&m_amd, "amd64", None), entry(&m_arm, "arm64", Some("v8"))]});
    let index = serde_json::to_vec(&index).unwrap();
    let index_digest = reg
        .put_manifest("test/multi", "all", OCI_INDEX, &index)
        .unwrap();
    let r = format!("{}/test/multi:all", reg.host());

    let open = |platform: &str| {
        let mut cfg = config(&[reg.host()]);
        cfg.platform = Platform::parse(platform).unwrap();
        let source: ImageSource = r.parse().unwrap();
        async move { Puller::new(cfg).unwrap().open(&source).await }
    };
    let img = open("linux/amd64").await.unwrap();
    assert_eq!(img.manifest_bytes, m_amd);
    assert_eq!(img.index_digest.as_deref(), Some(index_digest.as_str()));
    let img = open("linux/arm64/v8").await.unwrap();
    assert_eq!(img.manifest_digest, sha256_digest(&m_arm));
    let e = open("linux/s390x").await.err().unwrap().to_string();
    assert_eq!(
        e,
        "no manifest for linux/s390x in the index (found: linux/amd64, linux/arm64/v8)"
    );
}

/// A single manifest (no index to choose from) whose config is for another machine: the
/// platform is what umoci wrote and skopeo reads back (`inspect`'s Os/Architecture), and
/// the refusal names it and the wanted one. The same image is accepted where it belongs.
#[tokio::test]
async fn a_single_manifest_for_another_platform_is_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("reg"), Auth::None).unwrap();
    let arm = ImageBuilder::new()
        .file("arch", b"arm64")
        .architecture("arm64")
        .build(&tmp.path().join("layout"), "arm")
        .unwrap();
    let r = push(&reg, &arm, "test/arm:v1");
    let inspect: serde_json::Value = serde_json::from_str(
        &skopeo(&["inspect", "--tls-verify=false", &format!("docker://{r}")]).unwrap(),
    )
    .unwrap();
    let found = format!(
        "{}/{}",
        inspect["Os"].as_str().unwrap(),
        inspect["Architecture"].as_str().unwrap()
    );
    assert_eq!(found, "linux/arm64");
    let raw: serde_json::Value = serde_json::from_slice(&raw_manifest(&r)).unwrap();
    let config_digest = raw["config"]["digest"].as_str().unwrap();

    let open = |platform: &str| {
        let mut cfg = config(&[reg.host()]);
        cfg.platform = Platform::parse(platform).unwrap();
        let source: ImageSource = r.parse().unwrap();
        async move {
            let image = Puller::new(cfg).unwrap().open(&source).await.unwrap();
            let config = image.config().await.unwrap();
            image.check_platform(&config)
        }
    };
    let e = open("linux/amd64").await.unwrap_err();
    assert!(matches!(e, Error::WrongPlatform { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "{}/test/arm: the image's platform ({found}, config {config_digest}) does not match the wanted platform (linux/amd64)",
            reg.host()
        )
    );
    // arm64 configs often omit the variant, as index entries do: v8 accepts it.
    assert_eq!(open("linux/arm64/v8").await.unwrap().to_string(), found);
    assert_eq!(open("linux/arm64").await.unwrap().to_string(), found);
}

async fn auth_case(auth: Auth) -> Registry {
    let tmp = tempfile::tempdir().unwrap().keep();
    let reg = Registry::start(&tmp.join("reg"), auth).unwrap();
    let r = push_busybox(&reg, "test/app:v1");
    let (user, pass) = reg
        .creds()
        .unwrap()
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .unwrap();

    let mut cfg = config(&[reg.host()]);
    cfg.credentials = Credentials::Basic {
        user: user.clone(),
        password: pass,
    };
    let image = Puller::new(cfg.clone())
        .unwrap()
        .open(&r.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        image.manifest_bytes,
        raw_manifest_with_creds(&r, &reg.creds().unwrap())
    );
    let layer = &image.manifest.layers[0];
    assert_eq!(
        image.fetch_blob(layer, &mut Vec::new()).await.unwrap(),
        layer.size
    );

    for creds in [
        Credentials::Anonymous,
        Credentials::Basic {
            user,
            password: "wr0ng-pa55".into(),
        },
    ] {
        cfg.credentials = creds;
        let e = Puller::new(cfg.clone())
            .unwrap()
            .open(&r.parse().unwrap())
            .await
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(matches!(e, Error::Status { status: 401, .. }), "{msg}");
        assert!(
            msg.starts_with(&format!("{}/test/app: manifest v1: HTTP 401", reg.host())),
            "{msg}"
        );
        assert!(
            !msg.contains("wr0ng-pa55") && !msg.contains("-pw") && !msg.contains('\n'),
            "{msg}"
        );
    }
    std::fs::remove_dir_all(&tmp).ok();
    reg
}

fn raw_manifest_with_creds(reference: &str, creds: &str) -> Vec<u8> {
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        creds,
        "--raw",
        &format!("docker://{reference}"),
    ])
    .unwrap()
    .into_bytes()
}

#[tokio::test]
async fn basic_auth_registry() {
    auth_case(Auth::Basic {
        user: "alice".into(),
        pass: "s3cret-pw".into(),
    })
    .await;
}

#[tokio::test]
async fn bearer_token_registry() {
    let reg = auth_case(Auth::Token {
        user: "bob".into(),
        pass: "t0ken-pw".into(),
    })
    .await;
    let t = reg.token_server().unwrap();
    assert!(
        t.issued() > 0 && t.refused() > 0,
        "issued {} refused {}",
        t.issued(),
        t.refused()
    );
}

/// An HTTPS registry with a private CA and bearer tokens: the CA given as bytes (as an
/// enclave gets it from its KBS), the credentials looked up in the containers-auth.json
/// that `skopeo login` wrote. Without the CA, the certificate is not trusted.
#[tokio::test]
async fn https_registry_with_a_private_ca_and_an_auth_file() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_with(
        &tmp.path().join("reg"),
        Auth::Token {
            user: "dave".into(),
            pass: "h77ps-pw".into(),
        },
        true,
    )
    .unwrap();
    let r = push_busybox(&reg, "test/app:v1");
    let authfile = tmp.path().join("auth.json");
    skopeo(&[
        "login",
        "--tls-verify=false",
        "--authfile",
        authfile.to_str().unwrap(),
        "--username",
        "dave",
        "--password",
        "h77ps-pw",
        &reg.host(),
    ])
    .unwrap();
    let image_ref = ImageRef::parse(&r).unwrap();
    let credentials =
        credentials_from_auth_file("auth.json", &std::fs::read(&authfile).unwrap(), &image_ref)
            .unwrap();
    assert!(matches!(&credentials, Credentials::Basic { user, .. } if user == "dave"));
    let ca = std::fs::read(reg.ca().unwrap()).unwrap();
    let cfg = RegistryConfig {
        credentials,
        extra_ca_pem_bytes: Some(ca),
        ..config(&[])
    };
    let image = Puller::new(cfg.clone())
        .unwrap()
        .open(&r.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        image.manifest_bytes,
        raw_manifest_with_creds(&r, &reg.creds().unwrap())
    );
    let layer = &image.manifest.layers[0];
    assert_eq!(
        image.fetch_blob(layer, &mut Vec::new()).await.unwrap(),
        layer.size
    );
    assert!(reg.token_server().unwrap().issued() > 0);

    let e = Puller::new(RegistryConfig {
        extra_ca_pem_bytes: None,
        ..cfg
    })
    .unwrap()
    .open(&r.parse().unwrap())
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.starts_with(&format!("{}/test/app: manifest v1: ", reg.host()))
            && e.contains("UnknownIssuer"),
        "{e}"
    );
}

#[tokio::test]
async fn missing_tag_is_a_404_naming_registry_and_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("reg"), Auth::None).unwrap();
    push_busybox(&reg, "test/app:v1");
    let puller = Puller::new(config(&[reg.host()])).unwrap();
    let r = format!("{}/test/app:nope", reg.host());
    let e = puller
        .open(&r.parse().unwrap())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{}/test/app: manifest nope: HTTP 404: MANIFEST_UNKNOWN",
            reg.host()
        )),
        "{e}"
    );
}

#[tokio::test]
async fn registry_down_fails_after_bounded_retries() {
    let port = test_support::free_port().unwrap();
    let host = format!("127.0.0.1:{port}");
    let puller = Puller::new(config(std::slice::from_ref(&host))).unwrap();
    let start = Instant::now();
    let e = puller
        .open(&format!("{host}/test/app:v1").parse().unwrap())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        e.starts_with(&format!("{host}/test/app: manifest v1: ")),
        "{e}"
    );
    assert!(
        e.contains("Connection refused") && e.ends_with("(after 3 attempts)"),
        "{e}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("reg"), Auth::None).unwrap();
    push_busybox(&reg, "test/app:v1");
    let puller = Puller::new(config(&[reg.host()])).unwrap();
    let image = puller
        .open(&format!("{}/test/app:v1", reg.host()).parse().unwrap())
        .await
        .unwrap();
    let layer = image.manifest.layers[0].clone();
    let hex = layer.digest.trim_start_matches("sha256:").to_string();

    for (times, ok) in [(Some(2), true), (None, false)] {
        let proxy = FaultProxy::start(
            reg.addr(),
            Fault {
                path_contains: hex.clone(),
                times,
                status: 500,
                location: None,
            },
        )
        .unwrap();
        let host = proxy.addr().to_string();
        let puller = Puller::new(config(std::slice::from_ref(&host))).unwrap();
        let image = puller
            .open(&format!("{host}/test/app:v1").parse().unwrap())
            .await
            .unwrap();
        let dest = tmp.path().join(format!("layer-{ok}"));
        let result = image.fetch_blob_to_path(&layer, &dest).await;
        if ok {
            assert_eq!(result.unwrap(), layer.size);
            assert_eq!(proxy.injected(), 2);
        } else {
            let e = result.unwrap_err().to_string();
            assert_eq!(e, format!("{host}/test/app: blob {}: HTTP 500: injected by test-support FaultProxy (after 3 attempts)", layer.digest));
            assert_eq!(proxy.injected(), 3);
            assert!(!dest.exists(), "partial file left");
        }
    }
}

/// One HTTP server on loopback that answers every request with `body` and keeps each
/// request's head (request line and headers, lower-cased names).
struct Recorder {
    addr: std::net::SocketAddr,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(body: Vec<u8>) -> Recorder {
        use std::io::{BufRead, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let h = heads.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut r = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                h.lock().unwrap().push(head);
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(&body);
            }
        });
        Recorder { addr, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// A blob redirect to another host (a registry's S3-style storage) is followed without
/// the registry's credentials, as Go's net/http (containers/image) drops `Authorization`
/// across hosts (review16b F9). (Foreign `urls` cannot be tested against this registry:
/// distribution refuses to store a manifest naming them; the client never reads them.)
#[tokio::test]
async fn credentials_do_not_follow_a_blob_redirect_to_another_host() {
    let tmp = tempfile::tempdir().unwrap();
    // A registry with credentials that redirects its blob to another host.
    let reg = Registry::start(
        &tmp.path().join("reg-auth"),
        Auth::Basic {
            user: "erin".into(),
            pass: "s3cr3t-pw".into(),
        },
    )
    .unwrap();
    let r = push_busybox(&reg, "test/app:v1");
    let digest = {
        let m: serde_json::Value =
            serde_json::from_slice(&raw_manifest_with_creds(&r, &reg.creds().unwrap())).unwrap();
        m["layers"][0]["digest"].as_str().unwrap().to_string()
    };
    let store = Recorder::start(std::fs::read(reg.blob_path(&digest)).unwrap());
    let proxy = FaultProxy::start(
        reg.addr(),
        Fault {
            path_contains: format!("/blobs/{digest}"),
            times: None,
            status: 307,
            location: Some(format!("http://{}/blob", store.addr)),
        },
    )
    .unwrap();
    let host = proxy.addr().to_string();
    let mut cfg = config(std::slice::from_ref(&host));
    cfg.credentials = Credentials::Basic {
        user: "erin".into(),
        password: "s3cr3t-pw".into(),
    };
    let image = Puller::new(cfg)
        .unwrap()
        .open(&format!("{host}/test/app:v1").parse().unwrap())
        .await
        .unwrap();
    let layer = image.manifest.layers[0].clone();
    assert_eq!(layer.digest, digest);
    assert_eq!(
        image.fetch_blob(&layer, &mut Vec::new()).await.unwrap(),
        layer.size
    );
    assert_eq!(proxy.injected(), 1, "the blob was not redirected");
    let heads = store.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("get /blob "), "{heads:?}");
    assert!(!heads[0].contains("authorization"), "{heads:?}");
}

#[tokio::test]
async fn flipped_byte_in_a_stored_blob_is_a_digest_error() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("reg"), Auth::None).unwrap();
    let r = push_busybox(&reg, "test/app:v1");
    let puller = Puller::new(config(&[reg.host()])).unwrap();
    let image = puller.open(&r.parse().unwrap()).await.unwrap();
    let layer = &image.manifest.layers[0];
    flip_byte(&reg.blob_path(&layer.digest), 100);
    let dest = tmp.path().join("layer");
    let e = image.fetch_blob_to_path(layer, &dest).await.unwrap_err();
    assert!(matches!(e, Error::Digest { .. }), "{e}");
    assert!(
        e.to_string().starts_with(&format!(
            "{}/test/app: blob {}: digest mismatch",
            reg.host(),
            layer.digest
        )),
        "{e}"
    );
    assert!(!dest.exists());
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[tokio::test]
async fn blob_over_the_limit_is_refused_before_download() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("reg"), Auth::None).unwrap();
    push_busybox(&reg, "test/app:v1");
    // Through a proxy that injects nothing, to count the requests that reach the registry.
    let proxy = FaultProxy::start(
        reg.addr(),
        Fault {
            path_contains: "never".into(),
            times: None,
            status: 500,
            location: None,
        },
    )
    .unwrap();
    let host = proxy.addr().to_string();
    let r = format!("{host}/test/app:v1");
    let mut cfg = config(std::slice::from_ref(&host));
    let probe = Puller::new(cfg.clone())
        .unwrap()
        .open(&r.parse().unwrap())
        .await
        .unwrap();
    let layer = probe.manifest.layers[0].clone();
    cfg.max_layer_size = layer.size - 1;
    let image = Puller::new(cfg)
        .unwrap()
        .open(&r.parse().unwrap())
        .await
        .unwrap();
    let before = proxy.forwarded();
    let e = image
        .fetch_blob(&layer, &mut Vec::new())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "{host}/test/app: blob {}: {} bytes exceeds the limit of {} bytes",
            layer.digest,
            layer.size,
            layer.size - 1
        )
    );
    assert_eq!(proxy.forwarded(), before, "a request reached the registry");
}

/// A hostile registry that sends a manifest without end (chunked, never finished): the
/// pull stops once the metadata limit (4 MiB by default) is passed, naming it, instead of
/// buffering whatever arrives.
#[tokio::test]
async fn an_endless_manifest_is_cut_at_the_limit() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let server = tokio::spawn(async move {
        loop {
            let (mut conn, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if head.starts_with(b"GET /v2/ ") {
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                        .await;
                    return;
                }
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\n\r\n",
                    )
                    .await;
                let chunk = vec![b' '; 64 << 10];
                // Ends when the client hangs up (or after 256 MiB, so a client that
                // never stops cannot keep the test running).
                while counter.load(Ordering::Relaxed) < 256 << 20 {
                    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                    frame.extend_from_slice(&chunk);
                    frame.extend_from_slice(b"\r\n");
                    if conn.write_all(&frame).await.is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    let cfg = config(std::slice::from_ref(&host));
    let limit = cfg.max_metadata_size;
    let opened = Puller::new(cfg)
        .unwrap()
        .open(&format!("{host}/test/app:v1").parse().unwrap())
        .await;
    server.abort();
    let Err(e) = opened else {
        panic!("an endless manifest was accepted")
    };
    let e = e.to_string();
    assert_eq!(
        e,
        format!(
            "manifest {host}/test/app v1: more than {limit} bytes exceeds the limit of {limit} bytes"
        )
    );
    // What was sent before the client hung up: the limit, plus what sat in buffers.
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent < limit + (8 << 20), "{sent} bytes were sent");
}

/// A registry on loopback that answers every manifest request with `body` under
/// `content_type` (no header when `None`), `/v2/` with 200, and anything else (blobs)
/// with 404; it records the paths asked for. One request per connection.
struct LyingRegistry {
    host: String,
    paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl LyingRegistry {
    fn start(body: Vec<u8>, content_type: Option<&'static str>) -> LyingRegistry {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = paths.clone();
        // Detached: it ends with the test process.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(path.clone());
                let (status, ctype, body) = if path == "/v2/" {
                    ("200 OK", None, &b"{}"[..])
                } else if path.contains("/manifests/") {
                    ("200 OK", content_type, body.as_slice())
                } else {
                    ("404 Not Found", None, &b""[..])
                };
                let mut head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                if let Some(t) = ctype {
                    head.push_str(&format!("Content-Type: {t}\r\n"));
                }
                head.push_str("\r\n");
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(body);
            }
        });
        LyingRegistry { host, paths }
    }

    fn asked_for_a_blob(&self) -> bool {
        self.paths
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.contains("/blobs/"))
    }
}

/// Distribution spec, "Pulling manifests" (images.md §5): "If the manifest has a
/// `mediaType` field, clients SHOULD reject unless the `mediaType` field's value matches
/// the type specified by the `Content-Type` header" (parameters ignored). The real
/// registry names the type (its Docker v2s2 manifest, whose body carries `mediaType`,
/// pulls). The same bytes served by a lying registry under another type, or under none,
/// are refused in one line before any blob is asked for — as skopeo, the peer, refuses
/// each of them before asking for a blob; with the right type plus a parameter both go
/// on to the config blob.
#[tokio::test]
async fn a_manifest_whose_content_type_contradicts_its_media_type_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("reg"), Auth::None).unwrap();
    let src = format!(
        "oci-archive:{}:latest",
        busybox_oci_tar().unwrap().display()
    );
    let dest = format!("docker://{}/test/app:v2s2", reg.host());
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &src,
        &dest,
    ])
    .unwrap();
    let r = format!("{}/test/app:v2s2", reg.host());
    let raw = raw_manifest(&r);
    let body: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(body["mediaType"], DOCKER_MANIFEST, "skopeo wrote v2s2");
    let image = Puller::new(config(&[reg.host()]))
        .unwrap()
        .open(&r.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(image.manifest_bytes, raw);

    let docker = DOCKER_MANIFEST;
    for (content_type, refused) in [
        (Some(OCI_MANIFEST), true),
        (Some(OCI_INDEX), true),
        (None, true),
        (
            Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
            false,
        ),
    ] {
        // The peer first.
        let liar = LyingRegistry::start(raw.clone(), content_type);
        let peer = skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/test/app:v2s2", liar.host),
        ]);
        assert!(peer.is_err(), "{content_type:?}: the liar serves no blob");
        assert_eq!(
            liar.asked_for_a_blob(),
            !refused,
            "{content_type:?}: skopeo {peer:?}"
        );

        let liar = LyingRegistry::start(raw.clone(), content_type);
        let reference = format!("{}/test/app:v2s2", liar.host);
        let opened = Puller::new(config(std::slice::from_ref(&liar.host)))
            .unwrap()
            .open(&reference.parse().unwrap())
            .await;
        assert!(!liar.asked_for_a_blob());
        let what = format!("manifest {}/test/app v2s2", liar.host);
        match (content_type, opened) {
            (Some(t), Err(e)) if refused => assert_eq!(
                e.to_string(),
                format!("{what}: mediaType \"{docker}\" differs from the registry's Content-Type \"{t}\"")
            ),
            (None, Err(e)) => assert_eq!(
                e.to_string(),
                format!("{what}: mediaType \"{docker}\" but the registry sent no Content-Type")
            ),
            (_, Ok(img)) if !refused => {
                assert_eq!(img.manifest_digest, image.manifest_digest);
                assert_eq!(img.manifest.config.digest, image.manifest.config.digest);
            }
            (t, other) => panic!("{t:?}: {:?}", other.map(|i| i.manifest_digest)),
        }
    }
}

#[tokio::test]
async fn oci_layout_and_archive_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = busybox_oci_tar().unwrap();
    let archive = format!("oci-archive:{}:latest", tar.display());
    let raw = skopeo(&["inspect", "--raw", &archive])
        .unwrap()
        .into_bytes();
    let layout = tmp.path().join("layout");
    skopeo(&["copy", &archive, &format!("oci:{}:v1", layout.display())]).unwrap();

    let puller = Puller::new(config(&[])).unwrap();
    for src in [
        archive.clone(),
        format!("oci:{}:v1", layout.display()),
        format!("oci:{}", layout.display()),
    ] {
        let image = puller.open(&src.parse().unwrap()).await.unwrap();
        assert_eq!(image.manifest_bytes, raw, "{src}");
        assert_eq!(image.manifest_digest, sha256_digest(&raw));
        let config = image.config().await.unwrap();
        assert_eq!(sha256_digest(&config), image.manifest.config.digest);
        for l in &image.manifest.layers {
            let mut v = Vec::new();
            image.fetch_blob(l, &mut v).await.unwrap();
            let expected = std::fs::read(
                layout
                    .join("blobs/sha256")
                    .join(l.digest.trim_start_matches("sha256:")),
            )
            .unwrap();
            assert_eq!(v, expected);
        }
        assert!(image
            .cosign_signatures(&image.manifest_digest)
            .await
            .unwrap()
            .is_empty());
    }
    let e = puller
        .open(&format!("oci:{}:nope", layout.display()).parse().unwrap())
        .await
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        format!(
            "OCI layout {}: no manifest tagged \"nope\" (tags: v1)",
            layout.display()
        )
    );

    // A flipped byte in a layout blob.
    let image = puller
        .open(&format!("oci:{}:v1", layout.display()).parse().unwrap())
        .await
        .unwrap();
    let l = &image.manifest.layers[0];
    flip_byte(
        &layout
            .join("blobs/sha256")
            .join(l.digest.trim_start_matches("sha256:")),
        10,
    );
    let e = image.fetch_blob(l, &mut Vec::new()).await.unwrap_err();
    assert!(matches!(e, Error::Digest { .. }), "{e}");
}

#[tokio::test]
async fn cosign_signature_manifest_is_fetched_with_payload_and_annotations() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("reg"), Auth::None).unwrap();
    let r = push_busybox(&reg, "test/app:v1");
    let digest = sha256_digest(&raw_manifest(&r));
    // A cosign-format attachment by hand (images.md §6.6): payload and config blobs,
    // then a manifest under tag sha256-<hex>.sig. The signature bytes need not verify.
    let payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{}/test/app"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#,
        reg.host()
    );
    let p = reg.put_blob("test/app", payload.as_bytes()).unwrap();
    let c = reg.put_blob("test/app", b"{}").unwrap();
    let sig_manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 2},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": p, "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}}]});
    let tag = format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    reg.put_manifest(
        "test/app",
        &tag,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&sig_manifest).unwrap(),
    )
    .unwrap();

    let image = Puller::new(config(&[reg.host()]))
        .unwrap()
        .open(&r.parse().unwrap())
        .await
        .unwrap();
    let sigs = image
        .cosign_signatures(&image.manifest_digest)
        .await
        .unwrap();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].payload, payload.as_bytes());
    assert_eq!(
        sigs[0].annotations["dev.cosignproject.cosign/signature"],
        "MEUCIQ=="
    );
    assert_eq!(
        sigs[0].media_type,
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    // Another digest has no attachment: an empty list, not an error.
    let other = format!("sha256:{}", "0".repeat(64));
    assert!(image.cosign_signatures(&other).await.unwrap().is_empty());

    // 65 signature layers (the registry stores them; the payload blob is the same one
    // each time): refused before any is fetched, as lookaside signatures past 64 are.
    let many = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 2},
        "layers": vec![serde_json::json!({"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": p, "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}}); 65]});
    reg.put_manifest(
        "test/app",
        &tag,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&many).unwrap(),
    )
    .unwrap();
    let e = image
        .cosign_signatures(&image.manifest_digest)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("manifest {tag}: 65 signature layers, more than the 64 read")
    );
}

#[tokio::test]
async fn simple_signatures_from_a_lookaside_store() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("reg"), Auth::None).unwrap();
    let gpg = test_support::Gpg::new(&tmp.path().join("gnupg")).unwrap();
    let store = tmp.path().join("sigstore");
    let regd = tmp.path().join("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    std::fs::write(
        regd.join("t.yaml"),
        format!("default-docker:\n  lookaside: file://{}\n", store.display()),
    )
    .unwrap();
    // A signed push, then a signed copy of that image (its signature carried along):
    // the store then holds signature-1 and signature-2 of one manifest (images.md §6.5).
    let archive = format!(
        "oci-archive:{}:latest",
        busybox_oci_tar().unwrap().display()
    );
    let signed = format!("docker://{}/test/app:signed", reg.host());
    let again = format!("docker://{}/test/app:again", reg.host());
    let regd_s = regd.display().to_string();
    for (src, dest) in [
        (archive.as_str(), signed.as_str()),
        (signed.as_str(), again.as_str()),
    ] {
        test_support::skopeo_env(
            &[("GNUPGHOME", gpg.home())],
            &[
                "--registries.d",
                &regd_s,
                "copy",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                "--sign-by",
                gpg.fingerprint(),
                src,
                dest,
            ],
        )
        .unwrap();
    }
    let r = format!("{}/test/app:signed", reg.host());
    let image = Puller::new(config(&[reg.host()]))
        .unwrap()
        .open(&r.parse().unwrap())
        .await
        .unwrap();
    let dir = store.join(format!(
        "test/app@{}",
        image.manifest_digest.replace(':', "=")
    ));
    let want: Vec<Vec<u8>> = (1..=2)
        .map(|n| std::fs::read(dir.join(format!("signature-{n}"))).unwrap())
        .collect();
    assert!(!dir.join("signature-3").exists());

    let file_base = format!("file://{}", store.display());
    assert_eq!(
        image
            .lookaside_signatures(&file_base, &image.manifest_digest)
            .await
            .unwrap(),
        want
    );
    let http = test_support::StaticFiles::serve(&store).unwrap();
    assert_eq!(
        image
            .lookaside_signatures(&http.url(), &image.manifest_digest)
            .await
            .unwrap(),
        want
    );
    assert_eq!(http.requests(), 3, "signature-1, -2, then the 404 of -3");
    // No signatures for another digest: an empty list.
    let other = format!("sha256:{}", "0".repeat(64));
    assert!(image
        .lookaside_signatures(&http.url(), &other)
        .await
        .unwrap()
        .is_empty());
    drop(gpg);
    drop(reg);
    assert_eq!(test_support::leftovers(tmp.path()), Vec::<String>::new());
}
