//! The task options containerd passes at create: runc's and CRI's runtime options, and
//! the ids that become file names.

use super::*;

/// The runtime options containerd passes at create: runc's (`BinaryName`, `Root`) or
/// the generic CRI ones (`ConfigPath`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct CreateOptions {
    pub(super) binary_name: String,
    pub(super) root: String,
    pub(super) config_path: String,
}

pub(super) fn create_options(any: &Any) -> TtrpcResult<CreateOptions> {
    let bad = |e: String| err(Code::INVALID_ARGUMENT, format!("runtime options: {e}"));
    if any.type_url.is_empty() {
        return Ok(CreateOptions::default());
    }
    if any.type_url.ends_with("containerd.runc.v1.Options") {
        let o = containerd_shim::protos::shim::oci::Options::parse_from_bytes(&any.value)
            .map_err(|e| bad(e.to_string()))?;
        return Ok(CreateOptions {
            binary_name: o.binary_name,
            root: o.root,
            config_path: String::new(),
        });
    }
    if any.type_url.ends_with("runtimeoptions.v1.Options") {
        // `message Options { string type_url = 1; string config_path = 2; }`
        let fields = proto_strings(&any.value).ok_or_else(|| bad("malformed".into()))?;
        return Ok(CreateOptions {
            config_path: fields.get(&2).cloned().unwrap_or_default(),
            ..Default::default()
        });
    }
    Err(bad(format!("{} is not understood", any.type_url)))
}

/// The length-delimited string fields of a protobuf message, by field number.
pub(super) fn proto_strings(mut b: &[u8]) -> Option<HashMap<u32, String>> {
    pub(super) fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = HashMap::new();
    while !b.is_empty() {
        let tag = varint(&mut b)?;
        let (field, wire) = (u32::try_from(tag >> 3).ok()?, tag & 7);
        match wire {
            0 => {
                varint(&mut b)?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                b = b.get(n..)?;
            }
            2 => {
                let len = usize::try_from(varint(&mut b)?).ok()?;
                let value = b.get(..len)?;
                b = &b[len..];
                out.insert(field, String::from_utf8(value.to_vec()).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Container and exec ids become file names: the characters containerd allows only.
pub(super) fn check_id(kind: &str, id: &str) -> TtrpcResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 76
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(err(
            Code::INVALID_ARGUMENT,
            format!("{kind} {id:?}: must be 1-76 of [A-Za-z0-9_.-], not starting with '.'"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_runtime_options_give_the_config_path() {
        // runtimeoptions.v1.Options{type_url: "x", config_path: "/etc/rune.toml"}
        let mut value = vec![0x0a, 1, b'x', 0x12, 14];
        value.extend_from_slice(b"/etc/rune.toml");
        let any = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value,
            ..Default::default()
        };
        assert_eq!(create_options(&any).unwrap().config_path, "/etc/rune.toml");
        let bad = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: vec![0x12, 200, 1],
            ..Default::default()
        };
        assert!(create_options(&bad).is_err());
        let other = Any {
            type_url: "example.com/Other".into(),
            ..Default::default()
        };
        let e = create_options(&other).unwrap_err();
        assert!(format!("{e:?}").contains("not understood"));
    }

    #[test]
    fn runc_options_give_binary_and_root() {
        let o = containerd_shim::protos::shim::oci::Options {
            binary_name: "/opt/rune".into(),
            root: "/run/x".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: o.write_to_bytes().unwrap(),
            ..Default::default()
        };
        let got = create_options(&any).unwrap();
        assert_eq!(
            (got.binary_name.as_str(), got.root.as_str()),
            ("/opt/rune", "/run/x")
        );
    }

    #[test]
    fn ids_that_are_not_file_names_are_refused() {
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(77)] {
            assert!(check_id("exec id", bad).is_err(), "{bad:?}");
        }
        for good in ["exec-1", "a.b_c", &"x".repeat(76)] {
            assert!(check_id("exec id", good).is_ok(), "{good:?}");
        }
    }
}
