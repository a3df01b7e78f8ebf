//! Who may talk to a local control or viewer port: the checks every admin-like listener
//! (the replay's admin API, its pages, `mf ui`) runs before anything else.
//!
//! A port on loopback is still reachable from every web page the user opens: a page can POST
//! to `http://127.0.0.1:PORT` with a "simple" content type (no preflight), and DNS rebinding
//! lets a page read answers under its own host name. So a request whose `Origin` is not the
//! listener's own is refused; without a token, the `Host` must be an IP literal or
//! `localhost` (a rebinding page's host is a DNS name); and every mutation must say
//! `Content-Type: application/json` (or YAML for rules), which no page can send cross-site
//! without a preflight these servers never answer.
//!
//! With a token, a request proves it with `Authorization: Bearer TOKEN` (scripts, `mf ctl`),
//! or, for a browser, which cannot add that header to a page load, with `?token=TOKEN` on a
//! `GET` (answered with a `SameSite=Strict` cookie) and the cookie from then on: a cross-site
//! request does not carry a strict cookie, so the token stays the only key.

use http::{HeaderMap, Method};

/// The cookie a browser keeps the token in after opening a page with `?token=`.
pub const TOKEN_COOKIE: &str = "mf_admin_token";

/// A request the guard turned away: the status to answer and why, for the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

/// Why a request must not reach the listener on `port` (see the module header); `None` lets
/// it through. `query` is the raw query string, if any.
pub fn refusal(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    port: u16,
    token: Option<&str>,
) -> Option<Refusal> {
    let header = |name: http::header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
    };
    let refuse = |status: u16, message: String| Some(Refusal { status, message });
    let host = header(http::header::HOST).unwrap_or_default();
    if let Some(origin) = header(http::header::ORIGIN) {
        let own = ["http://", "https://"]
            .iter()
            .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}{host}")));
        if !own {
            return refuse(
                403,
                format!("requests from origin {origin} are not accepted"),
            );
        }
    }
    if let Some(token) = token {
        let bearer = header(http::header::AUTHORIZATION);
        let bearer = bearer
            .as_deref()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .map(String::from);
        let cookie = cookie_value(headers, TOKEN_COOKIE);
        let in_query = (*method == Method::GET)
            .then(|| query_token(query))
            .flatten();
        let given = [bearer, cookie, in_query]
            .into_iter()
            .flatten()
            .any(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !given {
            return refuse(401, "missing or wrong bearer token".into());
        }
    } else if !host_is_local(&host, port) {
        return refuse(
            403,
            format!(
                "Host {host:?} is not this admin address (use 127.0.0.1:{port}, or set --admin-token)"
            ),
        );
    }
    let mutation = matches!(*method, Method::POST | Method::PUT | Method::DELETE);
    if mutation {
        let ct = header(http::header::CONTENT_TYPE)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim().to_string();
        let yaml = path.trim_end_matches('/') == "/api/rules"
            && matches!(
                essence.as_str(),
                "application/yaml" | "application/x-yaml" | "text/yaml"
            );
        if essence != "application/json" && !yaml {
            return refuse(415, "changes need Content-Type: application/json".into());
        }
    }
    None
}

/// The `Set-Cookie` value that keeps a token given as `?token=` for the next requests of
/// this browser (the guard has already checked it), or `None` when the query has none.
pub fn token_cookie(query: Option<&str>) -> Option<String> {
    let token = query_token(query)?;
    // A token is opaque to us; keep it out of the header when it could break the syntax.
    if token
        .bytes()
        .any(|b| !b.is_ascii_graphic() || b == b';' || b == b',')
    {
        return None;
    }
    Some(format!(
        "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    ))
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim().to_string())
        })
}

/// True when `host` (a Host header) names this machine by an IP literal or `localhost`, with
/// the listener's port (or none, which means the scheme's default and cannot be ours anyway
/// unless the listener is there).
pub fn host_is_local(host: &str, port: u16) -> bool {
    let (name, given_port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => (n, p.parse::<u16>().ok()),
        _ => (host, None),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let named_ok =
        name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok();
    named_ok && given_port.unwrap_or(80) == port
}

/// Compares two byte strings in time that depends only on their lengths, so the token cannot
/// be guessed byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_browser_proves_the_token_by_query_then_cookie() {
        let host = [("host", "127.0.0.1:9901")];
        let check = |m: Method, q: Option<&str>, h: &HeaderMap| {
            refusal(&m, "/", q, h, 9901, Some("s3cret")).map_or(200, |r| r.status)
        };
        assert_eq!(check(Method::GET, None, &headers(&host)), 401);
        assert_eq!(
            check(Method::GET, Some("token=s3cret"), &headers(&host)),
            200
        );
        // Only a page load may carry it in the URL.
        let json = [
            ("host", "127.0.0.1:9901"),
            ("content-type", "application/json"),
        ];
        assert_eq!(
            check(Method::POST, Some("token=s3cret"), &headers(&json)),
            401
        );
        assert_eq!(
            token_cookie(Some("a=1&token=s3cret")).as_deref(),
            Some("mf_admin_token=s3cret; Path=/; HttpOnly; SameSite=Strict")
        );
        let with_cookie = [
            ("host", "127.0.0.1:9901"),
            ("cookie", "x=1; mf_admin_token=s3cret"),
            ("content-type", "application/json"),
        ];
        assert_eq!(check(Method::POST, None, &headers(&with_cookie)), 200);
        let wrong = [
            ("host", "127.0.0.1:9901"),
            ("cookie", "mf_admin_token=nope"),
        ];
        assert_eq!(check(Method::GET, None, &headers(&wrong)), 401);
        assert_eq!(token_cookie(Some("token=a;b")), None);
    }
}
