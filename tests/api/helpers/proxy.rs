//! A TCP forwarder in front of the app that can cut every open connection at
//! once, and go dark (cut, then refuse new connections) like a crashed node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A forwarder to `upstream`.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    cut: Arc<watch::Sender<u64>>,
}

impl Proxy {
    /// Starts forwarding to `upstream` on a port the system picks.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(watch::channel(0u64).0);
        let (is_down, signal) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_down.load(Ordering::SeqCst) {
                    continue;
                }
                let mut cut = signal.subscribe();
                tokio::spawn(async move {
                    let Ok(mut out) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Proxy { addr, down, cut }
    }

    /// Closes every connection open now; new ones are accepted as before.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Cuts every connection and refuses new ones until [`Proxy::come_back`].
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.cut();
    }

    /// Accepts connections again.
    pub fn come_back(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}
