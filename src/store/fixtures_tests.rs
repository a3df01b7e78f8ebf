//! Unit tests of the fixtures folder format.
use super::*;

#[test]
fn folder_round_trips_and_refuses_newer_formats() {
    let dir = tempfile::tempdir().unwrap();
    let mut set = FixtureSet {
        index: Index {
            format: FORMAT,
            exchanges: 1,
            endpoints: vec![IndexEntry {
                name: "get-a".into(),
                method: "GET".into(),
                template: "/a".into(),
                count: 1,
                file: "endpoints/get-a.yaml".into(),
            }],
            ignore: vec!["$.meta.build".into()],
        },
        ..Default::default()
    };
    set.endpoints.push(Endpoint {
        format: FORMAT,
        name: "get-a".into(),
        method: "GET".into(),
        template: "/a".into(),
        ignore: vec!["$.items[*].updated_at".into()],
        examples: vec![Example {
            name: "200".into(),
            request: ExampleRequest {
                path: "/a".into(),
                ..Default::default()
            },
            response: ExampleResponse {
                status: 200,
                body: Some("bodies/get-a/200.json".into()),
                ..Default::default()
            },
        }],
        ..Default::default()
    });
    set.bodies
        .insert("bodies/get-a/200.json".into(), b"{}\n".to_vec());
    set.sequences.format = FORMAT;
    let files = render(&set).unwrap();
    write_dir(dir.path(), &files).unwrap();
    let back = read_dir(dir.path()).unwrap();
    assert_eq!(back.endpoints, set.endpoints);
    assert_eq!(back.bodies, set.bodies);
    assert_eq!(
        read_ignore_rules(dir.path()).unwrap(),
        [
            (None, "$.meta.build".to_string()),
            (
                Some("GET /a".to_string()),
                "$.items[*].updated_at".to_string()
            )
        ]
    );
    let file = dir.path().join("ignore.yaml");
    std::fs::write(
        &file,
        "ignore:\n  - $.a\n  - endpoint: POST /b\n    path: header x-build\n",
    )
    .unwrap();
    assert_eq!(
        read_ignore_rules(&file).unwrap(),
        [
            (None, "$.a".to_string()),
            (Some("POST /b".to_string()), "header x-build".to_string())
        ]
    );
    std::fs::write(
        dir.path().join("index.yaml"),
        "format: 99\nexchanges: 0\nendpoints: []\n",
    )
    .unwrap();
    let err = read_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("please update mf"), "{err}");
}

#[test]
fn an_added_endpoint_gets_a_free_name_and_joins_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let ep = |name: &str| Endpoint {
        format: FORMAT,
        name: name.into(),
        method: "GET".into(),
        template: "/a".into(),
        examples: vec![Example {
            name: "200".into(),
            response: ExampleResponse {
                status: 200,
                body: Some(format!("bodies/{name}/200.json")),
                ..Default::default()
            },
            ..Default::default()
        }],
        ..Default::default()
    };
    let index = Index {
        format: FORMAT,
        ..Default::default()
    };
    std::fs::write(
        dir.path().join("index.yaml"),
        yaml(dir.path(), &index).unwrap(),
    )
    .unwrap();
    let bodies = || BTreeMap::from([("bodies/get-a/200.json".to_string(), b"{}".to_vec())]);
    let first = add_endpoint(dir.path(), ep("get-a"), bodies(), 1).unwrap();
    let second = add_endpoint(dir.path(), ep("get-a"), bodies(), 1).unwrap();
    assert_eq!(first, "endpoints/get-a.yaml");
    assert_eq!(second, "endpoints/get-a-2.yaml");
    let back = read_dir(dir.path()).unwrap();
    assert_eq!(back.index.exchanges, 2);
    assert_eq!(back.endpoints[1].name, "get-a-2");
    assert_eq!(
        back.endpoints[1].examples[0].response.body.as_deref(),
        Some("bodies/get-a-2/200.json")
    );
    assert!(back.bodies.contains_key("bodies/get-a-2/200.json"));
}

#[test]
fn refuses_to_write_into_a_foreign_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    assert!(matches!(
        write_dir(dir.path(), &BTreeMap::new()),
        Err(FixturesError::NotFixtures { .. })
    ));
}
