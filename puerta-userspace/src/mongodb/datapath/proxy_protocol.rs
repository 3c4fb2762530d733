//! PROXY protocol headers (v1 text, v2 binary), written to the mongos before any client byte so that a
//! `loadBalancerPort` accepts the connection and logs/authorizes the real client address.
//! Spec: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::net::{IpAddr, SocketAddr};

use crate::config::ProxyProtocol;

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V2_PROXY: u8 = 0x21; // version 2, command PROXY
const V2_LOCAL: u8 = 0x20; // version 2, command LOCAL
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;

/// The header for a client flow: `client` is the peer Puerta accepted, `destination` the local address
/// it accepted on. `None` when the endpoint does not use the protocol.
pub fn header(
    version: ProxyProtocol,
    client: SocketAddr,
    destination: SocketAddr,
) -> Option<Vec<u8>> {
    let (src, dst) = same_family(client, destination);
    match version {
        ProxyProtocol::Off => None,
        ProxyProtocol::V1 => Some(v1(src, dst)),
        ProxyProtocol::V2 => Some(v2(src, dst)),
    }
}

/// The header for Puerta's own connections (health checks): no client to report.
pub fn local_header(version: ProxyProtocol) -> Option<Vec<u8>> {
    match version {
        ProxyProtocol::Off => None,
        ProxyProtocol::V1 => Some(b"PROXY UNKNOWN\r\n".to_vec()),
        ProxyProtocol::V2 => {
            let mut h = V2_SIGNATURE.to_vec();
            h.extend_from_slice(&[V2_LOCAL, 0x00, 0, 0]);
            Some(h)
        }
    }
}

/// Both addresses in one family, as the protocol requires: IPv4-mapped IPv6 becomes IPv4, and if the
/// families still differ the IPv4 one is mapped into IPv6.
fn same_family(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
    let (a, b) = (canon(a), canon(b));
    let to_v6 = |s: SocketAddr| match s.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), s.port()),
        IpAddr::V6(_) => s,
    };
    if a.is_ipv4() == b.is_ipv4() {
        (a, b)
    } else {
        (to_v6(a), to_v6(b))
    }
}

fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(V2_PROXY);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            h.push(V2_TCP4);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
        }
        (s, d) => {
            h.push(V2_TCP6);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&v6_octets(s));
            h.extend_from_slice(&v6_octets(d));
        }
    }
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn off_writes_nothing() {
        let a = addr("1.2.3.4:5");
        assert_eq!(header(ProxyProtocol::Off, a, a), None);
        assert_eq!(local_header(ProxyProtocol::Off), None);
    }

    #[test]
    fn v1_tcp4() {
        let h = header(
            ProxyProtocol::V1,
            addr("192.168.0.1:56324"),
            addr("192.168.0.11:443"),
        );
        assert_eq!(
            h.unwrap(),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
    }

    #[test]
    fn v1_tcp6_and_mixed_families() {
        let h = header(
            ProxyProtocol::V1,
            addr("[2001:db8::1]:1000"),
            addr("[::1]:27017"),
        );
        assert_eq!(h.unwrap(), b"PROXY TCP6 2001:db8::1 ::1 1000 27017\r\n");
        let h = header(
            ProxyProtocol::V1,
            addr("10.0.0.1:1000"),
            addr("[::1]:27017"),
        );
        assert_eq!(h.unwrap(), b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1000 27017\r\n");
        // An IPv4 client seen on a dual-stack socket is reported as IPv4.
        let h = header(
            ProxyProtocol::V1,
            addr("[::ffff:10.0.0.1]:1000"),
            addr("[::ffff:10.0.0.2]:27017"),
        );
        assert_eq!(h.unwrap(), b"PROXY TCP4 10.0.0.1 10.0.0.2 1000 27017\r\n");
    }

    #[test]
    fn v2_tcp4() {
        let h = header(
            ProxyProtocol::V2,
            addr("10.1.2.3:4660"),
            addr("127.0.0.1:27017"),
        );
        let mut expected = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        expected.extend_from_slice(&[
            0x21, 0x11, 0x00, 0x0c, // PROXY, TCP over IPv4, 12 address bytes
            10, 1, 2, 3, // source
            127, 0, 0, 1, // destination
            0x12, 0x34, // source port 4660
            0x69, 0x89, // destination port 27017
        ]);
        assert_eq!(h.unwrap(), expected);
    }

    #[test]
    fn v2_tcp6() {
        let h = header(ProxyProtocol::V2, addr("[2001:db8::7]:1"), addr("[::1]:2")).unwrap();
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 0x24]);
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        src[15] = 7;
        assert_eq!(&h[16..32], &src);
        let mut dst = [0u8; 16];
        dst[15] = 1;
        assert_eq!(&h[32..48], &dst);
        assert_eq!(&h[48..], &[0, 1, 0, 2]);
    }

    #[test]
    fn local_headers() {
        assert_eq!(
            local_header(ProxyProtocol::V1).unwrap(),
            b"PROXY UNKNOWN\r\n"
        );
        let v2 = local_header(ProxyProtocol::V2).unwrap();
        assert_eq!(&v2[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(&v2[12..], &[0x20, 0x00, 0x00, 0x00]);
    }
}
