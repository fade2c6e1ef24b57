//! The Kubernetes manifests in `examples/deploy/` agree with the services'
//! effective `prod` configuration: probes on the admin port, the API port,
//! a termination grace period that covers drain + grace, readiness noticed
//! within the drain delay, and the downward-API variables telemetry reads.

use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn effective_prod_config(bin: &str) -> toml::Table {
    let out = Command::new(bin)
        .args(["--profile", "prod", "--print-config"])
        .env_remove("APP_PROFILE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap()
}

fn port_of(bind: &str) -> i64 {
    bind.rsplit(':').next().unwrap().parse().unwrap()
}

fn seconds(duration: &str) -> f64 {
    platform_config::duration::parse(duration)
        .unwrap()
        .as_secs_f64()
}

fn deployment(manifest: &str) -> Yaml {
    let path = format!("{}/deploy/{manifest}", env!("CARGO_MANIFEST_DIR"));
    let docs = YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    docs.into_iter()
        .find(|d| d["kind"].as_str() == Some("Deployment"))
        .unwrap_or_else(|| panic!("no Deployment in {path}"))
}

fn check(bin: &str, manifest: &str) {
    let config = effective_prod_config(bin);
    let admin_port = port_of(config["admin"]["bind"].as_str().unwrap());
    let api_port = port_of(config["server"]["bind"].as_str().unwrap());
    let drain = seconds(config["shutdown"]["drain_delay"].as_str().unwrap());
    let grace = seconds(config["shutdown"]["grace_period"].as_str().unwrap());

    let deployment = deployment(manifest);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let named_port = |name: &str| {
        container["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("{manifest}: no port named {name}"))
    };
    assert_eq!(named_port("admin"), admin_port, "{manifest}: admin port");
    assert_eq!(named_port("http"), api_port, "{manifest}: API port");

    for (probe, path) in [
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/startupz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{manifest}: {probe}");
        assert_eq!(
            get["port"].as_str(),
            Some("admin"),
            "{manifest}: {probe} on the admin port"
        );
    }
    let readiness = &container["readinessProbe"];
    let noticed_after = readiness["periodSeconds"].as_i64().unwrap()
        * readiness["failureThreshold"].as_i64().unwrap();
    assert!(
        (noticed_after as f64) < drain,
        "{manifest}: readiness failure noticed after {noticed_after}s, but the drain delay is {drain}s"
    );

    let termination = pod["terminationGracePeriodSeconds"].as_i64().unwrap() as f64;
    assert!(
        termination >= drain + grace && termination <= drain + grace + 15.0,
        "{manifest}: terminationGracePeriodSeconds {termination} vs drain {drain} + grace {grace}"
    );

    let env = container["env"].as_vec().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"].as_str() == Some(name));
    assert_eq!(var("APP_PROFILE").unwrap()["value"].as_str(), Some("prod"));
    assert!(
        var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some(),
        "{manifest}: OTLP endpoint variable"
    );
    for (name, field) in [
        ("K8S_POD_NAME", "metadata.name"),
        ("K8S_POD_UID", "metadata.uid"),
        ("K8S_NAMESPACE_NAME", "metadata.namespace"),
        ("K8S_NODE_NAME", "spec.nodeName"),
    ] {
        let entry = var(name).unwrap_or_else(|| panic!("{manifest}: {name}"));
        assert_eq!(
            entry["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            Some(field),
            "{manifest}: {name}"
        );
    }
}

#[test]
fn inventory_manifest_matches_its_configuration() {
    check(env!("CARGO_BIN_EXE_inventory"), "inventory.yaml");
}

#[test]
fn orders_manifest_matches_its_configuration() {
    check(env!("CARGO_BIN_EXE_orders"), "orders.yaml");
}
