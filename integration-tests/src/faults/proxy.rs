//! The fault-injecting network: one TCP proxy in front of every daemon, so
//! every link between two processes (broker to broker, broker to
//! coordinator, client to broker) can be cut or delayed on its own.
//!
//! Daemons advertise their proxy's port (`advertised.listeners`,
//! `zookeeper.connect`), so every connection to a daemon passes through its
//! proxy. A proxy learns who connected by finding the owner of the peer
//! socket in `/proc` (the process whose fd table holds the socket's inode):
//! all processes share 127.0.0.1, so the address alone cannot tell. A
//! connection from a process the network does not know (the test itself)
//! comes from [`Node::Client`].
//!
//! A cut link is a black hole, not a refusal: bytes already in flight stay
//! unread and new connections are accepted and never answered, as on a
//! real partition, so the peers notice only through their own timeouts.
//! Healing closes every black-holed connection; the peers reconnect.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A process of the cluster, as an end of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Node {
    Coordinator,
    Broker(i32),
    /// Anything else: the test's producers, consumers and admin calls.
    Client,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Coordinator => write!(f, "coordinator"),
            Node::Broker(id) => write!(f, "broker-{id}"),
            Node::Client => write!(f, "client"),
        }
    }
}

/// A directed link: connections that `from` opens to `to`.
pub type Link = (Node, Node);

/// The faults currently applied to links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkFaults {
    pub cut: BTreeSet<Link>,
    /// Added before each chunk is forwarded, both ways.
    pub delay: BTreeMap<Link, Duration>,
}

impl LinkFaults {
    fn is_cut(&self, link: Link) -> bool {
        self.cut.contains(&link)
    }
}

/// The proxies of one cluster and the table of who is who.
#[derive(Debug)]
pub struct Network {
    runtime: tokio::runtime::Runtime,
    pids: Arc<Mutex<HashMap<u32, Node>>>,
    faults: watch::Sender<LinkFaults>,
    /// Connections accepted per link, to show the wiring works.
    connections: Arc<Mutex<BTreeMap<Link, usize>>>,
}

impl Network {
    pub fn new() -> Result<Network> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        let (faults, _) = watch::channel(LinkFaults::default());
        Ok(Network {
            runtime,
            pids: Arc::default(),
            faults,
            connections: Arc::default(),
        })
    }

    /// Records that `pid` is `node` (after each start of a daemon).
    pub fn register(&self, pid: u32, node: Node) {
        let mut pids = self.pids.lock().unwrap_or_else(|e| e.into_inner());
        pids.retain(|_, n| *n != node);
        pids.insert(pid, node);
    }

    /// Starts a proxy for `to` on a free port and returns that port. It
    /// forwards to the port in `target` (0 until the daemon has bound one:
    /// connections then fail at once, as with no one listening).
    pub fn proxy(&self, to: Node, target: Arc<AtomicU16>) -> Result<u16> {
        let listener = self.runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let port = listener.local_addr()?.port();
        let pids = Arc::clone(&self.pids);
        let faults = self.faults.subscribe();
        let connections = Arc::clone(&self.connections);
        self.runtime
            .spawn(accept_loop(listener, to, target, pids, faults, connections));
        Ok(port)
    }

    /// How many connections each link has carried so far.
    pub fn connections(&self) -> BTreeMap<Link, usize> {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Cuts every link between `node` and each of `others`, both ways.
    pub fn isolate(&self, node: Node, others: &[Node]) {
        self.faults.send_modify(|f| {
            for other in others {
                f.cut.insert((node, *other));
                f.cut.insert((*other, node));
            }
        });
    }

    /// Adds `delay` to every link between `node` and each of `others`.
    pub fn slow_down(&self, node: Node, others: &[Node], delay: Duration) {
        self.faults.send_modify(|f| {
            for other in others {
                f.delay.insert((node, *other), delay);
                f.delay.insert((*other, node), delay);
            }
        });
    }

    pub fn heal(&self) {
        self.faults.send_replace(LinkFaults::default());
    }
}

async fn accept_loop(
    listener: TcpListener,
    to: Node,
    target: Arc<AtomicU16>,
    pids: Arc<Mutex<HashMap<u32, Node>>>,
    faults: watch::Receiver<LinkFaults>,
    connections: Arc<Mutex<BTreeMap<Link, usize>>>,
) {
    let proxy_port = listener.local_addr().map_or(0, |a| a.port());
    loop {
        let Ok((downstream, peer)) = listener.accept().await else {
            // Out of descriptors or the like: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let pids = Arc::clone(&pids);
        let faults = faults.clone();
        let target = target.load(Ordering::SeqCst);
        let connections = Arc::clone(&connections);
        tokio::spawn(async move {
            let from = tokio::task::spawn_blocking(move || identify(peer, proxy_port, &pids))
                .await
                .unwrap_or(Node::Client);
            *connections
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((from, to))
                .or_default() += 1;
            connection(downstream, (from, to), target, faults).await;
        });
    }
}

async fn connection(
    downstream: TcpStream,
    link: Link,
    target: u16,
    mut faults: watch::Receiver<LinkFaults>,
) {
    if faults.borrow_and_update().is_cut(link) {
        black_hole(downstream, link, faults).await;
        return;
    }
    if target == 0 {
        return;
    }
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let _ = downstream.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (down_read, down_write) = downstream.into_split();
    let (up_read, up_write) = upstream.into_split();
    // Either direction ending (EOF, error, cut healed) ends the connection.
    tokio::select! {
        () = pump(down_read, up_write, link, faults.clone()) => {}
        () = pump(up_read, down_write, link, faults) => {}
    }
}

/// Holds a connection on a cut link unanswered until the cut heals, then
/// closes it.
async fn black_hole(stream: TcpStream, link: Link, mut faults: watch::Receiver<LinkFaults>) {
    while faults.borrow_and_update().is_cut(link) {
        if faults.changed().await.is_err() {
            break;
        }
    }
    drop(stream);
}

/// Copies one direction of a connection, applying the link's faults.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    link: Link,
    mut faults: watch::Receiver<LinkFaults>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if faults.borrow_and_update().is_cut(link) {
            // Stop reading: the sender's buffers fill, as on a dead route.
            while faults.borrow_and_update().is_cut(link) {
                if faults.changed().await.is_err() {
                    return;
                }
            }
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let delay = faults.borrow().delay.get(&link).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if faults.borrow().is_cut(link) {
            // Cut while these bytes were in flight: they are lost.
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Which registered process owns the socket that connected from `peer` to
/// the proxy on `proxy_port`.
fn identify(peer: SocketAddr, proxy_port: u16, pids: &Mutex<HashMap<u32, Node>>) -> Node {
    let Some(inode) = socket_inode(peer.port(), proxy_port) else {
        return Node::Client;
    };
    let wanted = format!("socket:[{inode}]");
    let candidates: Vec<(u32, Node)> = pids
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(pid, node)| (*pid, *node))
        .collect();
    for (pid, node) in candidates {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()) {
                return node;
            }
        }
    }
    Node::Client
}

/// The inode of the IPv4 socket with local port `local_port` connected to
/// remote port `remote_port`, from `/proc/net/tcp`.
fn socket_inode(local_port: u16, remote_port: u16) -> Option<u64> {
    let table = fs::read_to_string("/proc/net/tcp")
        .context("reading /proc/net/tcp")
        .ok()?;
    find_socket_inode(&table, local_port, remote_port)
}

/// Parses `/proc/net/tcp` lines: `sl local_address rem_address st ...
/// inode`, addresses as `HEXIP:HEXPORT`.
fn find_socket_inode(table: &str, local_port: u16, remote_port: u16) -> Option<u64> {
    let port_of = |address: &str| {
        address
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, inode) = (fields.get(1)?, fields.get(2)?, fields.get(9)?);
        (port_of(local)? == local_port && port_of(remote)? == remote_port)
            .then(|| inode.parse().ok())
            .flatten()
            .filter(|inode| *inode != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_inode_of_a_connection_in_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:A3F2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1\n\
   1: 0100007F:1F90 0100007F:A3F2 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(find_socket_inode(table, 0xA3F2, 0x1F90), Some(4242));
        assert_eq!(find_socket_inode(table, 0x1F90, 0xA3F2), Some(4343));
        assert_eq!(find_socket_inode(table, 1, 2), None);
    }

    #[test]
    fn a_connection_is_told_apart_by_its_owner_and_a_cut_link_is_a_black_hole() -> Result<()> {
        use std::io::{Read, Write};

        let echo = std::net::TcpListener::bind("127.0.0.1:0")?;
        let echo_port = echo.local_addr()?.port();
        std::thread::spawn(move || {
            for stream in echo.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let network = Network::new()?;
        let port = network.proxy(Node::Broker(1), Arc::new(AtomicU16::new(echo_port)))?;
        // This test's own process plays broker 0.
        network.register(std::process::id(), Node::Broker(0));

        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(b"ping")?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf)?;
        assert_eq!(&buf, b"ping");
        assert_eq!(
            network.connections(),
            BTreeMap::from([((Node::Broker(0), Node::Broker(1)), 1)])
        );

        // A delayed link still carries every byte, in order.
        network.slow_down(
            Node::Broker(0),
            &[Node::Broker(1)],
            Duration::from_millis(20),
        );
        stream.write_all(b"slow")?;
        stream.read_exact(&mut buf)?;
        assert_eq!(&buf, b"slow");
        network.heal();

        // Cutting another link leaves this one alone; cutting it silences it.
        network.isolate(Node::Client, &[Node::Broker(1)]);
        stream.write_all(b"pong")?;
        stream.read_exact(&mut buf)?;
        assert_eq!(&buf, b"pong");
        network.isolate(Node::Broker(0), &[Node::Broker(1)]);
        let mut cut = std::net::TcpStream::connect(("127.0.0.1", port))?;
        cut.set_read_timeout(Some(Duration::from_millis(300)))?;
        cut.write_all(b"lost")?;
        let err = cut.read(&mut buf).err();
        assert!(
            err.as_ref().is_some_and(|e| matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            )),
            "a cut link answered: {err:?}"
        );

        // Healing closes the black-holed connection (with a reset: the
        // bytes sent into the black hole were never read).
        network.heal();
        cut.set_read_timeout(Some(Duration::from_secs(10)))?;
        let closed = cut.read(&mut buf);
        assert!(
            matches!(closed, Ok(0))
                || closed
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "a healed black hole stayed open: {closed:?}"
        );
        Ok(())
    }
}
