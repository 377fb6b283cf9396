//! `make bench`: full RCAR + resource GET cycles against verdictd on loopback with the
//! `sample` TEE (each cycle: new connection, fresh key, auth, attest, GET, decrypt),
//! at concurrency 1 and 16, beside a baseline of three plain `/healthz` requests on a
//! new connection (the same request count without the protocol's work). The cycles run
//! against the memory storage and, where PostgreSQL is installed, the postgres storage
//! (a private server: test-support's), with one replica and with two replicas on the same
//! database behind one address (a round-robin TCP proxy here, as haproxy's `balance
//! roundrobin` in TCP mode: each connection goes to the next replica).
//!
//! `cargo run --release -p verdictd --example kbs_bench [BATCHES] [PER_BATCH]`

use std::time::{Duration, Instant};

use attestation_agent::{Agent, Options, TeeChoice};

fn main() {
    let mut args = std::env::args().skip(1);
    let batches: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let per_batch: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);

    let mut config = verdictd::Config {
        insecure_http: true,
        resource_policy: "allow_all".into(),
        ..Default::default()
    };
    config.admin.mode = verdictd::config::AdminMode::InsecureAllowAll;
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The same broker on each storage: memory, and PostgreSQL (a private server, one
    // replica) where the postgresql package is installed.
    let pg = test_support::postgres::available().then(|| {
        let pg = test_support::Postgres::start().expect("postgres");
        pg.create_database("bench").expect("createdb");
        pg
    });
    let mut brokers = vec![("memory", config.clone())];
    if let Some(pg) = &pg {
        let mut c = config.clone();
        c.storage.kind = verdictd::config::StorageKind::Postgres;
        c.storage.url = Some(pg.url("bench"));
        brokers.push(("postgres", c));
    }
    let two_replicas = brokers.iter().find(|(n, _)| *n == "postgres").cloned();
    let mut urls: Vec<(&str, String)> = brokers
        .into_iter()
        .map(|(name, config)| (name, server.block_on(replica(config))))
        .collect();
    let mut balancers = vec![];
    if let Some((_, config)) = two_replicas {
        // Two more replicas on the same database, and one address in front of them.
        let backends = [
            server.block_on(replica(config.clone())),
            server.block_on(replica(config)),
        ];
        let addrs = backends
            .iter()
            .map(|u| u.trim_start_matches("http://").parse().unwrap())
            .collect();
        let balancer = test_support::RoundRobin::start(addrs).expect("balancer");
        urls.push(("postgres, 2 replicas behind one address", balancer.url()));
        balancers.push(balancer);
    }

    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\n### verdictd: RCAR + resource GET cycles, sample TEE ({batches} batches of {per_batch} after one warm-up batch; load {})\n",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("| workload | concurrency | median cycles/s | p50 ms | p99 ms | cost / baseline |");
    println!("|---|---:|---:|---:|---:|---:|");
    for concurrency in [1usize, 16] {
        let base = measure(&client, &urls[0].1, batches, per_batch, concurrency, false);
        let mut rows = vec![("3 × GET /healthz (baseline)".to_string(), base)];
        for (storage, url) in &urls {
            rows.push((
                format!("auth + attest + GET resource ({storage})"),
                measure(&client, url, batches, per_batch, concurrency, true),
            ));
        }
        let base_rate = rows[0].1.rate;
        for (name, m) in &rows {
            println!(
                "| {name} | {concurrency} | {:.0} | {:.3} | {:.3} | {:.2} |",
                m.rate,
                m.p50.as_secs_f64() * 1e3,
                m.p99.as_secs_f64() * 1e3,
                base_rate / m.rate
            );
        }
    }
    drop(balancers);
    drop(server);
    drop(pg);
}

/// A verdictd replica with `config` serving on a loopback port (the bench's resource
/// stored); its URL.
async fn replica(config: verdictd::Config) -> String {
    let state = verdictd::AppState::open(config).await.expect("state");
    state
        .storage
        .put(&["default", "key", "bench"], &[7u8; 32])
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(verdictd::server::serve(listener, state, None));
    url
}

struct Measured {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

async fn cycle(url: String, full: bool) -> Duration {
    let start = Instant::now();
    if full {
        let mut agent = Agent::new(
            &url,
            Options {
                tee: TeeChoice::Sample,
                ca_pem: None,
            },
        )
        .unwrap();
        let secret = agent
            .get_resource("kbs:///default/key/bench")
            .await
            .unwrap();
        assert_eq!(secret.len(), 32);
    } else {
        let mut c = attestation_agent::http::Client::new(&url, None).unwrap();
        for _ in 0..3 {
            assert_eq!(
                c.request("GET", "/healthz", None, None)
                    .await
                    .unwrap()
                    .status,
                200
            );
        }
    }
    start.elapsed()
}

fn measure(
    rt: &tokio::runtime::Runtime,
    url: &str,
    batches: usize,
    per_batch: usize,
    concurrency: usize,
    full: bool,
) -> Measured {
    let batch = || {
        rt.block_on(async {
            let start = Instant::now();
            let mut latencies = Vec::with_capacity(per_batch);
            let per_task = per_batch.div_ceil(concurrency);
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let url = url.to_string();
                    tokio::spawn(async move {
                        let mut l = Vec::with_capacity(per_task);
                        for _ in 0..per_task {
                            l.push(cycle(url.clone(), full).await);
                        }
                        l
                    })
                })
                .collect();
            for t in tasks {
                latencies.extend(t.await.unwrap());
            }
            (
                latencies.len() as f64 / start.elapsed().as_secs_f64(),
                latencies,
            )
        })
    };
    batch();
    let mut rates = Vec::new();
    let mut all = Vec::new();
    for _ in 0..batches {
        let (rate, l) = batch();
        rates.push(rate);
        all.extend(l);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    all.sort();
    Measured {
        rate: rates[rates.len() / 2],
        p50: all[all.len() / 2],
        p99: all[(all.len() * 99 / 100).min(all.len() - 1)],
    }
}
