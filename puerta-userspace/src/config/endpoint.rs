use std::fmt;

/// A backend address as the operator wrote it. Names are resolved when connecting, not at load, so a
/// config stays valid while DNS is briefly unavailable and follows DNS changes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Relative share of new clients (smooth weighted round-robin). At least 1.
    pub weight: u32,
    /// PROXY protocol header written before any client byte (MongoDB mode).
    pub proxy_protocol: ProxyProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    #[default]
    Off,
    V1,
    V2,
}

impl Endpoint {
    /// Parses `host:port` (`[v6]:port` for IPv6 literals). The error says what is wrong.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("`{text}` is not host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        if host.contains(char::is_whitespace) {
            return Err(format!("`{text}` has white space in the host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{text}`: port `{port}` is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err(format!("`{text}`: port 0 is not a valid backend port"));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
            weight: 1,
            proxy_protocol: ProxyProtocol::Off,
        })
    }

    /// `host:port`, suitable for `tokio::net::lookup_host`/`TcpStream::connect`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address())
    }
}
