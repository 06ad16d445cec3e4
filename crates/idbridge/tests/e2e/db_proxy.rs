//! A TCP proxy between a broker and the test Postgres server that a test can
//! switch: forwarding, *frozen* (nothing forwarded either way, every socket kept
//! open: a stalled database or network, as the broker's kernel still ACKs) or
//! *refusing* (every connection closed, new ones refused: the database gone).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Forward,
    Freeze,
    Refuse,
}

pub struct DbProxy {
    pub addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    task: tokio::task::JoinHandle<()>,
}

impl DbProxy {
    /// A proxy on 127.0.0.1 in front of the server `db_url` names.
    pub async fn start(db_url: &str) -> DbProxy {
        let u = url::Url::parse(db_url).expect("database URL");
        let upstream = format!(
            "{}:{}",
            u.host_str().expect("database host"),
            u.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (tx, rx) = watch::channel(Mode::Forward);
        let task = tokio::spawn(accept_loop(listener, addr, upstream, rx));
        DbProxy {
            addr,
            mode: Arc::new(tx),
            task,
        }
    }

    /// `db_url` pointing at this proxy instead of the server.
    pub fn url(&self, db_url: &str) -> String {
        let mut u = url::Url::parse(db_url).expect("database URL");
        u.set_host(Some("127.0.0.1")).expect("host");
        u.set_port(Some(self.addr.port())).expect("port");
        u.to_string()
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.set(Mode::Refuse);
        self.task.abort();
    }
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    upstream: String,
    mut mode: watch::Receiver<Mode>,
) {
    loop {
        if *mode.borrow_and_update() == Mode::Refuse {
            // Close the listening socket: connecting is refused until the mode changes.
            drop(listener);
            while *mode.borrow_and_update() == Mode::Refuse {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            listener = loop {
                match TcpListener::bind(addr).await {
                    Ok(l) => break l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
        }
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(connection(client, upstream.clone(), mode.clone()));
                }
            }
            _ = mode.changed() => {}
        }
    }
}

async fn connection(client: TcpStream, upstream: String, mode: watch::Receiver<Mode>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Either direction ending (or Refuse) ends both: dropping the halves closes the sockets.
    tokio::select! {
        _ = pump(cr, sw, mode.clone()) => {}
        _ = pump(sr, cw, mode) => {}
    }
}

/// Copies `from` to `to` while forwarding; holds still while frozen; returns on Refuse
/// or when either side closes.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !wait_forwarding(&mut mode).await {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = mode.changed() => continue,
        };
        // Read while forwarding, but frozen since: hold the bytes until forwarding again.
        if !wait_forwarding(&mut mode).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits while frozen; false once refusing.
async fn wait_forwarding(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *mode.borrow_and_update() {
            Mode::Forward => return true,
            Mode::Refuse => return false,
            Mode::Freeze => {}
        }
        if mode.changed().await.is_err() {
            return false;
        }
    }
}
