//! Network namespaces for the nodes, when the harness may make them: each
//! node in a namespace of its own, all on one bridge in a hub namespace,
//! and the harness (clients and origin) reaching the bridge through one
//! veth. Network faults are nft rules in the node namespaces that drop
//! what comes in from chosen nodes. Everything made here is removed on
//! drop, also after a failure.
//!
//! Addresses are in 198.18.0.0/15, the range set aside for testing
//! network devices, and exist only inside these namespaces and on the
//! harness's veth.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use crate::Error;

/// The namespaces of one run.
#[derive(Debug)]
pub struct Net {
    prefix: String,
    nodes: usize,
    subnet: u8,
}

fn ip(args: &[&str]) -> Result<(), Error> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| Error::Setup(format!("ip: {e}")))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn nft(ns: &str, rules: &str) -> Result<(), Error> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("piped").write_all(rules.as_bytes())?;
            c.wait_with_output()
        })
        .map_err(|e| Error::Setup(format!("nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "nft in {ns}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Net {
    /// Namespaces for `nodes` nodes, or why they cannot be made here (not
    /// root, no `ip` or `nft`, no namespaces in the kernel).
    pub fn new(nodes: usize) -> Result<Self, Error> {
        let pid = std::process::id();
        let net = Self {
            prefix: format!("gc{pid}"),
            nodes,
            subnet: (pid % 250) as u8,
        };
        // Made one step at a time: a step that fails leaves what was made
        // for the drop to remove.
        net.make().map(|()| net)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.prefix)
    }

    fn veth(&self) -> String {
        format!("{}r", self.prefix)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, self.subnet, 10 + i as u8))
    }

    /// The harness's address, which the nodes reach (the origin's).
    pub fn host(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, self.subnet, 1))
    }

    fn make(&self) -> Result<(), Error> {
        Command::new("nft")
            .arg("--version")
            .output()
            .map_err(|e| Error::Setup(format!("nft: {e}")))?;
        let hub = self.hub();
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        let veth = self.veth();
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "r0", "netns", &hub,
        ])?;
        ip(&["-n", &hub, "link", "set", "r0", "master", "br0"])?;
        ip(&["-n", &hub, "link", "set", "r0", "up"])?;
        ip(&["addr", "add", &format!("{}/24", self.host()), "dev", &veth])?;
        ip(&["link", "set", &veth, "up"])?;
        for i in 0..self.nodes {
            let ns = self.ns(i);
            let h = format!("h{i}");
            ip(&["netns", "add", &ns])?;
            ip(&[
                "link", "add", "v0", "netns", &ns, "type", "veth", "peer", "name", &h, "netns",
                &hub,
            ])?;
            ip(&["-n", &hub, "link", "set", &h, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &h, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.addr(i)),
                "dev",
                "v0",
            ])?;
            ip(&["-n", &ns, "link", "set", "v0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Node `to` drops everything that comes in from the nodes `from`.
    pub fn drop_from(&self, to: usize, from: &[usize]) -> Result<(), Error> {
        if from.is_empty() {
            return Ok(());
        }
        let addrs: Vec<String> = from.iter().map(|&f| self.addr(f).to_string()).collect();
        let rules = format!(
            "table inet chaos {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    \
             ip saddr {{ {} }} drop\n  }}\n}}\n",
            addrs.join(", ")
        );
        nft(&self.ns(to), &rules)
    }

    /// Every node takes everything in again.
    pub fn heal(&self) -> Result<(), Error> {
        for i in 0..self.nodes {
            // Absent where no rule was set: nothing to undo.
            let _ = nft(&self.ns(i), "delete table inet chaos\n");
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["netns", "del", &self.hub()]);
        let _ = ip(&["link", "del", &self.veth()]);
    }
}
