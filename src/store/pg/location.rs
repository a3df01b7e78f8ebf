//! A PostgreSQL recording location: `postgres://user@host:port/db?recording=NAME`.
//!
//! The URL is split into what mf reads itself (`recording`, `sslrootcert`) and what the client
//! library understands (everything else, `sslmode` included). The password comes from the URL,
//! else `PGPASSWORD`, else `~/.pgpass` (`PGPASSFILE` moves it), as libpq does. It is kept only
//! in the client configuration: [`PgLocation::display`] is the only form of the location that
//! mf ever prints or stores, and it has no password.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use percent_encoding::percent_decode_str;

use crate::store::StoreError;

/// The recording name used when the URL has no `recording=` parameter.
pub(crate) const DEFAULT_RECORDING: &str = "default";

/// A parsed PostgreSQL location.
#[derive(Clone)]
pub(crate) struct PgLocation {
    /// The client configuration, password included.
    pub(crate) config: postgres::Config,
    /// The recording inside the database (one schema per recording).
    pub(crate) recording: String,
    /// Extra CA certificates (PEM) to trust for TLS to the database.
    pub(crate) root_cert: Option<PathBuf>,
    /// The location without any password: what messages and metadata say.
    pub(crate) display: String,
}

impl std::fmt::Debug for PgLocation {
    // By hand: the derived form would print the configuration's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// True when `path` names a PostgreSQL database rather than a file.
pub(crate) fn is_postgres_url(path: &Path) -> bool {
    path.to_str()
        .is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
}

/// Passwords taken out of command-line URLs by [`hide_password`], by the URL left behind.
static HIDDEN: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// `arg` without its password when it is a PostgreSQL URL that has one; the password is kept
/// in this process only, for [`PgLocation::parse`] of the returned URL. The command line is
/// rewritten this way before anything reads it, so no message can quote the password.
pub(crate) fn hide_password(arg: &str) -> String {
    if !is_postgres_url(Path::new(arg)) {
        return arg.to_string();
    }
    let shown = redact(arg);
    if let Some(password) = password_in(arg) {
        if let Ok(mut hidden) = HIDDEN.lock() {
            hidden.push((shown.clone(), password));
        }
    }
    shown
}

/// The password a URL holds, in its user part or as a `password=` parameter, decoded.
fn password_in(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or_default();
    let from_user = authority
        .rsplit_once('@')
        .and_then(|(user, _)| user.split_once(':'))
        .map(|(_, p)| p.to_string());
    let from_query = query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.eq_ignore_ascii_case("password").then(|| v.to_string())
    });
    from_user
        .or(from_query)
        .map(|p| percent_decode_str(&p).decode_utf8_lossy().into_owned())
}

fn hidden_password(shown: &str) -> Option<String> {
    let hidden = HIDDEN.lock().ok()?;
    hidden
        .iter()
        .find(|(url, _)| url == shown)
        .map(|(_, p)| p.clone())
}

/// `url` with any password removed from its user part and its query: safe to print.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority_and_path, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match authority_and_path.find('/') {
        Some(i) => authority_and_path.split_at(i),
        None => (authority_and_path, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((user, hosts)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{user}@{hosts}")
        }
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(q) = query {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|kv| {
                let key = kv.split_once('=').map_or(*kv, |(k, _)| k);
                !key.eq_ignore_ascii_case("password")
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

impl PgLocation {
    /// Parses `url`; errors never quote a password.
    pub(crate) fn parse(url: &str) -> Result<PgLocation, StoreError> {
        let display = redact(url);
        let bad = |reason: String| StoreError::BadLocation {
            location: display.clone(),
            reason,
        };
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut recording = None;
        let mut root_cert = None;
        let mut passed = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decode_str(value).decode_utf8_lossy().into_owned();
            match key {
                "recording" => recording = Some(decoded),
                "sslrootcert" => root_cert = Some(PathBuf::from(decoded)),
                _ => passed.push(pair),
            }
        }
        let recording = recording.unwrap_or_else(|| DEFAULT_RECORDING.to_string());
        check_recording_name(&recording).map_err(bad)?;
        let client_url = if passed.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", passed.join("&"))
        };
        // The library's own message can quote the part it did not understand, which may be
        // the password: say only that the URL is malformed, with the safe form of it.
        let mut config = postgres::Config::from_str(&client_url).map_err(|_| {
            bad("not a PostgreSQL URL (postgres://user@host:port/database?recording=NAME)".into())
        })?;
        if config.get_hosts().is_empty() {
            return Err(bad("the URL names no host".into()));
        }
        if config.get_dbname().is_none() {
            return Err(bad("the URL names no database".into()));
        }
        if config.get_user().is_none() {
            let user = std::env::var("PGUSER")
                .or_else(|_| std::env::var("USER"))
                .map_err(|_| {
                    bad("the URL names no user (and neither PGUSER nor USER is set)".into())
                })?;
            config.user(&user);
        }
        if config.get_connect_timeout().is_none() {
            // An unreachable database should fail the command in seconds, not in minutes.
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        config.application_name("mf");
        if config.get_password().is_none() {
            if let Some(password) =
                hidden_password(url).or_else(|| password_from_environment(&config))
            {
                config.password(password);
            }
        }
        Ok(PgLocation {
            config,
            recording,
            root_cert,
            display,
        })
    }

    /// The schema holding this recording's tables, quoted for SQL.
    pub(crate) fn schema(&self) -> String {
        format!("\"mf_{}\"", self.recording)
    }
}

/// Recording names become schema names: letters, digits, `_`, `-` and `.`, at most 50.
fn check_recording_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "recording={name:?}: a recording name is 1 to 50 letters, digits, '_', '-' or '.'"
        ))
    }
}

/// `PGPASSWORD`, else the first matching line of the password file.
fn password_from_environment(config: &postgres::Config) -> Option<String> {
    if let Ok(p) = std::env::var("PGPASSWORD") {
        return Some(p);
    }
    let file = match std::env::var_os("PGPASSFILE") {
        Some(f) => PathBuf::from(f),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first()? {
        postgres::config::Host::Tcp(h) => h.clone(),
        #[cfg(unix)]
        postgres::config::Host::Unix(_) => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let wanted = [
        host.as_str(),
        port.as_str(),
        config.get_dbname().unwrap_or_default(),
        config.get_user().unwrap_or_default(),
    ];
    pgpass_lookup(&text, &wanted)
}

/// The password of the first line of a `.pgpass` text whose four fields match `wanted`
/// (host, port, database, user; `*` matches anything, `\` escapes `:` and `\`).
fn pgpass_lookup(text: &str, wanted: &[&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() != 5 {
            continue;
        }
        let matches = fields[..4]
            .iter()
            .zip(wanted)
            .all(|(field, want)| field == "*" || field == want);
        if matches {
            return Some(fields[4].clone());
        }
    }
    None
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            _ => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_display_form() {
        let loc = PgLocation::parse(
            "postgres://alice:s3cret@db.example:5433/team?recording=checkout-1&sslmode=disable",
        )
        .unwrap();
        assert_eq!(loc.recording, "checkout-1");
        assert!(!loc.display.contains("s3cret"), "{}", loc.display);
        assert!(!format!("{loc:?}").contains("s3cret"));
        assert_eq!(loc.config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(
            redact("postgresql://u:pw@h/d?password=pw2&recording=r"),
            "postgresql://u@h/d?recording=r"
        );
    }

    #[test]
    fn hidden_passwords_are_found_again_by_the_url_left_behind() {
        let shown = hide_password("postgres://bob:p%40ss@h:1/d?recording=r");
        assert_eq!(shown, "postgres://bob@h:1/d?recording=r");
        let loc = PgLocation::parse(&shown).unwrap();
        assert_eq!(loc.config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(hide_password("api.db"), "api.db");
    }

    #[test]
    fn bad_urls_are_refused_without_the_password() {
        for url in [
            "postgres://u:topsecret@h/d?recording=../x",
            "postgres://u:topsecret@h/d?bogus_option=1",
            "postgres://u:topsecret@h",
        ] {
            let e = PgLocation::parse(url).unwrap_err().to_string();
            assert!(!e.contains("topsecret"), "{e}");
        }
    }

    #[test]
    fn pgpass_lines_match_with_wildcards_and_escapes() {
        let text = "# comment\nother:5432:db:u:no\n*:5432:d\\:b:u:pa\\:ss\n";
        assert_eq!(
            pgpass_lookup(text, &["h", "5432", "d:b", "u"]),
            Some("pa:ss".into())
        );
        assert_eq!(pgpass_lookup(text, &["h", "5433", "d:b", "u"]), None);
    }
}
