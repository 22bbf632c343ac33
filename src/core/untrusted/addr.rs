//! Network addresses a name from the box resolved to, on their way to a
//! connection the egress proxy makes for it. Rule: an allowed name may lead
//! to a public address only. Never to this machine or the engine (loopback,
//! the engine's gateways, unspecified, link-local and its cloud metadata),
//! nor to multicast, broadcast or reserved space; private ranges (RFC 1918,
//! CGNAT, unique-local IPv6) only where `networking.allow_private` lists
//! them. IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64,
//! 6to4) are judged by the IPv4 address they carry.

use crate::core::error::{Error, Result};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What an address is, for the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Anywhere on the internet.
    Public,
    /// Private or shared space: reachable when allowed by a [`Cidr`].
    Private,
    /// Never reachable; the reason, for the refusal.
    Forbidden(&'static str),
}

/// The class of `ip`, gateways aside (see [`check`]).
pub fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v) => classify_v4(v),
        IpAddr::V6(v) => classify_v6(v),
    }
}

fn classify_v4(v: Ipv4Addr) -> Class {
    let o = v.octets();
    let within = |net: [u8; 4], bits: u32| {
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(v) & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    if o[0] == 0 {
        Class::Forbidden("an unspecified (0.0.0.0/8) address")
    } else if v.is_loopback() {
        Class::Forbidden("a loopback address")
    } else if v.is_link_local() {
        Class::Forbidden("a link-local address")
    } else if v.is_broadcast() {
        Class::Forbidden("the broadcast address")
    } else if v.is_multicast() {
        Class::Forbidden("a multicast address")
    } else if within([240, 0, 0, 0], 4) {
        Class::Forbidden("a reserved (240.0.0.0/4) address")
    } else if within([10, 0, 0, 0], 8)
        || within([172, 16, 0, 0], 12)
        || within([192, 168, 0, 0], 16)
        || within([100, 64, 0, 0], 10)
        || within([192, 0, 0, 0], 24)
        || within([198, 18, 0, 0], 15)
    {
        Class::Private
    } else {
        Class::Public
    }
}

fn classify_v6(v: Ipv6Addr) -> Class {
    let s = v.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if v.is_unspecified() {
        return Class::Forbidden("an unspecified address");
    }
    if v.is_loopback() {
        return Class::Forbidden("a loopback address");
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return classify_v4(embedded(s[6], s[7]));
    }
    // 64:ff9b::/96, the NAT64 well-known prefix: the gateway translates to
    // the IPv4 address in its last 32 bits.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return classify_v4(embedded(s[6], s[7]));
    }
    // 64:ff9b:1::/48, NAT64 for local use.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Class::Private;
    }
    // 2002::/16, 6to4: the IPv4 relay address in bits 16-47.
    if s[0] == 0x2002 {
        return classify_v4(embedded(s[1], s[2]));
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Class::Forbidden("a link-local address");
    }
    // fec0::/10, site-local (deprecated, still routed inside some sites).
    if s[0] & 0xffc0 == 0xfec0 {
        return Class::Forbidden("a site-local address");
    }
    if v.is_multicast() {
        return Class::Forbidden("a multicast address");
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Class::Private;
    }
    Class::Public
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`; a bare address is
/// that one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr> {
        let bad = || {
            Error::Invalid(format!(
                "networking.allow_private: {:?} is not a network (expected e.g. \"10.1.0.0/16\")",
                crate::core::types::truncate_for_message(text)
            ))
        };
        let (addr, bits) = match text.trim().split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().map_err(|_| bad())?)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        if bits > max {
            return Err(bad());
        }
        Ok(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Whether the proxy may connect to `ip`: `Err(reason)` if not. `gateways`
/// are the engine's addresses the proxy's container routes through (they
/// are this machine); `private_ok` the private networks the user allows.
pub fn check(
    ip: IpAddr,
    gateways: &[IpAddr],
    private_ok: &[Cidr],
) -> std::result::Result<(), &'static str> {
    let plain = match ip {
        IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    if gateways.iter().any(|g| *g == plain || *g == ip) {
        return Err("an address of this machine (the engine's host)");
    }
    match classify(ip) {
        Class::Public => Ok(()),
        Class::Private if private_ok.iter().any(|c| c.contains(ip)) => Ok(()),
        Class::Private => Err("a private address (allow it with networking.allow_private)"),
        Class::Forbidden(why) => Err(why),
    }
}

/// The gateways of the routes in `/proc/net/route` text (the IPv4 table:
/// hex, little-endian); the proxy's container reaches the host through them.
pub fn route_gateways(table: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let Some(hex) = line.split_whitespace().nth(2) else {
            continue;
        };
        let Ok(n) = u32::from_str_radix(hex, 16) else {
            continue;
        };
        if n != 0 {
            let ip = IpAddr::V4(Ipv4Addr::from(n.swap_bytes()));
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Class {
        classify(s.parse().unwrap())
    }

    #[test]
    fn never_reachable() {
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            // IPv4 in IPv6 clothing.
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(
                matches!(class(a), Class::Forbidden(_)),
                "{a}: {:?}",
                class(a)
            );
        }
    }

    #[test]
    fn private_ranges() {
        for a in [
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "198.18.0.1",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:10.1.2.3",
            "::ffff:192.168.0.1",
            "64:ff9b::a01:203",
            "64:ff9b:1::1",
            "2002:c0a8:101::1",
        ] {
            assert_eq!(class(a), Class::Private, "{a}");
        }
    }

    #[test]
    fn public_addresses() {
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.169.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(class(a), Class::Public, "{a}");
        }
    }

    #[test]
    fn gateways_and_allowed_private_networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let gw = [ip("203.0.113.1")];
        assert!(check(ip("203.0.113.1"), &gw, &[]).is_err());
        assert!(check(ip("::ffff:203.0.113.1"), &gw, &[]).is_err());
        assert!(check(ip("203.0.113.2"), &gw, &[]).is_ok());
        let ok = [
            Cidr::parse("10.1.0.0/16").unwrap(),
            Cidr::parse("fd00::/8").unwrap(),
        ];
        assert!(check(ip("10.1.2.3"), &[], &ok).is_ok());
        assert!(check(ip("::ffff:10.1.2.3"), &[], &ok).is_ok());
        assert!(check(ip("10.2.0.1"), &[], &ok).is_err());
        assert!(check(ip("fd00::5"), &[], &ok).is_ok());
        // A private allowance never opens the forbidden classes.
        let all = [
            Cidr::parse("0.0.0.0/0").unwrap(),
            Cidr::parse("::/0").unwrap(),
        ];
        assert!(check(ip("127.0.0.1"), &[], &all).is_err());
        assert!(check(ip("fe80::1"), &[], &all).is_err());
        assert!(check(ip("10.0.0.1"), &[ip("10.0.0.1")], &all).is_err());
        for bad in ["10.0.0.0/33", "x", "10.0.0.0/", "::/129", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert!(Cidr::parse("10.1.2.3").unwrap().contains(ip("10.1.2.3")));
    }

    #[test]
    fn gateways_from_the_route_table() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth1\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(
            route_gateways(table),
            vec!["172.18.0.1".parse::<IpAddr>().unwrap()]
        );
    }
}
