//! What a converted struct reads, writes and prints.

use std::collections::BTreeMap;
use std::time::Duration;

use platform_config::{Loader, Problem};

/// A service's own settings, one field of each kind the attribute handles.
#[platform_config::settings]
#[derive(PartialEq)]
struct Service {
    /// How the service greets.
    #[setting(default = "hello")]
    greeting: String,
    /// How long one call may take.
    #[setting(default = Duration::from_secs(5))]
    timeout: Duration,
    /// How often to look for work.
    #[setting(default = std::time::Duration::from_millis(250))]
    poll: std::time::Duration,
    /// Deadline of a whole job; none by default.
    deadline: Option<Duration>,
    /// Largest request body.
    #[setting(size, default = 2 * 1024 * 1024)]
    max_body: u64,
    /// Ports to listen on.
    ports: Vec<u16>,
    /// Relative weight of each zone.
    #[setting(default = BTreeMap::from([("eu".to_owned(), 2)]))]
    weights: BTreeMap<String, u32>,
    /// The connection pool.
    pool: Pool,
    /// Kept as its own attributes say: whole seconds, as a number.
    #[serde(with = "seconds")]
    #[schemars(with = "u64")]
    #[setting(default = Duration::from_secs(60))]
    ttl: Duration,
    /// Where to listen; `bind_address` in files.
    #[serde(rename = "bind_address")]
    #[setting(default = "0.0.0.0:8080")]
    bind: String,
}

/// A nested section.
#[platform_config::settings]
#[derive(PartialEq)]
struct Pool {
    /// Connections at most.
    #[setting(default = 10)]
    max: u32,
    /// Share of connections kept warm.
    #[setting(default = 0.5)]
    warm: f64,
}

mod seconds {
    use std::time::Duration;

    pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_secs)
    }
}

#[test]
fn defaults_come_from_the_field_attributes_and_the_types() {
    let s = Service::default();
    assert_eq!(s.greeting, "hello");
    assert_eq!(s.timeout, Duration::from_secs(5));
    assert_eq!(s.poll, Duration::from_millis(250));
    assert_eq!(s.deadline, None);
    assert_eq!(s.max_body, 2 << 20);
    assert!(s.ports.is_empty());
    assert_eq!(s.weights, BTreeMap::from([("eu".to_owned(), 2)]));
    assert_eq!(s.pool, Pool { max: 10, warm: 0.5 });
    assert_eq!(s.ttl, Duration::from_secs(60));
    assert_eq!(s.bind, "0.0.0.0:8080");
}

#[test]
fn partial_toml_fills_in_the_defaults() {
    let s: Service = toml::from_str(
        r#"
        greeting = "hi"
        timeout = "250ms"
        [pool]
        max = 3
        "#,
    )
    .unwrap();
    assert_eq!(s.greeting, "hi");
    assert_eq!(s.timeout, Duration::from_millis(250));
    assert_eq!(s.pool, Pool { max: 3, warm: 0.5 });
    assert_eq!(
        s,
        Service {
            greeting: "hi".into(),
            timeout: Duration::from_millis(250),
            pool: Pool { max: 3, warm: 0.5 },
            ..Service::default()
        }
    );
}

#[test]
fn partial_json_fills_in_the_defaults() {
    let s: Service =
        serde_json::from_str(r#"{"max_body": "10MiB", "deadline": "1m30s", "ports": [80]}"#)
            .unwrap();
    assert_eq!(
        s,
        Service {
            max_body: 10 << 20,
            deadline: Some(Duration::from_secs(90)),
            ports: vec![80],
            ..Service::default()
        }
    );
    assert_eq!(
        serde_json::from_str::<Service>("{}").unwrap(),
        Service::default()
    );
}

#[test]
fn unknown_fields_are_rejected_at_every_level() {
    for (text, key) in [
        ("greting = \"hi\"", "greting"),
        ("[pool]\nmx = 3", "mx"),
        // The field's name in files is its serde name.
        ("bind = \"127.0.0.1:1\"", "bind"),
    ] {
        let e = toml::from_str::<Service>(text).unwrap_err().to_string();
        assert!(e.contains(&format!("unknown field `{key}`")), "{e}");
    }
    let e = serde_json::from_str::<Service>(r#"{"pool": {"min": 1}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `min`"), "{e}");
}

#[test]
fn durations_and_sizes_round_trip_as_text() {
    let s: Service = serde_json::from_str(
        r#"{"timeout": "250ms", "poll": "1m30s", "deadline": "2h", "max_body": "64KiB"}"#,
    )
    .unwrap();
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["timeout"], "250ms");
    assert_eq!(json["poll"], "1m30s");
    assert_eq!(json["deadline"], "2h");
    assert_eq!(json["max_body"], "64KiB");
    assert_eq!(serde_json::from_value::<Service>(json).unwrap(), s);

    let text = toml::to_string(&Service::default()).unwrap();
    assert!(text.contains("timeout = \"5s\"\n"), "{text}");
    assert_eq!(
        toml::from_str::<Service>(&text).unwrap(),
        Service::default()
    );

    let e = serde_json::from_str::<Service>(r#"{"timeout": 5}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a duration such as 250ms"), "{e}");
}

#[test]
fn the_fields_own_serde_attributes_are_kept() {
    let s: Service = toml::from_str("ttl = 30\nbind_address = \"127.0.0.1:1\"").unwrap();
    assert_eq!(s.ttl, Duration::from_secs(30));
    assert_eq!(s.bind, "127.0.0.1:1");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["ttl"], 30);
    assert_eq!(json["bind_address"], "127.0.0.1:1");
}

#[test]
fn the_schema_keeps_doc_comments_and_writes_durations_as_text() {
    let schema = serde_json::to_value(schemars::schema_for!(Service)).unwrap();
    let properties = &schema["properties"];
    assert_eq!(
        properties["greeting"]["description"],
        "How the service greets."
    );
    for text in ["timeout", "poll", "max_body"] {
        assert_eq!(properties[text]["type"], "string", "{text}");
    }
    assert_eq!(
        properties["deadline"]["type"],
        serde_json::json!(["string", "null"])
    );
    assert_eq!(properties["ttl"]["type"], "integer");
}

#[test]
fn printed_defaults_carry_the_doc_comments() {
    let text = platform_config::render_defaults::<Service>();
    for line in [
        "# How the service greets.\ngreeting = \"hello\"\n",
        "# How long one call may take.\ntimeout = \"5s\"\n",
        "# Largest request body.\nmax_body = \"2MiB\"\n",
        "# The connection pool.\n[pool]\n# Connections at most.\nmax = 10\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
}

#[test]
fn the_loader_reads_files_env_and_overrides_into_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("default.toml"),
        "greeting = \"hey\"\n[pool]\nmax = 4\n",
    )
    .unwrap();
    let loaded = Loader::new()
        .config_dir(dir.path())
        .env_vars([("APP__TIMEOUT", "2s"), ("APP__MAX_BODY", "1MiB")])
        .set("pool.warm", "0.25")
        .load::<Service>()
        .unwrap();
    let s = loaded.value();
    assert_eq!(s.greeting, "hey");
    assert_eq!(s.timeout, Duration::from_secs(2));
    assert_eq!(s.max_body, 1 << 20);
    assert_eq!(s.pool, Pool { max: 4, warm: 0.25 });
    assert_eq!(s.poll, Duration::from_millis(250));
}

#[test]
fn the_loader_names_an_unknown_key_and_the_nearest_one() {
    let e = Loader::new()
        .env_vars(Vec::<(String, String)>::new())
        .set("pool.mux", "4")
        .load::<Service>()
        .unwrap_err();
    let problems = &e.report().unwrap().problems;
    assert!(
        matches!(
            problems.as_slice(),
            [Problem::UnknownKey { key, suggestion: Some(near), .. }]
                if key == "pool.mux" && near == "pool.max"
        ),
        "{problems:?}"
    );
}

/// Struct-level serde attributes of its own, beside the ones the attribute adds.
#[platform_config::settings]
#[serde(rename_all = "kebab-case")]
struct Kebab {
    /// Spelt `read-timeout` in files.
    #[setting(default = Duration::from_secs(1))]
    read_timeout: Duration,
}

#[test]
fn the_structs_own_serde_attributes_are_kept() {
    let k: Kebab = toml::from_str("read-timeout = \"3s\"").unwrap();
    assert_eq!(k.read_timeout, Duration::from_secs(3));
    let e = toml::from_str::<Kebab>("read_timeout = \"3s\"").unwrap_err();
    assert!(
        e.to_string().contains("unknown field `read_timeout`"),
        "{e}"
    );
}
