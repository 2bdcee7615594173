//! Addresses as Kafka writes them: `host:port` lists (`zookeeper.connect`,
//! `--broker-list`), listeners (`PLAINTEXT://host:port`), and the local host
//! name a broker advertises when it is given none.
//!
//! Parsing only; never binds or connects. The one look-up is
//! [`local_hostname`], which checks that the name it returns resolves.

use std::fmt;
use std::net::ToSocketAddrs;

/// ZooKeeper's client port, the default port of `zookeeper.connect` entries.
pub const DEFAULT_ZOOKEEPER_PORT: u16 = 2181;

/// Why an address string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct AddressError {
    /// What was wrong with it, in a phrase.
    pub reason: String,
}

fn address_error(reason: impl Into<String>) -> AddressError {
    AddressError {
        reason: reason.into(),
    }
}

/// A host and port. `host` is stored without IPv6 brackets and may be empty
/// (meaning all interfaces when binding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`, `[v6]:port`, or (with a default port) a bare host.
    pub fn parse(text: &str, default_port: Option<u16>) -> Result<HostPort, AddressError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(address_error("empty address"));
        }
        let (host, port) = split_host_port(text)?;
        let port = match (port, default_port) {
            (Some(port), _) => parse_port(port)?,
            (None, Some(default)) => default,
            (None, None) => return Err(address_error(format!("{text} has no port"))),
        };
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }

    /// Parses a comma-separated list (`--broker-list a:9092,b:9092`); empty
    /// items are skipped, and at least one address is required.
    pub fn parse_list(
        text: &str,
        default_port: Option<u16>,
    ) -> Result<Vec<HostPort>, AddressError> {
        let list = text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| HostPort::parse(item, default_port))
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(address_error("no address given"));
        }
        Ok(list)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_host(f, &self.host)?;
        write!(f, ":{}", self.port)
    }
}

fn write_host(f: &mut fmt::Formatter<'_>, host: &str) -> fmt::Result {
    if host.contains(':') {
        write!(f, "[{host}]")
    } else {
        f.write_str(host)
    }
}

/// Splits `host:port` or `[v6]:port` (port optional) without judging either.
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), AddressError> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| address_error(format!("{text} has an unclosed '['")))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(address_error(format!("{text} is not host:port"))),
            },
        };
    }
    match text.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((host, _)) if host.contains(':') => Ok((text, None)),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((text, None)),
    }
}

fn parse_port(port: &str) -> Result<u16, AddressError> {
    port.trim().parse::<u16>().map_err(|_| {
        address_error(format!(
            "invalid port {port}: must be a number from 0 to 65535"
        ))
    })
}

/// `zookeeper.connect`: `host:port[,host:port...][/chroot]`. The chroot,
/// when given, applies to the whole ensemble and follows the last address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZkConnect {
    /// The coordinators to try, in order.
    pub servers: Vec<HostPort>,
    /// A path prefix, `/` followed by the name; `None` when absent.
    pub chroot: Option<String>,
}

impl ZkConnect {
    /// Parses a connect string (also what `--zookeeper` takes); a port may be
    /// omitted and is then 2181.
    pub fn parse(text: &str) -> Result<ZkConnect, AddressError> {
        let text = text.trim();
        let (servers, chroot) = match text.find('/') {
            Some(slash) => (&text[..slash], Some(&text[slash..])),
            None => (text, None),
        };
        let chroot = match chroot {
            None | Some("/") => None,
            Some(path) if path.ends_with('/') => {
                return Err(address_error(format!(
                    "chroot {path} must not end with '/'"
                )));
            }
            Some(path) if path.contains("//") => {
                return Err(address_error(format!(
                    "chroot {path} has an empty path element"
                )));
            }
            Some(path) => Some(path.to_owned()),
        };
        let servers = HostPort::parse_list(servers, Some(DEFAULT_ZOOKEEPER_PORT))?;
        if let Some(blank) = servers.iter().find(|server| server.host.is_empty()) {
            return Err(address_error(format!("{blank} has no host")));
        }
        Ok(ZkConnect { servers, chroot })
    }
}

impl fmt::Display for ZkConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, server) in self.servers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{server}")?;
        }
        if let Some(chroot) = &self.chroot {
            f.write_str(chroot)?;
        }
        Ok(())
    }
}

/// One listener: a name (upper case, as Kafka normalises it), a host and a
/// port. Every listener speaks PLAINTEXT; that is checked when it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The listener name, e.g. `PLAINTEXT` or `INTERNAL`.
    pub listener_name: String,
    /// The host as written, without IPv6 brackets. Empty means all
    /// interfaces when binding, and [`local_hostname`] when advertised.
    pub host: String,
    /// The port; 0 means any free port, chosen when binding.
    pub port: u16,
}

impl Endpoint {
    /// The address to bind, for `TcpListener::bind`: an empty host becomes
    /// `0.0.0.0`; IPv6 literals get their brackets back.
    pub fn bind_address(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        HostPort {
            host: host.to_owned(),
            port: self.port,
        }
        .to_string()
    }

    /// The host to tell clients: the host as written, or [`local_hostname`]
    /// when it is empty.
    pub fn advertised_host(&self) -> String {
        if self.host.is_empty() {
            local_hostname()
        } else {
            self.host.clone()
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.listener_name)?;
        write_host(f, &self.host)?;
        write!(f, ":{}", self.port)
    }
}

/// Parses one `NAME://host:port` listener (name not yet checked against
/// the security protocol map).
pub(crate) fn parse_listener(text: &str) -> Result<Endpoint, AddressError> {
    let (name, address) = text.split_once("://").ok_or_else(|| {
        address_error(format!(
            "unable to parse {text} to a listener: expected NAME://host:port"
        ))
    })?;
    if name.is_empty() {
        return Err(address_error(format!("listener {text} has no name")));
    }
    let (host, port) = split_host_port(address)?;
    let port = port.ok_or_else(|| address_error(format!("listener {text} has no port")))?;
    Ok(Endpoint {
        listener_name: name.to_ascii_uppercase(),
        host: host.to_owned(),
        port: parse_port(port)?,
    })
}

/// The name this machine goes by, for brokers that were given no host to
/// advertise: the kernel's host name when it resolves, otherwise
/// `localhost`, so that a fresh single-machine setup always works.
pub fn local_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .filter(|name| !name.is_empty());
    match name {
        Some(name)
            if (name.as_str(), 0)
                .to_socket_addrs()
                .is_ok_and(|mut a| a.next().is_some()) =>
        {
            name
        }
        _ => "localhost".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            HostPort::parse("localhost:9092", None).unwrap(),
            HostPort {
                host: "localhost".into(),
                port: 9092
            }
        );
        assert_eq!(HostPort::parse("h", Some(2181)).unwrap().port, 2181);
        assert_eq!(HostPort::parse("[::1]:9092", None).unwrap().host, "::1");
        assert_eq!(
            HostPort::parse("[::1]:9092", None).unwrap().to_string(),
            "[::1]:9092"
        );
        assert_eq!(HostPort::parse("::1", Some(1)).unwrap().host, "::1");
        assert_eq!(HostPort::parse(":0", None).unwrap().host, "");
        assert_eq!(
            HostPort::parse("h", None).unwrap_err().to_string(),
            "h has no port"
        );
        assert_eq!(
            HostPort::parse("h:99999", None).unwrap_err().to_string(),
            "invalid port 99999: must be a number from 0 to 65535"
        );
        assert_eq!(
            HostPort::parse_list("a:1, ,b:2", None).unwrap(),
            vec![
                HostPort {
                    host: "a".into(),
                    port: 1
                },
                HostPort {
                    host: "b".into(),
                    port: 2
                }
            ]
        );
        assert!(HostPort::parse_list(" , ", None).is_err());
    }

    #[test]
    fn zookeeper_connect_strings() {
        let zk = ZkConnect::parse("localhost:2181").unwrap();
        assert_eq!(zk.servers.len(), 1);
        assert_eq!(zk.servers[0].to_string(), "localhost:2181");
        assert_eq!(zk.chroot, None);

        let zk = ZkConnect::parse("a:1,b,[::1]:3/kafka/prod").unwrap();
        assert_eq!(
            zk.servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["a:1", "b:2181", "[::1]:3"]
        );
        assert_eq!(zk.chroot.as_deref(), Some("/kafka/prod"));
        assert_eq!(zk.to_string(), "a:1,b:2181,[::1]:3/kafka/prod");

        assert_eq!(ZkConnect::parse("a:1/").unwrap().chroot, None);
        assert!(ZkConnect::parse("a:1/kafka/").is_err());
        assert!(ZkConnect::parse("").is_err());
        assert!(ZkConnect::parse("/kafka").is_err());
        assert!(ZkConnect::parse(":2181").is_err());
        assert!(ZkConnect::parse("a:port").is_err());
    }

    #[test]
    fn listeners() {
        let l = parse_listener("plaintext://:9092").unwrap();
        assert_eq!(l.listener_name, "PLAINTEXT");
        assert_eq!(l.host, "");
        assert_eq!(l.bind_address(), "0.0.0.0:9092");
        assert_eq!(l.to_string(), "PLAINTEXT://:9092");

        let l = parse_listener("INTERNAL://[::1]:0").unwrap();
        assert_eq!(l.host, "::1");
        assert_eq!(l.port, 0);
        assert_eq!(l.bind_address(), "[::1]:0");
        assert_eq!(l.advertised_host(), "::1");

        assert!(parse_listener("localhost:9092").is_err());
        assert!(parse_listener("://h:1").is_err());
        assert!(parse_listener("PLAINTEXT://h").is_err());
        assert!(parse_listener("PLAINTEXT://h:x").is_err());
    }

    #[test]
    fn local_hostname_resolves() {
        let name = local_hostname();
        assert!(!name.is_empty());
        assert!((name.as_str(), 0).to_socket_addrs().is_ok());
    }
}
