//! Reading what a judged run (`mf diff`, `mf replay --to`) wrote: its output for assertion
//! messages, and its JUnit file as Python's XML parser sees it (a real JUnit consumer would).

use std::path::Path;
use std::process::{Command, Output};

/// Stdout and stderr of a finished command, for assertion messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One `<testcase>` of a JUnit file.
pub struct JunitCase {
    pub name: String,
    /// The `message` of each `<failure>`.
    pub failures: Vec<String>,
}

/// The testcases of a JUnit file parsed by Python's `xml.etree`, and the `failures` count
/// its first `<testsuite>` declares.
pub fn junit(path: &Path) -> (String, Vec<JunitCase>) {
    let script = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == 'testsuite' else root.find('testsuite')
cases = [[c.get('name'), [f.get('message') or '' for f in c.findall('failure')]] for c in root.iter('testcase')]
print(json.dumps({'cases': cases, 'declared': suite.get('failures') if suite is not None else None}))
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(path)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "JUnit does not parse: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("parser output");
    let cases = v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| JunitCase {
            name: c[0].as_str().unwrap_or("").to_string(),
            failures: c[1]
                .as_array()
                .map(|f| {
                    f.iter()
                        .map(|m| m.as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    (v["declared"].as_str().unwrap_or("").to_string(), cases)
}
