//! Parsers for command-line values (clap value parsers): each returns a
//! one-line message naming what is expected.

use std::net::SocketAddr;
use std::time::Duration;

pub fn parse_update_status(s: &str) -> Result<crate::protocol::Status, String> {
    match crate::protocol::Status::parse(s) {
        Some(crate::protocol::Status::Queued) | None => {
            Err("expected running, succeeded, failed or cancelled".into())
        }
        Some(st) => Ok(st),
    }
}

pub fn parse_json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| {
        format!("not valid JSON ({e}); quote it for the shell, e.g. '{{\"rows\":42}}'")
    })
}

pub fn parse_job_error(s: &str) -> Result<crate::protocol::JobError, String> {
    serde_json::from_str(s).map_err(|_| {
        "expected JSON like '{\"code\":\"timeout\",\"message\":\"took too long\"}'".to_string()
    })
}

/// Parses durations such as `90s`, `10m`, `2h` or `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|_| format!("expected a duration such as 90s, 10m or 2h, got '{s}'"))?;
    if d.is_zero() {
        return Err("the duration must be greater than zero".into());
    }
    Ok(d)
}

/// Like `parse_duration`, but `0` (turning the feature off) is allowed.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s).map_err(|e| format!("{e} (or 0 to turn it off)"))
}

/// A coalescing window: `0` (off) up to 10 seconds.
pub fn parse_coalesce_window(s: &str) -> Result<Duration, String> {
    let window = parse_duration_or_zero(s)?;
    let most = crate::publish::coalesce::MAX_WINDOW;
    if window > most {
        return Err(format!(
            "a coalescing window of at most {}s keeps subscribers current, got '{s}'",
            most.as_secs()
        ));
    }
    Ok(window)
}

/// A download URL lifetime: positive, at most 7 days.
pub fn parse_file_url_ttl(s: &str) -> Result<Duration, String> {
    let ttl = parse_duration(s)?;
    if ttl.is_zero() || ttl > crate::files::MAX_DOWNLOAD_TTL {
        return Err(format!(
            "a file URL lives from 1s to 7d (presigned URLs cannot outlive 7 days), got '{s}'"
        ));
    }
    Ok(ttl)
}

pub fn parse_stage(s: &str) -> Result<String, String> {
    let reserved = ["jobs", "healthz", "metrics", "@connections", "files"];
    if s.is_empty()
        || s.len() > 128
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(
            "a stage name uses only letters, digits, '-' and '_' (like dev or prod)".into(),
        );
    }
    if reserved.contains(&s) {
        return Err(format!(
            "'{s}' is a reserved path; pick another stage name such as dev"
        ));
    }
    Ok(s.to_string())
}

/// `127.0.0.1:8080`, `[::1]:8080`, `localhost:8080`, or a bare port (on 127.0.0.1).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let expected = || {
        format!(
            "expected HOST:PORT (127.0.0.1:8080, 0.0.0.0:8080, localhost:8080) or a port (8080), got '{s}'"
        )
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = s.parse().map_err(|_| expected())?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(expected)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(expected());
    }
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host}': {e}"))?
        .collect();
    // Prefer IPv4, as browsers try 127.0.0.1 for localhost first.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("'{host}' resolves to no address"))
}

/// A whole number above 0 (a clap value parser).
pub fn parse_positive<T: std::str::FromStr + PartialEq + Default>(s: &str) -> Result<T, String> {
    match s.trim().parse::<T>() {
        Ok(n) if n != T::default() => Ok(n),
        _ => Err(format!("expected a whole number above 0, got '{s}'")),
    }
}

pub fn parse_base_url(s: &str) -> Result<String, String> {
    let ok = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .any(|p| s.starts_with(p) && s.len() > p.len());
    if ok {
        Ok(s.trim_end_matches('/').to_string())
    } else {
        Err(format!(
            "expected an absolute URL such as https://api.example.com, got '{s}'"
        ))
    }
}

pub fn parse_table(s: &str) -> Result<String, String> {
    let ok = (3..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(s.to_string())
    } else {
        Err("a DynamoDB table name has 3 to 255 letters, digits, '_', '-' or '.'".into())
    }
}
