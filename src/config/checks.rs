//! The checks of single values that the key table names (`KeySpec::check`): one function a rule,
//! each returning what is wrong in words an admin can act on.

use super::value::Value;

pub(super) fn not_empty(value: &Value) -> Result<(), String> {
    match value {
        Value::Text(s) if s.trim().is_empty() => Err("must not be empty".to_owned()),
        _ => Ok(()),
    }
}

/// `*`, empty, or one origin: scheme, host and optional port, nothing else.
pub(super) fn cors_origin(value: &Value) -> Result<(), String> {
    let Value::Text(text) = value else { return Ok(()) };
    if text.is_empty() || text == "*" {
        return Ok(());
    }
    let parsed = url::Url::parse(text).ok();
    let is_origin = parsed.as_ref().is_some_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.path() == "/"
            && u.query().is_none()
            && u.username().is_empty()
            && !text.ends_with('/')
    });
    if is_origin {
        Ok(())
    } else {
        Err(
            "must be \"*\", empty, or an origin like \"https://tv.example.org\" (scheme, host, optional port)"
                .to_owned(),
        )
    }
}

/// Empty (unset) or at least 8 characters; the message never holds the password.
pub(super) fn password(value: &Value) -> Result<(), String> {
    match value {
        Value::Text(s) if !s.is_empty() && s.chars().count() < 8 => {
            Err(format!("must be at least 8 characters, has {}", s.chars().count()))
        }
        _ => Ok(()),
    }
}

/// `open` or `signed`.
pub(super) fn stream_auth(value: &Value) -> Result<(), String> {
    match value {
        Value::Text(s) if s != "open" && s != "signed" => Err(format!("expected \"open\" or \"signed\", got {s:?}")),
        _ => Ok(()),
    }
}

/// Each entry is `KID:SECRET` with a secret of at least 32 bytes; problems name the entry by its
/// position or key id, never by its secret.
pub(super) fn signing_keys(value: &Value) -> Result<(), String> {
    let Value::List(items) = value else { return Ok(()) };
    let problems: Vec<String> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| crate::auth::keys::check_entry(i + 1, item).err())
        .map(|e| e.to_string())
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Each entry is a host name or address with an optional port, as a `Host` header carries it;
/// the first goes into links as written.
pub(super) fn host_names(value: &Value) -> Result<(), String> {
    let Value::List(items) = value else { return Ok(()) };
    let bad: Vec<String> = items
        .iter()
        .filter(|h| {
            h.is_empty()
                || h.len() > 255
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .map(|h| format!("{h:?}"))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "expected hosts like \"tv.example.org\" or \"tv.lan:8080\" (no scheme or path), got {}",
        bad.join(", ")
    ))
}

pub(super) fn at_least_six(value: &Value) -> Result<(), String> {
    match value {
        Value::Count(n) if *n < 6 => Err("must be at least 6 (live playlists keep six segments)".to_owned()),
        _ => Ok(()),
    }
}

pub(super) fn at_least_one(value: &Value) -> Result<(), String> {
    match value {
        Value::Count(0) => Err("must be at least 1".to_owned()),
        _ => Ok(()),
    }
}

/// Each entry is `SERVICE_REF=PORT`; the reference's grammar is checked where it is used.
pub(super) fn port_overrides(value: &Value) -> Result<(), String> {
    let Value::List(items) = value else { return Ok(()) };
    for item in items {
        let port = item.rsplit_once('=').and_then(|(r, p)| (!r.is_empty()).then_some(p));
        if port.and_then(|p| p.parse::<u16>().ok()).is_none_or(|p| p == 0) {
            return Err(format!(
                "expected entries like \"1:0:19:283D:3FB:1:C00000:0:0:0:=17999\", got {item:?}"
            ));
        }
    }
    Ok(())
}

/// Empty (derive one) or 8 hex digits that pass the HDHomeRun check digit; Plex silently
/// ignores a tuner whose id fails it.
pub(super) fn hdhr_device_id(value: &Value) -> Result<(), String> {
    match value {
        Value::Text(s) if !s.trim().is_empty() => s
            .parse::<crate::model::DeviceId>()
            .map(|_| ())
            .map_err(|e| e.to_string()),
        _ => Ok(()),
    }
}

/// Host CPU usage is a difference between two reads, and needs 200 ms between them to mean anything.
pub(super) fn at_least_200ms(value: &Value) -> Result<(), String> {
    match value {
        Value::Duration(d) if *d < std::time::Duration::from_millis(200) => Err("must be at least 200ms".to_owned()),
        _ => Ok(()),
    }
}

/// Each entry is a CIDR block (`10.0.0.0/8`, `fd00::/8`) or a single address; every bad one is named.
pub(super) fn cidr_blocks(value: &Value) -> Result<(), String> {
    let Value::List(items) = value else { return Ok(()) };
    let bad: Vec<String> = items
        .iter()
        .filter(|item| {
            let item = item.trim();
            item.parse::<ipnet::IpNet>().is_err() && item.parse::<std::net::IpAddr>().is_err()
        })
        .map(|item| format!("{item:?}"))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(format!(
        "expected CIDR blocks like \"10.0.0.0/8\" or \"fd00::/8\", got {}",
        bad.join(", ")
    ))
}

pub(super) fn greater_than_zero(value: &Value) -> Result<(), String> {
    match value {
        Value::Duration(d) if d.is_zero() => Err("must be greater than zero".to_owned()),
        _ => Ok(()),
    }
}

fn has_userinfo(value: &Value) -> bool {
    matches!(value, Value::Url(Some(url)) if !url.username().is_empty() || url.password().is_some())
}

/// Playlists carry this URL to every client, so it must not carry credentials.
pub(super) fn no_userinfo(value: &Value) -> Result<(), String> {
    if has_userinfo(value) {
        return Err("must not contain a user name or password".to_owned());
    }
    Ok(())
}

pub(super) fn no_credentials(value: &Value) -> Result<(), String> {
    if has_userinfo(value) {
        return Err("credentials belong in receiver.username and receiver.password, not in the URL".to_owned());
    }
    Ok(())
}
