//! Names that hold secrets: headers, query parameters and JSON fields whose values must not
//! reach a fixture file, a report or a log line. `infer` redacts fixtures with them, `diff`
//! its reports.

/// What a redacted value is replaced with.
pub const REDACTED: &str = "<redacted>";

const HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
];
const QUERY: &[&str] = &[
    "api_key",
    "apikey",
    "api-key",
    "key",
    "token",
    "access_token",
    "refresh_token",
    "secret",
    "password",
    "sig",
    "signature",
    "auth",
];
const JSON_WORDS: &[&str] = &[
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "credential",
    "private_key",
];

/// True when a header of this (lowercase) name carries a credential.
pub fn secret_header(lower: &str) -> bool {
    HEADERS.contains(&lower)
}

/// True when a query parameter of this (lowercase) name carries a credential.
pub fn secret_query(lower: &str) -> bool {
    QUERY.contains(&lower)
}

/// True when a JSON field of this (lowercase) name holds a secret (`password`,
/// `access_token`); `token_type: bearer`, `password_policy`… describe a secret without being one.
pub fn secret_field(lower: &str) -> bool {
    let descriptive = [
        "_type",
        "_policy",
        "_hint",
        "_expires",
        "_expires_at",
        "_length",
    ]
    .iter()
    .any(|s| lower.ends_with(s));
    JSON_WORDS.iter().any(|w| lower.contains(w)) && !descriptive
}
