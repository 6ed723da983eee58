//! A network namespace holding a test's backends at a private, non-loopback address.
//!
//! Kubernetes rejects loopback (and link-local) EndpointSlice addresses, so backends registered
//! through a real API server cannot listen on 127.0.0.1. Each [`BackendNet`] is a namespace the
//! test creates and removes, joined to the host by a veth pair on a /30 of 10.199.0.0/16: the
//! backend end is inside the namespace, the proxy (on the host) reaches it through the pair. Nothing
//! leaves the machine. Backends stay in-process: [`BackendNet::listen`] binds a socket inside the
//! namespace from a short-lived thread that joins it, and the socket keeps working from any thread.
//! Needs root and `ip` (iproute2), as the tests run on this project's machines.

use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

/// Subnets: /30s of 10.199.0.0/16, numbered 0..16384.
const SUBNETS: u32 = 1 << 14;
/// Name prefix of the namespaces (followed by the owning PID and a counter).
const PREFIX: &str = "sluice-e2e-";

/// Failures creating or using the namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("running ip {args:?}: {detail}")]
    Ip { args: Vec<String>, detail: String },
    #[error("no free veth name / subnet after {0} tries")]
    NoSubnet(u32),
    #[error("joining network namespace {name}: {source}")]
    Join { name: String, source: std::io::Error },
    #[error("binding {addr} in network namespace {name}: {source}")]
    Bind { name: String, addr: Ipv4Addr, source: std::io::Error },
}

fn ip(args: &[&str]) -> Result<(), NetnsError> {
    let argv = || args.iter().map(|s| s.to_string()).collect();
    let out =
        Command::new("ip").args(args).output().map_err(|e| NetnsError::Ip { args: argv(), detail: e.to_string() })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsError::Ip { args: argv(), detail: String::from_utf8_lossy(&out.stderr).trim().to_string() })
    }
}

/// Removes namespaces left by test processes that no longer exist (killed before their drop ran).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// A network namespace with one veth pair; removed (with the pair) on drop.
#[derive(Debug)]
pub struct BackendNet {
    name: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

impl BackendNet {
    /// Creates the namespace, the veth pair and their addresses.
    pub fn create() -> Result<BackendNet, NetnsError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{pid}-{n}");
        ip(&["netns", "add", &name])?;
        let mut net = BackendNet { name, host_ip: Ipv4Addr::UNSPECIFIED, ns_ip: Ipv4Addr::UNSPECIFIED };
        // The veth name (unique per host, so claiming it is atomic) carries the subnet number.
        let start = pid.wrapping_mul(97).wrapping_add(n.wrapping_mul(13)) % SUBNETS;
        let mut index = None;
        for i in 0..64 {
            let idx = (start + i) % SUBNETS;
            let host_if = format!("slh{idx}");
            let peer = format!("slp{idx}");
            match ip(&["link", "add", &host_if, "type", "veth", "peer", "name", &peer, "netns", &net.name]) {
                Ok(()) => {
                    index = Some(idx);
                    break;
                }
                Err(NetnsError::Ip { detail, .. }) if detail.contains("exists") => continue,
                Err(e) => return Err(e),
            }
        }
        let idx = index.ok_or(NetnsError::NoSubnet(64))?;
        let base = u32::from(Ipv4Addr::new(10, 199, 0, 0)) + idx * 4;
        net.host_ip = Ipv4Addr::from(base + 1);
        net.ns_ip = Ipv4Addr::from(base + 2);
        let (host_if, peer) = (format!("slh{idx}"), format!("slp{idx}"));
        ip(&["addr", "add", &format!("{}/30", net.host_ip), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&["-n", &net.name, "addr", "add", &format!("{}/30", net.ns_ip), "dev", &peer])?;
        ip(&["-n", &net.name, "link", "set", &peer, "up"])?;
        ip(&["-n", &net.name, "link", "set", "lo", "up"])?;
        Ok(net)
    }

    /// The namespace's name (`ip netns` lists it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The backends' address (inside the namespace): what EndpointSlices carry.
    pub fn ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// A TCP listener on a free port of [`Self::ip`], inside the namespace (non-blocking, ready for
    /// tokio).
    pub fn listen(&self) -> Result<TcpListener, NetnsError> {
        let name = self.name.clone();
        let addr = self.ns_ip;
        std::thread::spawn(move || {
            let path = format!("/run/netns/{name}");
            let file = std::fs::File::open(&path).map_err(|source| NetnsError::Join { name: name.clone(), source })?;
            move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                .map_err(|e| NetnsError::Join { name: name.clone(), source: e.into() })?;
            let l =
                TcpListener::bind((addr, 0)).map_err(|source| NetnsError::Bind { name: name.clone(), addr, source })?;
            l.set_nonblocking(true).map_err(|source| NetnsError::Bind { name, addr, source })?;
            Ok(l)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::Join { name: self.name.clone(), source: std::io::Error::other("thread panicked") })
        })
    }
}

impl Drop for BackendNet {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair (both ends) with it.
        let _ = ip(&["netns", "del", &self.name]);
    }
}
