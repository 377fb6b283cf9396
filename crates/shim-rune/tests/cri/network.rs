//! A pod with a network namespace of its own, set up by the CRI plugin through CNI
//! (Debian's `containernetworking-plugins`: `bridge` with `host-local`, on a bridge
//! private to the test, test-support's `CniBridge`), with handler `runc` for the
//! expected shape and then `rune`.

use std::io::Read as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

use k8s_cri::v1 as cri;
use test_support::CniBridge;

use crate::client::Cri;
use crate::common::*;
use crate::node::*;

/// The addresses host-local still holds in `dir` (its files named by address).
fn leases(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<Ipv4Addr>().is_ok())
        .count()
}

/// One pod of `handler` with the pod network, a waiting container in it: what is seen
/// of its address, namespace and connectivity, as lines; then the pod is removed and
/// nothing is left.
fn pod_network(c: &Ctrd, client: &Cri, handler: &str, bridge: &CniBridge) -> Vec<String> {
    let mut config = pod_config(c, &format!("net-{handler}"));
    let linux = config.linux.as_mut().unwrap();
    let options = linux.security_context.as_mut().unwrap();
    options.namespace_options.as_mut().unwrap().network = cri::NamespaceMode::Pod as i32;
    let pod = client.must_run_pod_sandbox(&config, handler);
    let (status, info) = client.pod_sandbox_status(&pod);
    let network = status.network.expect("a pod network status");
    let ip: Ipv4Addr = network.ip.parse().expect("an IPv4 pod address");
    let waiting = ["/bin/sh", "-c", "while :; do sleep 1; done"];
    let ctr = start_container(client, &pod, &config, "app", &waiting);
    let pid = |info: &serde_json::Value| info["pid"].as_u64().unwrap().to_string();
    let (sandbox, app) = (pid(&info), pid(&client.container_status(&ctr).1));
    let net = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap();
    let mut seen = vec![
        format!(
            "pod address in the bridge's subnet: {}",
            bridge.contains(ip)
        ),
        format!(
            "net: app=sandbox {} app=host {}",
            net(&app) == net(&sandbox),
            net(&app) == net("self")
        ),
        format!("ports on the bridge: {}", bridge.ports().len()),
    ];
    let (addr, err, code) = client.must_exec_sync(&ctr, &["ip", "-4", "-o", "addr", "show"]);
    assert_eq!(code, 0, "{err}");
    let mut ifaces: Vec<String> = addr
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.nth(1)?;
            let inet = f.nth(1)?;
            Some(format!(
                "{name} {}",
                inet == format!("{ip}/24") || name == "lo"
            ))
        })
        .collect();
    ifaces.sort();
    seen.push(format!(
        "interfaces (name, has the pod's address or is lo): {ifaces:?}"
    ));
    let (routes, _, _) = client.must_exec_sync(&ctr, &["ip", "-4", "route", "show", "default"]);
    seen.push(format!(
        "default route via the bridge: {}",
        routes.contains(&format!("via {}", bridge.gateway))
    ));

    // The host, listening on the bridge's address only, hears the pod from its address.
    let listener = TcpListener::bind((bridge.gateway, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let heard = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        (text, peer.ip())
    });
    let send = format!(
        "echo hello from the pod | nc -w 5 {} {port}",
        bridge.gateway
    );
    let (_, err, code) = client.must_exec_sync(&ctr, &["/bin/sh", "-c", &send]);
    assert_eq!(code, 0, "{err}");
    let (text, peer) = heard.join().unwrap();
    seen.push(format!(
        "the host heard {text:?} from the pod's address: {}",
        peer == ip
    ));

    client.must_stop_container(&ctr, 0);
    client.must_remove_container(&ctr);
    remove_pod(c, client, &pod, &config);
    // CNI's DEL: the veth, the address and libcni's cached result (the one file of
    // this network outside the daemon's directory) are gone; the bridge stays.
    let cached = std::fs::read_dir("/var/lib/cni/results")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&bridge.name))
        .count();
    seen.push(format!(
        "after: ports {} leases {} cached results {cached}",
        bridge.ports().len(),
        leases(&c.path().join("cni-ipam").join(&bridge.name))
    ));
    seen
}

#[test]
fn a_pod_gets_an_address_on_a_cni_bridge_as_with_runc() {
    if !root_or_skip("a_pod_gets_an_address_on_a_cni_bridge_as_with_runc") {
        return;
    }
    let mut bridge = None;
    let (c, client) = start_cri_with(|c| {
        bridge = Some(CniBridge::write(&c.cni_conf_dir(), c.path()).unwrap());
    });
    let bridge = bridge.unwrap();
    let runc = pod_network(&c, &client, "runc", &bridge);
    let rune = pod_network(&c, &client, "rune", &bridge);
    let expected = [
        "pod address in the bridge's subnet: true",
        "net: app=sandbox true app=host false",
        "ports on the bridge: 1",
        "interfaces (name, has the pod's address or is lo): [\"eth0 true\", \"lo true\"]",
        "default route via the bridge: true",
        "the host heard \"hello from the pod\\n\" from the pod's address: true",
        "after: ports 0 leases 0 cached results 0",
    ];
    assert_eq!(runc, expected, "runc");
    assert_eq!(rune, expected, "rune");
}
