//! Syntax rules for names and values, as the Kubernetes API server enforces them
//! (apimachinery `validation`), plus interface names. Each returns why a value is bad.

fn is_alnum_lower(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// RFC 1123 label: namespaces, and each part of a subdomain.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 63 {
        return Err(format!("{s:?} is longer than 63 characters"));
    }
    let b = s.as_bytes();
    let ok = b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
        && is_alnum_lower(b[0])
        && is_alnum_lower(b[b.len() - 1]);
    if !ok {
        return Err(format!(
            "{s:?} is not a valid DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain: names of policies, endpoints and nodes; label-key prefixes.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > 253 {
        return Err(format!("{s:?} is longer than 253 characters"));
    }
    let b = s.as_bytes();
    let ok = b
        .iter()
        .all(|&c| is_alnum_lower(c) || c == b'-' || c == b'.')
        && s.split('.').all(|part| {
            let p = part.as_bytes();
            !p.is_empty() && is_alnum_lower(p[0]) && is_alnum_lower(p[p.len() - 1])
        });
    if !ok {
        return Err(format!(
            "{s:?} is not a valid DNS-1123 subdomain: lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// The "name" part of a qualified name and the whole of a label value:
/// up to 63 of `[A-Za-z0-9_.-]`, starting and ending alphanumeric.
fn label_name_chars(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter()
        .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A label key: `[prefix/]name`, prefix a DNS-1123 subdomain, name up to 63 characters.
pub fn label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        dns1123_subdomain(prefix).map_err(|e| format!("label key {s:?}: prefix {e}"))?;
    }
    if name.is_empty() {
        return Err(format!("label key {s:?}: name part must not be empty"));
    }
    if name.len() > 63 {
        return Err(format!(
            "label key {s:?}: name part is longer than 63 characters"
        ));
    }
    if !label_name_chars(name) {
        return Err(format!(
            "label key {s:?} is not valid: letters, digits, '-', '_' and '.', starting and ending with a letter or digit, optionally after a DNS prefix and '/'"
        ));
    }
    Ok(())
}

/// A label value: empty, or up to 63 characters of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 63 {
        return Err(format!("label value {s:?} is longer than 63 characters"));
    }
    if !label_name_chars(s) {
        return Err(format!(
            "label value {s:?} is not valid: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// A named port (IANA_SVC_NAME): 1–15 of `[a-z0-9-]`, at least one letter,
/// no leading, trailing or doubled '-'.
pub fn port_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let why = if b.is_empty() {
        Some("must not be empty")
    } else if b.len() > 15 {
        Some("is longer than 15 characters")
    } else if !b.iter().all(|&c| is_alnum_lower(c) || c == b'-') {
        Some("may contain only lower-case letters, digits and '-'")
    } else if !b.iter().any(|c| c.is_ascii_lowercase()) {
        Some("must contain at least one letter")
    } else if b[0] == b'-' || b[b.len() - 1] == b'-' || s.contains("--") {
        Some("must not start or end with '-' or contain '--'")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("port name {s:?} {why}")),
        None => Ok(()),
    }
}

/// A Linux interface name: 1–15 bytes, not `.` or `..`, no `/`, `:`, whitespace
/// or control characters; `"` and `\` are refused too so names stay printable in nft syntax.
pub fn interface_name(s: &str) -> Result<(), String> {
    let why = if s.is_empty() {
        Some("must not be empty")
    } else if s.len() > 15 {
        Some("is longer than 15 bytes")
    } else if s == "." || s == ".." {
        Some("is reserved")
    } else if s == "lo" {
        Some("is the host's loopback, not a workload's interface")
    } else if s.contains('*') {
        Some("must not contain '*' (wildcards are not interface names)")
    } else if s.chars().any(|c| {
        c == '/' || c == ':' || c == '"' || c == '\\' || c.is_whitespace() || c.is_control()
    }) {
        Some("must not contain '/', ':', '\"', '\\', whitespace or control characters")
    } else {
        None
    };
    match why {
        Some(why) => Err(format!("interface name {s:?} {why}")),
        None => Ok(()),
    }
}

/// IPv4 text with a zero-padded octet (`010.0.0.1`): C's `inet_aton` and iptables read
/// it as octal, Rust's parser as decimal. Ambiguous in a firewall, so refused.
pub fn zero_padded_ipv4(s: &str) -> bool {
    let addr = s.split('/').next().unwrap_or(s);
    addr.contains('.')
        && !addr.contains(':')
        && addr
            .split('.')
            .any(|octet| octet.len() > 1 && octet.starts_with('0'))
}

/// An address or CIDR written so that every tool reads it the same way.
pub fn unambiguous_ip_text(s: &str) -> Result<(), String> {
    if zero_padded_ipv4(s) {
        return Err(format!(
            "{s:?} has a zero-padded octet, which some tools read as octal; write it without leading zeros"
        ));
    }
    Ok(())
}

/// Why an address cannot be a workload's own, if it cannot.
pub fn endpoint_address(ip: std::net::IpAddr) -> Result<(), String> {
    use std::net::IpAddr;
    let why = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Some("is the unspecified address"),
        IpAddr::V4(v4) if v4.is_loopback() => Some("is a loopback address"),
        IpAddr::V4(v4) if v4.is_multicast() => Some("is a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("is the broadcast address"),
        IpAddr::V4(v4) if v4.octets()[0] == 0 => Some("is in 0.0.0.0/8 (\"this network\")"),
        IpAddr::V4(v4) if v4.octets()[0] >= 240 => Some("is in the reserved range 240.0.0.0/4"),
        // Link-local addresses are unique only per link: they cannot identify a workload
        // in selectors, and link-local sources are allowed from its interface anyway.
        IpAddr::V4(v4) if v4.is_link_local() => Some("is link-local (169.254.0.0/16)"),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("is link-local (fe80::/10)"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("is the unspecified address"),
        IpAddr::V6(v6) if v6.is_loopback() => Some("is the loopback address"),
        IpAddr::V6(v6) if v6.is_multicast() => Some("is a multicast address"),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            Some("is an IPv4-mapped IPv6 address; write the IPv4 address")
        }
        _ => None,
    };
    match why {
        Some(why) => Err(format!("{ip} {why}, not a workload's address")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        for (text, zero_padded) in [
            ("010.0.0.1", true),
            ("10.0.0.1/08", false),
            ("10.00.0.0/8", true),
            ("10.0.0.0/8", false),
            ("fd00::0a", false),
            ("0.0.0.0/0", false),
        ] {
            assert_eq!(zero_padded_ipv4(text), zero_padded, "{text}");
        }
        for (text, ok) in [
            ("10.0.0.1", true),
            ("fd00::1", true),
            ("0.0.0.0", false),
            ("127.0.0.1", false),
            ("224.0.0.1", false),
            ("255.255.255.255", false),
            ("::", false),
            ("::1", false),
            ("ff02::1", false),
            ("::ffff:10.0.0.1", false),
        ] {
            assert_eq!(
                endpoint_address(text.parse().unwrap()).is_ok(),
                ok,
                "{text}"
            );
        }
    }

    #[test]
    fn table() {
        type Check = fn(&str) -> Result<(), String>;
        let cases: &[(Check, &str, bool)] = &[
            (dns1123_label, "myns", true),
            (dns1123_label, "my-ns-1", true),
            (dns1123_label, "", false),
            (dns1123_label, "MyNs", false),
            (dns1123_label, "-a", false),
            (dns1123_label, "a.b", false),
            (dns1123_label, &"a".repeat(64), false),
            (dns1123_subdomain, "web.v1", true),
            (dns1123_subdomain, "a..b", false),
            (dns1123_subdomain, "a_b", false),
            (dns1123_subdomain, "a.", false),
            (label_key, "app", true),
            (label_key, "kubernetes.io/metadata.name", true),
            (label_key, "App_1.x", true),
            (label_key, "", false),
            (label_key, "a/b/c", false),
            (label_key, "Bad.Prefix/x", false),
            (label_key, "/x", false),
            (label_key, "x/", false),
            (label_key, "-x", false),
            (label_value, "", true),
            (label_value, "v1.2_3-a", true),
            (label_value, "a b", false),
            (label_value, "a-", false),
            (label_value, &"v".repeat(64), false),
            (port_name, "http", true),
            (port_name, "grpc-web", true),
            (port_name, "h2c", true),
            (port_name, "80", false),
            (port_name, "HTTP", false),
            (port_name, "-http", false),
            (port_name, "a--b", false),
            (port_name, "abcdefghijklmnop", false),
            (interface_name, "veth-web1", true),
            (interface_name, "cali0123456789a", true),
            (interface_name, "cali0123456789ab", false),
            (interface_name, "eth/0", false),
            (interface_name, "eth 0", false),
            (interface_name, "..", false),
            (interface_name, "a\"b", false),
            (interface_name, "lo", false),
            (interface_name, "veth*", false),
            (interface_name, "lo1", true),
        ];
        for (check, input, ok) in cases {
            assert_eq!(check(input).is_ok(), *ok, "{input:?}: {:?}", check(input));
        }
    }
}
