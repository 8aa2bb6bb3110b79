//! Reverse DNS for client host names, off the request path (the writer's lookup thread calls it).
//!
//! Uses the system resolver through `getent hosts <ip>` (glibc/musl NSS: /etc/hosts, DNS, ...),
//! which needs no extra crate and no unsafe code; where `getent` is missing the name stays unknown.

use std::net::IpAddr;
use std::process::{Command, Stdio};

/// The host name of `ip`, `None` when it has none or the lookup fails. Blocking.
pub fn reverse_lookup(ip: IpAddr) -> Option<String> {
    let out = Command::new("getent")
        .args(["hosts", &ip.to_string()])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    // `<ip> <canonical name> [aliases...]`
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .map(|s| s.chars().take(253).collect())
}
