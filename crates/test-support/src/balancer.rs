//! A TCP round-robin balancer on loopback, as haproxy's `mode tcp` with `balance
//! roundrobin`, `option redispatch` and `retries`: each new connection goes to the next
//! backend, and a backend that refuses the connection (a replica that died) is skipped
//! for the next one, so a dead backend loses only the connections it held.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpStream};

/// The balancer: a current-thread tokio runtime on a thread of its own (relays are
/// tasks, so a connection costs no thread). Dropping it stops the runtime, and with it
/// every relay.
pub struct RoundRobin {
    addr: SocketAddr,
    /// Connections relayed to each backend, in the order given.
    relayed: Arc<Vec<AtomicU32>>,
    /// Connections no backend took.
    refused: Arc<AtomicU32>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RoundRobin {
    /// Listens on an ephemeral loopback port in front of `backends`.
    pub fn start(backends: Vec<SocketAddr>) -> io::Result<RoundRobin> {
        assert!(!backends.is_empty(), "a balancer needs a backend");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let relayed: Arc<Vec<AtomicU32>> =
            Arc::new(backends.iter().map(|_| AtomicU32::new(0)).collect());
        let refused = Arc::new(AtomicU32::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (counts, none) = (relayed.clone(), refused.clone());
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = TcpListener::from_std(std_listener) else {
                    return;
                };
                let serve = async {
                    let mut next = 0usize;
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            // Out of descriptors or the like: not a reason to spin.
                            tokio::task::yield_now().await;
                            continue;
                        };
                        let first = next;
                        next += 1;
                        let (backends, counts, none) =
                            (backends.clone(), counts.clone(), none.clone());
                        tokio::spawn(async move {
                            // Redispatch: the next backends in turn, once each.
                            for k in 0..backends.len() {
                                let i = (first + k) % backends.len();
                                if let Ok(backend) = TcpStream::connect(backends[i]).await {
                                    counts[i].fetch_add(1, Ordering::SeqCst);
                                    relay(client, backend).await;
                                    return;
                                }
                            }
                            none.fetch_add(1, Ordering::SeqCst);
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
        });
        Ok(RoundRobin {
            addr,
            relayed,
            refused,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `127.0.0.1:port` of the balancer.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections relayed to each backend so far, in the order given to `start`.
    pub fn relayed(&self) -> Vec<u32> {
        self.relayed
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }

    /// Connections closed at once because no backend accepted them.
    pub fn refused(&self) -> u32 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways until both sides have closed (a reset ends both).
async fn relay(mut client: TcpStream, mut backend: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
}
