//! What kind of address an IP is: `global` unicast, or one of the classes an agent must not
//! reach through the proxy unless `proxy.allow_private` lists it. Pure; table-tested in the
//! style of smokescreen's `ip_policy` tests.
//!
//! IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`)
//! and 6to4 (`2002::/16`) addresses are classified by the IPv4 address they embed, so
//! `[::ffff:127.0.0.1]` is loopback however it is spelled.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// The class of one address (`input.destination.class` in policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddrClass {
    /// Global unicast: reachable on the internet.
    Global,
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// RFC 1918 (10/8, 172.16/12, 192.168/16) and deprecated IPv6 site-local (fec0::/10).
    Private,
    /// Carrier-grade NAT shared space, 100.64.0.0/10.
    Cgnat,
    /// 169.254.0.0/16 (every cloud metadata address) and fe80::/10.
    LinkLocal,
    /// fc00::/7.
    UniqueLocal,
    /// 0.0.0.0/8 and ::.
    Unspecified,
    /// 224.0.0.0/4 and ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// Documentation, benchmarking, IETF protocol assignments, 240/4 and unallocated space.
    Reserved,
    /// Cloud host services at otherwise global addresses: Azure's WireServer 168.63.129.16.
    Metadata,
}

impl AddrClass {
    /// The lower-case name used in policy input, logs and refusals.
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Global => "global",
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::Cgnat => "cgnat",
            AddrClass::LinkLocal => "link_local",
            AddrClass::UniqueLocal => "unique_local",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Multicast => "multicast",
            AddrClass::Broadcast => "broadcast",
            AddrClass::Reserved => "reserved",
            AddrClass::Metadata => "metadata",
        }
    }
}

/// The address an IPv6 address stands for when it embeds an IPv4 one (mapped, compatible,
/// NAT64 well-known prefix, 6to4); otherwise the address itself. IPv4 stays as it is.
pub fn effective(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // ::ffff:a.b.c.d (mapped)
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return Some(tail);
    }
    // ::a.b.c.d (deprecated compatible form), but not :: and ::1 themselves.
    if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
        return Some(tail);
    }
    // 64:ff9b::/96 (NAT64 well-known prefix).
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    // 2002:AABB:CCDD::/48 (6to4).
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// Classifies one address (embedded IPv4 forms by what they embed).
pub fn classify(ip: IpAddr) -> AddrClass {
    match effective(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let o = ip.octets();
    let in_net = |net: [u8; 4], bits: u32| {
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
    };
    if ip == Ipv4Addr::BROADCAST {
        AddrClass::Broadcast
    } else if ip == Ipv4Addr::new(168, 63, 129, 16) {
        AddrClass::Metadata
    } else if o[0] == 0 {
        AddrClass::Unspecified
    } else if o[0] == 127 {
        AddrClass::Loopback
    } else if in_net([10, 0, 0, 0], 8)
        || in_net([172, 16, 0, 0], 12)
        || in_net([192, 168, 0, 0], 16)
    {
        AddrClass::Private
    } else if in_net([100, 64, 0, 0], 10) {
        AddrClass::Cgnat
    } else if in_net([169, 254, 0, 0], 16) {
        AddrClass::LinkLocal
    } else if in_net([224, 0, 0, 0], 4) {
        AddrClass::Multicast
    } else if in_net([240, 0, 0, 0], 4)
        || in_net([192, 0, 0, 0], 24)
        || in_net([192, 0, 2, 0], 24)
        || in_net([198, 51, 100, 0], 24)
        || in_net([203, 0, 113, 0], 24)
        || in_net([198, 18, 0, 0], 15)
        || in_net([192, 88, 99, 0], 24)
    {
        AddrClass::Reserved
    } else {
        AddrClass::Global
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let s = ip.segments();
    if ip.is_unspecified() {
        AddrClass::Unspecified
    } else if ip.is_loopback() {
        AddrClass::Loopback
    } else if s[0] & 0xff00 == 0xff00 {
        AddrClass::Multicast
    } else if s[0] & 0xffc0 == 0xfe80 {
        AddrClass::LinkLocal
    } else if s[0] & 0xffc0 == 0xfec0 {
        AddrClass::Private
    } else if s[0] & 0xfe00 == 0xfc00 {
        AddrClass::UniqueLocal
    } else if s[0] & 0xe000 != 0x2000
        // 2001::/23 IETF protocol assignments (incl. Teredo 2001::/32), 2001:db8::/32 and
        // 3fff::/20 documentation, 5f00::/16 SRv6 SIDs, 64:ff9b:1::/48 local-use NAT64.
        || (s[0] == 0x2001 && s[1] < 0x0200)
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        || (s[0] == 0x3fff && s[1] < 0x1000)
    {
        AddrClass::Reserved
    } else {
        AddrClass::Global
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use AddrClass::*;
        for (ip, want) in [
            ("8.8.8.8", Global),
            ("140.82.112.6", Global),
            ("1.1.1.1", Global),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.1.2.3", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Global),
            ("192.168.1.1", Private),
            ("100.64.0.1", Cgnat),
            ("100.127.255.255", Cgnat),
            ("100.128.0.1", Global),
            ("169.254.169.254", LinkLocal),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.2.1", Reserved),
            ("198.18.0.1", Reserved),
            ("203.0.113.9", Reserved),
            ("168.63.129.16", Metadata),
            ("100.100.100.200", Cgnat),
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:8.8.8.8", Global),
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b::808:808", Global),
            ("2002:7f00:1::", Loopback),
            ("2002:0808:0808::1", Global),
            ("fe80::1", LinkLocal),
            ("fd00:ec2::254", UniqueLocal),
            ("fc00::1", UniqueLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("2001:db8::1", Reserved),
            ("2001::1", Reserved),
            ("3fff::1", Reserved),
            ("100::1", Reserved),
            ("2606:4700:4700::1111", Global),
            ("2a00:1450:4001:80b::200e", Global),
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(classify(addr), want, "{ip}");
        }
    }

    #[test]
    fn embedded_forms_resolve_to_their_ipv4() {
        assert_eq!(
            effective("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            effective("::1".parse().unwrap()),
            "::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            effective("2606:4700::1".parse().unwrap()),
            "2606:4700::1".parse::<IpAddr>().unwrap()
        );
    }
}
