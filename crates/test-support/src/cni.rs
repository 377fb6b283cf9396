//! A private pod network for a [`Containerd`](crate::Containerd) with its CRI plugin:
//! Debian's `containernetworking-plugins` (`bridge` with `host-local` IPAM; the CRI
//! plugin adds `loopback` itself) on a Linux bridge whose name is unique to the test, a
//! /24 of 10.254.0.0/16 chosen by pid, and the IPAM state in the daemon's directory. The
//! bridge is deleted on drop (CNI's DEL removes a pod's veth, never the bridge).
//!
//! The configuration is a CNI network configuration list (the CNI spec's
//! `SPEC.md`, "Network configuration lists"); `bridge` and `host-local` take the keys of
//! their documentation (plugins/main/bridge/README.md, plugins/ipam/host-local/README.md).

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// The bridge and its subnet; the bridge itself is made by the plugin at the first pod.
pub struct CniBridge {
    /// The bridge's interface name (at most 15 bytes).
    pub name: String,
    /// The network: `10.254.N.0`, prefix 24.
    pub subnet: Ipv4Addr,
    /// The bridge's own address, the pods' gateway: `10.254.N.1`.
    pub gateway: Ipv4Addr,
}

impl CniBridge {
    /// Writes `conf_dir/10-<name>.conflist` (the CRI plugin loads the first file of its
    /// conf dir and watches it) with the IPAM state under `state_dir`; the pods' default
    /// route is the bridge. No masquerading (no iptables rules), so the pods reach the
    /// host and each other only.
    pub fn write(conf_dir: &Path, state_dir: &Path) -> io::Result<CniBridge> {
        let pid = std::process::id();
        let name = format!("rcni{pid}");
        let n = u8::try_from(pid % 250 + 1).expect("below 251");
        let subnet = Ipv4Addr::new(10, 254, n, 0);
        let gateway = Ipv4Addr::new(10, 254, n, 1);
        let conf = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": name,
            "plugins": [{
                "type": "bridge",
                "bridge": name,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("{subnet}/24"), "gateway": gateway.to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": state_dir.join("cni-ipam"),
                },
            }],
        });
        std::fs::create_dir_all(conf_dir)?;
        let file = conf_dir.join(format!("10-{name}.conflist"));
        std::fs::write(&file, serde_json::to_vec_pretty(&conf)?)?;
        Ok(CniBridge {
            name,
            subnet,
            gateway,
        })
    }

    /// Whether `ip` is in the bridge's /24.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        ip.octets()[..3] == self.subnet.octets()[..3]
    }

    /// The interfaces enslaved to the bridge (the pods' host-side veths), sorted.
    pub fn ports(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.name])
            .output();
        let text = out.map(|o| o.stdout).unwrap_or_default();
        let mut ports: Vec<String> = String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect();
        ports.sort();
        ports
    }
}

impl Drop for CniBridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
