//! The `http` section is platform-http's: a runtime reads it when its
//! builder is given it, and then checks it with the platform's own sections.

use platform_config::Loader;
use platform_config::cli::ConfigArgs;
use platform_core::{Config, Error, Runtime};
use platform_http::{Client, ClientError, HttpSettings, RuntimeBuilderExt};

fn config_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("default.toml"), text).unwrap();
    dir
}

fn builder(dir: &std::path::Path) -> platform_core::RuntimeBuilder<()> {
    Runtime::builder::<()>("svc")
        .args(ConfigArgs::default())
        .loader(
            Loader::new()
                .config_dir(dir)
                .env_vars(Vec::<(String, String)>::new()),
        )
        .without_signal_handlers()
        .without_telemetry()
}

async fn start_error(builder: platform_core::RuntimeBuilder<()>) -> String {
    let started: Result<(Runtime, Config<()>), Error> = builder.init().await;
    started.unwrap_err().to_string()
}

#[tokio::test]
async fn client_settings_are_refused_at_start_up_with_their_keys_and_lines() {
    let dir = config_dir(
        "[telemetry.tracing]\nsampling_ratio = 1.5\n\
         [http.clients.inventory]\nbase_url = \"inventory:8081\"\ndiscovery = \"dns+srv://\"\n\
         [http.clients.inventory.retry]\nmax_attempts = 9\n\
         [http.clients.inventory.balance]\npanic_threshold = 2.0\n\
         [http.clients.inventory.headers]\nx-team = \"a\\u0001b\"\n\
         [http.clients.payments]\nbase_url = \"http://payments\"\n",
    );
    let text = start_error(builder(dir.path()).http_clients()).await;
    for key in [
        "telemetry.tracing.sampling_ratio",
        "http.clients.inventory.base_url",
        "http.clients.inventory.discovery",
        "http.clients.inventory.retry.max_attempts",
        "http.clients.inventory.balance.panic_threshold",
        "http.clients.inventory.headers.x-team",
    ] {
        assert!(text.contains(key), "{key} not in {text}");
    }
    assert!(text.contains("default.toml:4"), "names the line: {text}");
    assert!(!text.contains("payments"), "{text}");

    // The policies' rules are the resilience settings' own, checked
    // without building policies.
    for (table, key) in [
        ("throttle]\nk = 0.5", "throttle.k"),
        (
            "outlier.success_rate]\ndrop = 2.0",
            "outlier.success_rate.drop",
        ),
    ] {
        let dir = config_dir(&format!(
            "[http.clients.inventory]\nbase_url = \"http://inventory\"\n[http.clients.inventory.{table}\n"
        ));
        let text = start_error(builder(dir.path()).http_clients()).await;
        assert!(
            text.contains(&format!("http.clients.inventory.{key}")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_required_client_is_checked_with_the_configuration() {
    let dir = config_dir("[http.clients.payments]\nbase_url = \"http://payments\"\n");
    let text = start_error(builder(dir.path()).requires_client("inventory")).await;
    assert!(
        text.contains("http.clients.inventory") && text.contains("configured clients: payments"),
        "{text}"
    );
    // The other way round: with the client configured, start-up passes and
    // the client is built from it.
    let dir = config_dir("[http.clients.inventory]\nbase_url = \"http://inventory\"\n");
    let (rt, _) = builder(dir.path())
        .requires_client("inventory")
        .init()
        .await
        .unwrap();
    let http = rt.section::<HttpSettings>().expect("the section is read");
    assert_eq!(http.clients["inventory"].base_url, "http://inventory");
    Client::for_service(&rt, "inventory").unwrap();
    let missing = Client::for_service(&rt, "payments").unwrap_err();
    assert!(
        matches!(&missing, ClientError::Config { target, .. } if target == "payments"),
        "{missing}"
    );
}

#[tokio::test]
async fn without_the_section_http_is_an_unknown_key_and_clients_say_what_to_add() {
    let dir = config_dir("[http.clients.inventory]\nbase_url = \"http://inventory\"\n");
    let text = start_error(builder(dir.path())).await;
    assert!(text.contains("http"), "{text}");

    let empty = config_dir("# nothing\n");
    let (rt, _) = builder(empty.path()).init().await.unwrap();
    assert!(rt.section::<HttpSettings>().is_none());
    let e = Client::for_service(&rt, "inventory").unwrap_err();
    assert!(e.to_string().contains("requires_client"), "{e}");
}

#[test]
fn print_defaults_documents_the_section_when_it_is_read() {
    let loader = Loader::new().section::<HttpSettings>();
    let text = loader.render_defaults::<platform_core::Settings>();
    assert!(text.contains("[http.clients]"), "{text}");
    assert!(text.contains("# [http.clients.<name>.retry]"), "{text}");
    let without = Loader::new().render_defaults::<platform_core::Settings>();
    assert!(!without.contains("[http"), "{without}");
}
