//! Settings shaped like a real service's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use platform_config::{Secret, Validate, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Root {
    /// The public listener.
    pub server: Server,
    /// The database.
    pub db: Db,
    /// The service's own settings.
    pub app: App,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Server {
    /// Address to listen on.
    pub bind: String,
    /// Port to listen on.
    pub port: u16,
    /// How long a request may take.
    #[serde(with = "platform_config::duration")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// Largest request body.
    #[serde(with = "platform_config::size")]
    #[schemars(with = "String")]
    pub max_body: u64,
    /// Share of requests traced.
    pub sample_ratio: f64,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            bind: "0.0.0.0".into(),
            port: 8080,
            timeout: Duration::from_secs(5),
            max_body: 1 << 20,
            sample_ratio: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Db {
    /// Database host.
    pub host: String,
    /// Connections kept open.
    pub pool_size: u8,
    /// Password of the service account.
    pub password: Secret<String>,
    /// Read replicas.
    pub replicas: Vec<String>,
}

impl Default for Db {
    fn default() -> Self {
        Db {
            host: "localhost".into(),
            pool_size: 10,
            password: Secret::new(String::new()),
            replicas: vec!["r1".into(), "r2".into()],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct App {
    /// A field whose name is not lower case.
    pub camel_field: String,
    /// A code that must stay text.
    pub code: String,
    /// Ports.
    pub ports: Vec<u16>,
    /// Free text that contains commas.
    pub motto: String,
    /// Downstream clients by name.
    pub clients: BTreeMap<String, Client>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Client {
    /// Base URL.
    pub base_url: String,
}

impl Validate for Root {
    fn validate(&self, v: &mut Validation) {
        v.check(self.server.port != 0, "server.port", "must not be 0");
        v.check(
            !self.db.replicas.contains(&self.db.host),
            "db.replicas",
            "must not contain db.host",
        );
    }
}

/// Writes `files` (name, content) into a fresh config dir.
pub(crate) fn config_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        write(dir.path(), name, content);
    }
    dir
}

pub(crate) fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).unwrap();
}

/// A loader over `dir` with no process environment.
pub(crate) fn loader(dir: &Path) -> platform_config::Loader {
    platform_config::Loader::new()
        .config_dir(dir)
        .env_vars(Vec::<(String, String)>::new())
}
