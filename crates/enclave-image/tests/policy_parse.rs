//! containers-policy.json parsing and scope lookup. Expected messages are those
//! containers/image gives ([TB] rows of images.md §3.1, signature/policy_config.go); the
//! scope order is containers-policy.json(5)'s.

use enclave_image::policy::{Keys, Policy, Signatures};

fn err(json: &str) -> String {
    Policy::from_bytes(json.as_bytes()).unwrap_err().to_string()
}

fn assert_err(json: &str, want: &str) {
    let e = err(json);
    assert!(e.contains(want), "{json}: got {e:?}, want {want:?}");
}

#[test]
fn strict_parsing_messages() {
    // [TB] images.md §3.1.
    assert_err(
        r#"{"default":[{"type":"insecureAcceptAnything","foo":1}]}"#,
        r#"Unknown key "foo""#,
    );
    assert_err(
        r#"{"default":[]}"#,
        "List of verification policy requirements must not be empty",
    );
    assert_err(r#"{"transports":{}}"#, "Default policy is missing");
    assert_err(
        r#"{"default":[{"type":"reject"}],"default":[{"type":"reject"}]}"#,
        r#"Duplicate key "default""#,
    );
    assert_err(
        r#"{"default":[{"type":"reject"}],"x":1}"#,
        r#"Unknown key "x""#,
    );
    assert_err(
        r#"{"default":[{"type":"nope"}]}"#,
        r#"Unknown policy requirement type "nope""#,
    );
    assert_err(
        r#"{"default":[{"type":"reject","type":"reject"}]}"#,
        r#"Duplicate key "type""#,
    );
    assert_err(
        r#"{"default":[{"type":"reject"}],"transports":{"docker":{"example.com/a":[]}}}"#,
        "List of verification policy requirements must not be empty",
    );
    assert_err(r#"{"default":[{"type":"reject"}]} x"#, "trailing");
    assert!(err("not json").starts_with("invalid signature policy: "));
}

#[test]
fn signed_by_fields() {
    let sb = |rest: &str| format!(r#"{{"default":[{{"type":"signedBy",{rest}}}]}}"#);
    assert_err(
        &sb(r#""keyType":"GPGKeys""#),
        "Exactly one of keyPath, keyPaths and keyData must be specified, none of them present",
    );
    assert_err(
        &sb(r#""keyType":"GPGKeys","keyPath":"/a","keyData":"AA==""#),
        "Exactly one of keyPath, keyPaths and keyData must be specified, more than one present",
    );
    assert_err(
        &sb(r#""keyType":"foo","keyPath":"/a""#),
        r#"Unrecognized keyType value "foo""#,
    );
    assert_err(&sb(r#""keyPath":"/a""#), r#"Key "keyType" missing"#);
    assert_err(
        &sb(r#""keyType":"X509Certificates","keyPath":"/a""#),
        "not supported",
    );
    assert_err(
        &sb(r#""keyType":"GPGKeys","keyPath":"/a","keyFoo":1"#),
        r#"Unknown key "keyFoo""#,
    );
    assert_err(
        &sb(r#""keyType":"GPGKeys","keyData":"!!""#),
        "keyData is not valid base64",
    );
    assert_err(
        &sb(r#""keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"bogus"}"#),
        r#"Unknown policy reference match type "bogus""#,
    );
    assert_err(
        &sb(r#""keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"matchExact","x":1}"#),
        r#"Unknown key "x""#,
    );
    assert_err(
        &sb(
            r#""keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"exactReference","dockerReference":"example.com/a"}"#,
        ),
        "contains neither a tag nor digest",
    );
    assert_err(
        &sb(r#""keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"exactRepository"}"#),
        r#"Key "dockerRepository" missing"#,
    );
    assert_err(
        &sb(
            r#""keyType":"GPGKeys","keyPath":"/a","signedIdentity":{"type":"remapIdentity","prefix":"x y","signedPrefix":"example.com"}"#,
        ),
        r#"prefix "x y" is not valid"#,
    );
    for ok in [
        sb(r#""keyType":"GPGKeys","keyPaths":["/a","/b"]"#),
        sb(
            r#""keyType":"signedByGPGKeys","keyPath":"/a","signedIdentity":{"type":"remapIdentity","prefix":"mirror.example.com/ns","signedPrefix":"example.com/ns"}"#,
        ),
    ] {
        Policy::from_bytes(ok.as_bytes()).unwrap();
    }
}

#[test]
fn sigstore_signed_fields() {
    let ss = |rest: &str| format!(r#"{{"default":[{{"type":"sigstoreSigned",{rest}}}]}}"#);
    assert_err(
        &ss(r#""keyPath":"/a","keyData":"AA==""#),
        "exactly one of keyPath, keyPaths, keyData, keyDatas, fulcio and pki must be specified",
    );
    assert_err(
        &ss(r#""signedIdentity":{"type":"matchRepository"}"#),
        "exactly one of keyPath",
    );
    // Keyless modes parse but are refused, never silently accepted.
    assert_err(
        &ss(
            r#""fulcio":{"caPath":"/ca","oidcIssuer":"https://o","subjectEmail":"a@b"},"rekorPublicKeyPath":"/r""#,
        ),
        "sigstoreSigned with fulcio is not supported",
    );
    assert_err(
        &ss(r#""pki":{"caRootsPath":"/r","subjectEmail":"a@b"}"#),
        "sigstoreSigned with pki is not supported",
    );
    assert_err(
        &ss(r#""keyPath":"/a","rekorPublicKeyPath":"/r""#),
        "rekor public key is not supported",
    );
    assert_err(&ss(r#""keyPath":"/a","bogus":1"#), r#"Unknown key "bogus""#);
}

#[test]
fn scope_lookup_most_specific_only() {
    let p = Policy::from_bytes(
        br#"{"default":[{"type":"reject"}],"transports":{"docker":{
            "":[{"type":"insecureAcceptAnything"}],
            "example.com":[{"type":"reject"}],
            "example.com/ns":[{"type":"insecureAcceptAnything"}],
            "example.com/ns/app:v1":[{"type":"reject"}],
            "*.example.org":[{"type":"insecureAcceptAnything"}],
            "docker.io/library/busybox":[{"type":"insecureAcceptAnything"}],
            "127.0.0.1:5000":[{"type":"insecureAcceptAnything"}]},
            "atomic":{"whatever":[{"type":"reject"}]}}}"#,
    )
    .unwrap();
    let scope = |i: &str| p.scope_for(i).unwrap();
    assert_eq!(
        scope("example.com/ns/app:v1"),
        "docker:example.com/ns/app:v1"
    );
    assert_eq!(scope("example.com/ns/app:v2"), "docker:example.com/ns");
    assert_eq!(
        scope("example.com/ns/deeper/app:v2"),
        "docker:example.com/ns"
    );
    assert_eq!(scope("example.com/other:v1"), "docker:example.com");
    assert_eq!(scope("registry.example.org/x:1"), "docker:*.example.org");
    assert_eq!(scope("a.b.example.org:8443/x:1"), "docker:*.example.org");
    assert_eq!(scope("busybox"), "docker:docker.io/library/busybox");
    assert_eq!(scope("127.0.0.1:5000/test/app:v1"), "docker:127.0.0.1:5000");
    assert_eq!(scope("quay.io/x:1"), "docker:\"\"");
    let any = Signatures::default();
    let keys = Keys::fetched_only();
    // The specific reject wins over the namespace's accept: lists never merge.
    assert!(p
        .evaluate(
            "example.com/ns/app:v1",
            &format!("sha256:{}", "0".repeat(64)),
            &any,
            &keys
        )
        .is_err());
    assert!(p
        .evaluate(
            "example.com/ns/app:v2",
            &format!("sha256:{}", "0".repeat(64)),
            &any,
            &keys
        )
        .is_ok());
    let e = p.scope_for("Not/Valid").unwrap_err().to_string();
    assert!(e.starts_with("invalid image reference"), "{e}");

    // Without a docker "" scope, `default` applies.
    let p = Policy::from_bytes(br#"{"default":[{"type":"insecureAcceptAnything"}]}"#).unwrap();
    assert_eq!(p.scope_for("quay.io/x:1").unwrap(), "default");
}

#[test]
fn docker_scopes_must_be_fully_expanded() {
    // containers/image reports an invalid docker scope as an unknown key.
    for bad in [
        "busybox",
        "library/busybox",
        "example.com/ns/",
        "*.",
        "Example.com/A",
    ] {
        let json = format!(
            r#"{{"default":[{{"type":"reject"}}],"transports":{{"docker":{{"{bad}":[{{"type":"reject"}}]}}}}}}"#
        );
        assert_err(&json, &format!("Unknown key {bad:?}"));
    }
}
