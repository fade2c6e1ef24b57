//! Loading a realistic configuration: three files (default, profile, local)
//! and a handful of env overrides, into a typed settings tree.
//!
//! Baseline in the same run: config-rs (the crate most services use) loading
//! the same files and env into the same type. The SDK does more per load
//! (schema-mapped env, provenance, every error collected), so the ratio says
//! what that costs.

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use platform_config::{Loader, Secret, Validate, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
struct Settings {
    server: Server,
    admin: Server,
    db: Db,
    telemetry: Telemetry,
    clients: BTreeMap<String, Client>,
    app: App,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
struct Server {
    bind: String,
    #[serde(with = "platform_config::duration")]
    #[schemars(with = "String")]
    read_timeout: Duration,
    #[serde(with = "platform_config::size")]
    #[schemars(with = "String")]
    max_body: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
struct Db {
    url: String,
    password: Secret<String>,
    pool_size: u32,
    replicas: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
struct Telemetry {
    level: String,
    format: String,
    sample_ratio: f64,
    endpoint: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
struct Client {
    base_url: String,
    #[serde(with = "platform_config::duration")]
    #[schemars(with = "String")]
    timeout: Duration,
    max_attempts: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
struct App {
    name: String,
    max_items: u32,
    features: Vec<String>,
}

impl Validate for Settings {
    fn validate(&self, v: &mut Validation) {
        v.check(self.db.pool_size > 0, "db.pool_size", "must be at least 1");
    }
}

const DEFAULT: &str = r#"
[server]
bind = "0.0.0.0:8080"
read_timeout = "5s"
max_body = "1MiB"

[admin]
bind = "0.0.0.0:9090"
read_timeout = "2s"
max_body = "64KiB"

[db]
url = "postgres://db:5432/orders"
password = "changeme"
pool_size = 10
replicas = ["db-r1:5432", "db-r2:5432"]

[telemetry]
level = "info"
format = "json"
sample_ratio = 0.1
endpoint = "http://collector:4317"

[clients.inventory]
base_url = "http://inventory:8081"
timeout = "2s"
max_attempts = 3

[clients.payments]
base_url = "http://payments:8082"
timeout = "5s"
max_attempts = 2

[app]
name = "orders"
max_items = 50
features = ["a", "b", "c"]
"#;

const PROFILE: &str = r#"
[telemetry]
sample_ratio = 0.01

[db]
pool_size = 50
replicas = ["db-r1:5432", "db-r2:5432", "db-r3:5432"]

[clients.inventory]
timeout = "1s"
"#;

const LOCAL: &str = r#"
[app]
max_items = 10
"#;

const ENV: [(&str, &str); 4] = [
    ("APP__DB__PASSWORD", "s3cret"),
    ("APP__TELEMETRY__LEVEL", "debug"),
    ("APP__CLIENTS__INVENTORY__MAX_ATTEMPTS", "4"),
    ("APP__APP__FEATURES", "x,y"),
];

fn bench_load(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.toml"), DEFAULT).unwrap();
    std::fs::write(dir.path().join("prod.toml"), PROFILE).unwrap();
    std::fs::write(dir.path().join("local.toml"), LOCAL).unwrap();

    let loader = Loader::new()
        .config_dir(dir.path())
        .profile("prod")
        .env_vars(ENV);
    let loaded = loader.load::<Settings>().unwrap();
    assert_eq!(loaded.value().clients["inventory"].max_attempts, 4);
    assert_eq!(loaded.value().app.features, ["x", "y"]);

    let mut group = c.benchmark_group("config_load_3_files_4_env");
    group.bench_function("platform_config", |b| {
        b.iter(|| loader.load::<Settings>().unwrap())
    });
    group.bench_function("config_rs_baseline", |b| {
        b.iter(|| {
            let cfg = config::Config::builder()
                .add_source(config::File::from(dir.path().join("default.toml")))
                .add_source(config::File::from(dir.path().join("prod.toml")))
                .add_source(config::File::from(dir.path().join("local.toml")).required(false))
                .add_source(
                    config::Environment::with_prefix("APP")
                        .separator("__")
                        .list_separator(",")
                        .with_list_parse_key("app.features")
                        .try_parsing(true)
                        .source(Some(
                            ENV.iter()
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .collect(),
                        )),
                )
                .build()
                .unwrap();
            cfg.try_deserialize::<Settings>().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_load);
criterion_main!(benches);
