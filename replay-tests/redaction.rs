//! Secrets never reach a recording: every redaction path (header, query, nested JSON, form,
//! multipart, gRPC metadata, response Set-Cookie) recorded through the real proxy (and once
//! through `mf import` of a tcpdump capture), then every table of the db — every column,
//! zstd blobs decompressed — and the raw files are searched for the secret. The replay of the
//! redacted recording still answers a client that sends the real secret.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::capture::{import, load, Tcpdump};
use crate::common::*;

/// Where `needle` occurs in the recording `db`: `table.column` of every cell holding it (text,
/// raw blob or zstd-decompressed blob), and `file NAME` for the raw files of the db.
fn find_secret(db: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the recording");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(tables.iter().any(|t| t == "exchanges"), "{tables:?}");
    let has = |data: &[u8]| data.windows(needle.len()).any(|w| w == needle.as_bytes());
    for table in &tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, col) in names.iter().enumerate() {
                let found = match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) => has(t),
                    rusqlite::types::ValueRef::Blob(b) => {
                        has(b) || zstd::decode_all(b).is_ok_and(|d| has(&d))
                    }
                    _ => false,
                };
                if found {
                    hits.push(format!("{table}.{col}"));
                }
            }
        }
    }
    let dir = db.parent().unwrap();
    let stem = db.file_name().unwrap().to_string_lossy().into_owned();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&stem) && has(&std::fs::read(entry.path()).unwrap()) {
            hits.push(format!("file {name}"));
        }
    }
    hits
}

fn assert_absent(db: &Path, secrets: &[&str]) {
    for s in secrets {
        let hits = find_secret(db, s);
        assert!(hits.is_empty(), "secret {s:?} stored in {hits:?}");
    }
}

/// The recorded response body of the exchange whose target starts with `path`.
fn recorded_body(db: &Path, path: &str) -> Vec<u8> {
    load(db)
        .into_iter()
        .find(|e| e.request.target.starts_with(path))
        .and_then(|e| e.response)
        .map(|r| r.body.data.to_vec())
        .unwrap_or_else(|| panic!("no recorded answer for {path}"))
}

const BEARER: &str = "sk-live-HEADER-7c1d9e3b";
const COOKIE: &str = "cookie-SESSION-2a6f8d";
const API_KEY: &str = "apikey-HEADER-51b7e0";
const QUERY_KEY: &str = "query-KEY-93c2aa5d";
const PASSWORD: &str = "json-PASSWORD-c4e88f";
const SSN: &str = "ssn-123-45-6789";
const TENANT: &str = "tenant-acme-0042";

/// curl arguments of the JSON request carrying every kind of secret.
fn json_request(base: &str, bearer: &str, password: &str) -> Vec<String> {
    [
        "-H",
        &format!("Authorization: Bearer {bearer}"),
        "-H",
        &format!("Cookie: theme=dark; session={COOKIE}"),
        "-H",
        &format!("X-Api-Key: {API_KEY}"),
        "-H",
        &format!("X-Tenant: {TENANT}"),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!(
            r#"{{"user":{{"name":"ada","password":"{password}","ssn":"{SSN}"}},"items":[{{"id":1}}]}}"#
        ),
        &format!("{base}/echo?page=1&api_key={QUERY_KEY}"),
    ]
    .map(String::from)
    .to_vec()
}

fn curl_owned(args: &[String]) -> CurlResult {
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn header_query_and_nested_json_secrets_are_not_stored_and_replay_still_answers() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("secrets.db");
    let up = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(
        &up.url(),
        &db,
        &["--redact", "X-Tenant", "--redact", "$.user.ssn"],
    );
    let sent = curl_owned(&json_request(&rec.url(), BEARER, PASSWORD));
    assert_eq!(sent.status(), 200);
    // The client got the real answer: the upstream echoed the real password.
    assert!(String::from_utf8_lossy(&sent.body).contains(PASSWORD));
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    assert!(
        rec.stderr().contains("0 filtered, 0 deduplicated"),
        "{}",
        rec.stderr()
    );
    drop(up);
    assert_absent(
        &db,
        &[BEARER, COOKIE, API_KEY, QUERY_KEY, PASSWORD, SSN, TENANT],
    );
    let ex = &load(&db)[0];
    // Shapes survive: the scheme, the cookie names, the JSON around the redacted fields.
    let auth = ex
        .request
        .headers
        .iter()
        .find(|h| h.name == "Authorization")
        .unwrap();
    assert!(
        auth.value_str().starts_with("Bearer mf-redacted-"),
        "{auth:?}"
    );
    let cookie = ex
        .request
        .headers
        .iter()
        .find(|h| h.name == "Cookie")
        .unwrap();
    assert!(
        cookie.value_str().contains("; session=mf-redacted-"),
        "{cookie:?}"
    );
    assert!(ex
        .request
        .target
        .starts_with("/echo?page=1&api_key=mf-redacted-"));
    let body: serde_json::Value = serde_json::from_slice(&ex.request.body.data).unwrap();
    assert_eq!(body["user"]["name"], "ada");
    assert_eq!(ex.request.body.size, ex.request.body.data.len() as u64);

    // The real client, with real (and other) secrets, is answered with the recorded body.
    let recorded = recorded_body(&db, "/echo");
    let replay = start_replay(&db, &[]);
    let got = curl_owned(&json_request(
        &replay.url(),
        "sk-live-OTHER-TOKEN",
        "another-password",
    ));
    assert_eq!(got.status(), 200, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(got.body, recorded);
    // Anything else in the body still has to match.
    let mut other = json_request(&replay.url(), BEARER, PASSWORD);
    let i = other.iter().position(|a| a == "--data-binary").unwrap() + 1;
    other[i] = other[i].replace("ada", "bob");
    assert_eq!(curl_owned(&other).status(), 404);
}

#[test]
fn form_and_multipart_fields_are_not_stored_and_replay_still_answers() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("forms.db");
    let up = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&up.url(), &db, &[]);
    let form = |base: &str, pw: &str| {
        curl(&[
            "--data",
            &format!("user=ada&password={pw}&client_secret={pw}-cs"),
            &format!("{base}/echo"),
        ])
    };
    let multipart_body = |pw: &str| {
        format!(
            "--XyZb\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nada\r\n--XyZb\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\n{pw}\r\n--XyZb--\r\n"
        )
    };
    let multipart = |base: &str, pw: &str| {
        curl(&[
            "-H",
            "Content-Type: multipart/form-data; boundary=XyZb",
            "--data-binary",
            &multipart_body(pw),
            &format!("{base}/echo?kind=multipart"),
        ])
    };
    assert_eq!(form(&rec.url(), "form-PASSWORD-77ab").status(), 200);
    assert_eq!(multipart(&rec.url(), "multipart-TOKEN-e3f1").status(), 200);
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    drop(up);
    assert_absent(&db, &["form-PASSWORD-77ab", "multipart-TOKEN-e3f1"]);
    let all = load(&db);
    let mp = all
        .iter()
        .find(|e| e.request.target.contains("multipart"))
        .unwrap();
    let stored = String::from_utf8_lossy(&mp.request.body.data).into_owned();
    assert!(
        stored.contains("name=\"token\"\r\n\r\nmf-redacted-"),
        "{stored}"
    );
    assert!(stored.contains("\r\n\r\nada\r\n"), "{stored}");

    let replay = start_replay(&db, &[]);
    let got = form(&replay.url(), "real-form-secret");
    assert_eq!(got.status(), 200, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(got.body, recorded_body(&db, "/echo"));
    let got = multipart(&replay.url(), "real-multipart-secret");
    assert_eq!(got.status(), 200, "{}", String::from_utf8_lossy(&got.body));
    assert_eq!(got.body, recorded_body(&db, "/echo?kind=multipart"));
}

#[test]
fn response_set_cookie_and_tokens_are_redacted_and_flow_into_later_requests() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("login.db");
    let up = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&up.url(), &db, &[]);
    let login = curl(&["-X", "POST", &format!("{}/login", rec.url())]);
    assert!(
        login.headers.contains("session=sess-COOKIE-8e2b4d6f"),
        "{}",
        login.headers
    );
    // The client uses what the login gave it.
    let next = curl(&[
        "-H",
        "Authorization: Bearer tok-LOGIN-5f3a9c1e7d",
        "-H",
        "Cookie: session=sess-COOKIE-8e2b4d6f",
        &format!("{}/json", rec.url()),
    ]);
    assert_eq!(next.status(), 200);
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    drop(up);
    assert_absent(&db, &["sess-COOKIE-8e2b4d6f", "tok-LOGIN-5f3a9c1e7d"]);
    let all = load(&db);
    let resp = all[0].response.as_ref().unwrap();
    let set_cookie = resp
        .headers
        .iter()
        .find(|h| h.name == "Set-Cookie")
        .unwrap();
    let sc = set_cookie.value_str().into_owned();
    assert!(
        sc.starts_with("session=mf-redacted-") && sc.ends_with("; Path=/; HttpOnly"),
        "{sc}"
    );
    let issued: serde_json::Value = serde_json::from_slice(&resp.body.data).unwrap();
    assert_eq!(issued["token_type"], "bearer", "a descriptive field stays");
    // One secret, one placeholder: the token issued is the token sent back.
    let sent = all[1]
        .request
        .headers
        .iter()
        .find(|h| h.name == "Authorization")
        .unwrap();
    assert_eq!(
        sent.value_str(),
        format!("Bearer {}", issued["access_token"].as_str().unwrap())
    );
    let cookie = all[1]
        .request
        .headers
        .iter()
        .find(|h| h.name == "Cookie")
        .unwrap();
    assert_eq!(cookie.value_str(), sc.split(';').next().unwrap());

    let replay = start_replay(&db, &[]);
    let got = curl(&["-X", "POST", &format!("{}/login", replay.url())]);
    assert_eq!(got.status(), 200);
    assert_eq!(got.body, resp.body.data.to_vec());
    assert!(
        got.headers.contains("Set-Cookie: session=mf-redacted-"),
        "{}",
        got.headers
    );
}

/// `grpc_client.py ADDR secret`: one unary call with credentials in its metadata.
fn grpc_secret_call(addr: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("grpc_client.py"))
        .args([addr, "secret"])
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("grpc_proxy")
        .stdin(Stdio::null())
        .output()
        .expect("running grpc_client.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

#[test]
fn grpc_metadata_secrets_are_not_stored_and_replay_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("grpc.db");
    let server = start_python("grpc_server.py", &[]);
    let mut rec = start_recorder(&server.url(), &db, &[]);
    let live = grpc_secret_call(&rec.addr().to_string());
    assert_eq!(live["code"], "OK", "{live}");
    assert_eq!(
        live["trailing"],
        serde_json::json!([["x-session-token", "srv-GRPC-TOKEN-4c7e1a"]])
    );
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    drop(server);
    assert_absent(
        &db,
        &[
            "grpc-BEARER-9d2f7b",
            "grpc-APIKEY-1a8c3e",
            "srv-GRPC-TOKEN-4c7e1a",
        ],
    );

    let replay = start_replay(&db, &[]);
    let again = grpc_secret_call(&replay.addr().to_string());
    assert_eq!(again["code"], "OK", "{again}");
    assert_eq!(again["messages"], live["messages"]);
    let trailer = again["trailing"][0][1]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(trailer.starts_with("mf-redacted-"), "{again}");
}

#[test]
fn passive_import_redacts_and_filters_too() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let up = start_python("http_upstream.py", &[]);
    let pcap = dir.path().join("secrets.pcap");
    let dump = Tcpdump::start("lo", &format!("tcp port {}", up.addr().port()), &pcap);
    assert_eq!(
        curl_owned(&json_request(&up.url(), BEARER, PASSWORD)).status(),
        200
    );
    assert_eq!(curl(&[&format!("{}/health", up.url())]).status(), 404);
    let pcap = dump.stop();
    let db = dir.path().join("imported.db");
    let out = import(&[&pcap], &db, &["--exclude", "/health"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mf: capture policy: 1 filtered"),
        "{stderr}"
    );
    assert_absent(&db, &[BEARER, COOKIE, API_KEY, QUERY_KEY, PASSWORD]);
    let all = load(&db);
    assert_eq!(all.len(), 1);
    assert!(all[0].request.target.contains("api_key=mf-redacted-"));
}

#[test]
fn keep_secrets_keeps_them_and_export_sanitizes_unless_asked() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kept.db");
    let up = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&up.url(), &db, &["--keep-secrets"]);
    assert!(
        rec.stderr().contains("WARNING: --keep-secrets"),
        "{}",
        rec.stderr()
    );
    assert_eq!(
        curl_owned(&json_request(&rec.url(), BEARER, PASSWORD)).status(),
        200
    );
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    drop(up);
    assert!(!find_secret(&db, BEARER).is_empty());
    assert!(load(&db)[0].request.target.contains(QUERY_KEY));

    let export = |extra: &[&str]| {
        let out = mf()
            .arg("export")
            .arg(&db)
            .args(["--format", "har"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let har = export(&[]);
    for s in [BEARER, COOKIE, API_KEY, QUERY_KEY, PASSWORD] {
        assert!(!har.contains(s), "{s} in the exported HAR");
    }
    assert!(har.contains("mf-redacted-"));
    serde_json::from_str::<serde_json::Value>(&har).expect("still a HAR");
    let har = export(&["--keep-secrets"]);
    assert!(har.contains(BEARER) && har.contains(PASSWORD));
}

#[test]
fn a_gzip_body_is_redacted_inside_and_replays_as_valid_gzip() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gzip.db");
    let up = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&up.url(), &db, &[]);
    let live = curl(&["--compressed", &format!("{}/gzip-login", rec.url())]);
    assert!(String::from_utf8_lossy(&live.body).contains("gz-REFRESH-7e9d1c3b"));
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    drop(up);
    let stored = recorded_body(&db, "/gzip-login");
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&stored[..]), &mut decoded)
        .expect("the stored body is still gzip");
    let doc: serde_json::Value = serde_json::from_slice(&decoded).unwrap();
    assert!(
        doc["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("mf-redacted-"),
        "{doc}"
    );
    assert_eq!(doc["ok"], true);

    let replay = start_replay(&db, &[]);
    let got = curl(&["--compressed", &format!("{}/gzip-login", replay.url())]);
    assert_eq!(got.exit, 0, "curl decodes what replay sends");
    assert_eq!(got.body, decoded);
}
