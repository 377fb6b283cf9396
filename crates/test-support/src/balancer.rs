//! A TCP round-robin balancer on loopback, as haproxy's `mode tcp` with `balance
//! roundrobin`, `option redispatch` and `retries`: each new connection goes to the next
//! backend, and a backend that refuses the connection (a replica that died) is skipped
//! for the next one, so a dead backend loses only the connections it held.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The balancer; stops accepting when dropped (relayed connections run to their end).
pub struct RoundRobin {
    addr: SocketAddr,
    /// Connections relayed to each backend, in the order given.
    relayed: Arc<Vec<AtomicU32>>,
    /// Connections no backend took.
    refused: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RoundRobin {
    /// Listens on an ephemeral loopback port in front of `backends`.
    pub fn start(backends: Vec<SocketAddr>) -> io::Result<RoundRobin> {
        assert!(!backends.is_empty(), "a balancer needs a backend");
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let relayed: Arc<Vec<AtomicU32>> =
            Arc::new(backends.iter().map(|_| AtomicU32::new(0)).collect());
        let refused = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counts, none, st) = (relayed.clone(), refused.clone(), stop.clone());
        let next = AtomicUsize::new(0);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let first = next.fetch_add(1, Ordering::Relaxed);
                // Redispatch: the next backends in turn, once each.
                let picked = (0..backends.len())
                    .map(|k| (first + k) % backends.len())
                    .find_map(|i| TcpStream::connect(backends[i]).ok().map(|s| (i, s)));
                let Some((i, backend)) = picked else {
                    none.fetch_add(1, Ordering::SeqCst);
                    continue;
                };
                counts[i].fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || relay(client, backend));
            }
        });
        Ok(RoundRobin {
            addr,
            relayed,
            refused,
            stop,
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
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways until each side has closed its half (a reset ends both).
fn relay(client: TcpStream, backend: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let (Ok(mut client_r), Ok(mut backend_r)) = (client.try_clone(), backend.try_clone()) else {
        return;
    };
    let mut backend_w = backend;
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut client_r, &mut backend_w);
        let _ = backend_w.shutdown(Shutdown::Write);
    });
    let mut client_w = client;
    let _ = io::copy(&mut backend_r, &mut client_w);
    let _ = client_w.shutdown(Shutdown::Write);
    let _ = up.join();
}
