//! The Kubernetes manifests in `examples/deploy/` agree with the services'
//! configuration and with the image the Dockerfile builds:
//! - probes on the admin port, the API port, a termination grace period
//!   that covers drain + grace, readiness noticed within the drain delay,
//!   and the downward-API variables telemetry reads;
//! - every discovery target in every example config names a headless
//!   Service defined here, with the named port its SRV name asks for;
//! - every mounted ConfigMap is generated from files that exist, and the
//!   configuration a pod (and the image on its own) loads passes
//!   `--check-config`;
//! - the Dockerfile builds and copies the binaries the pods run, as the
//!   user they run as, labelled with the workspace's version;
//! - the pods meet the "restricted" Pod Security Standard and stay
//!   available through drains.
//!
//! The `#[ignore]`d tests also render the kustomization with kubectl and run
//! kubernetes-validate and checkov on it, and hadolint on the Dockerfile
//! (tools from the virtualenv that `scripts/install-test-deps` makes;
//! `scripts/test` includes them).

mod dockerfile;
mod manifests;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

use dockerfile::Dockerfile;
use manifests::{Rendered, Resource, render};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn workspace_dir() -> PathBuf {
    examples_dir().parent().unwrap().to_owned()
}

fn rendered() -> Rendered {
    render(&examples_dir().join("deploy"))
}

/// The example services that ship a config directory, with their binaries.
fn services() -> Vec<(&'static str, &'static str)> {
    vec![
        ("inventory", env!("CARGO_BIN_EXE_inventory")),
        ("orders", env!("CARGO_BIN_EXE_orders")),
    ]
}

fn binary_of(service: &str) -> &'static str {
    services()
        .into_iter()
        .find(|(name, _)| *name == service)
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("no example binary named {service}"))
}

/// The profiles a service's config directory holds (`prod`, `dev`, ...).
fn profiles(service: &str) -> Vec<String> {
    let dir = examples_dir().join("config").join(service);
    let mut profiles: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            (path.extension()? == "toml").then_some(())?;
            let stem = path.file_stem()?.to_str()?.to_owned();
            (stem != "default" && stem != "local").then_some(stem)
        })
        .collect();
    profiles.sort();
    profiles
}

fn effective_config(bin: &str, profile: &str) -> toml::Table {
    let out = Command::new(bin)
        .args(["--profile", profile, "--print-config"])
        .env_remove("APP_PROFILE")
        .env_remove("APP_CONFIG_DIR")
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

/// The one container of a Deployment's pods.
fn container(deployment: &Resource) -> &Yaml {
    let containers = deployment.doc["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .unwrap();
    assert_eq!(containers.len(), 1, "{}: one container", deployment.name);
    &containers[0]
}

/// The example binary a Deployment runs: the last part of its command, or
/// (no command: the image's own) the container's name.
fn service_of(deployment: &Resource) -> String {
    let container = container(deployment);
    match container["command"][0].as_str() {
        Some(command) => command.rsplit('/').next().unwrap().to_owned(),
        None => container["name"].as_str().unwrap().to_owned(),
    }
}

fn deployment_of<'a>(rendered: &'a Rendered, service: &str) -> &'a Resource {
    rendered
        .of_kind("Deployment")
        .find(|d| service_of(d) == service)
        .unwrap_or_else(|| panic!("no Deployment runs {service}"))
}

/// A literal `env` value of a container.
fn env_value<'a>(container: &'a Yaml, name: &str) -> Option<&'a str> {
    container["env"]
        .as_vec()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))?["value"]
        .as_str()
}

fn labels_match(selector: &Yaml, labels: &Yaml) -> bool {
    let Some(selector) = selector.as_hash() else {
        return false;
    };
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| &labels[k.as_str().unwrap()] == v)
}

fn check(service: &str) {
    let bin = binary_of(service);
    let rendered = rendered();
    let deployment = deployment_of(&rendered, service);
    let manifest = deployment.file.display().to_string();
    let container = container(deployment);
    let profile = env_value(container, "APP_PROFILE").expect("APP_PROFILE");
    assert_eq!(profile, "prod", "{manifest}: the prod profile");

    let config = effective_config(bin, profile);
    let admin_port = port_of(config["admin"]["bind"].as_str().unwrap());
    let api_port = port_of(config["server"]["bind"].as_str().unwrap());
    let drain = seconds(config["shutdown"]["drain_delay"].as_str().unwrap());
    let grace = seconds(config["shutdown"]["grace_period"].as_str().unwrap());
    let flush = seconds(config["telemetry"]["shutdown_timeout"].as_str().unwrap());

    let pod = &deployment.doc["spec"]["template"]["spec"];
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
        // inventory serves gRPC: its readiness is Kubernetes' gRPC probe of
        // the health protocol on the admin port ("" is readiness there).
        let grpc = &container[probe]["grpc"];
        if !grpc.is_badvalue() {
            assert_eq!(probe, "readinessProbe", "{manifest}: {probe}");
            assert_eq!(
                grpc["port"].as_i64(),
                Some(admin_port),
                "{manifest}: {probe}"
            );
            assert!(
                matches!(grpc["service"].as_str(), None | Some("" | "readiness")),
                "{manifest}: {probe} asks for readiness"
            );
            continue;
        }
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{manifest}: {probe}");
        assert_eq!(
            get["port"].as_str(),
            Some("admin"),
            "{manifest}: {probe} on the admin port"
        );
    }
    if manifest.contains("inventory") {
        assert!(
            !container["readinessProbe"]["grpc"].is_badvalue(),
            "{manifest}: the example of a gRPC probe"
        );
    }
    let readiness = &container["readinessProbe"];
    let noticed_after = readiness["periodSeconds"].as_i64().unwrap()
        * readiness["failureThreshold"].as_i64().unwrap();
    assert!(
        (noticed_after as f64) < drain,
        "{manifest}: readiness failure noticed after {noticed_after}s, but the drain delay is {drain}s"
    );

    // The exact worst case of the shutdown sequence (docs/operations.md,
    // "Shutdown"): one budget of drain delay + grace period, the telemetry
    // flush, then at most 1 s for the admin server.
    let worst = drain + grace + flush + 1.0;
    let termination = pod["terminationGracePeriodSeconds"].as_i64().unwrap() as f64;
    assert!(
        termination >= worst && termination <= worst + 10.0,
        "{manifest}: terminationGracePeriodSeconds {termination} vs the worst case {worst} \
         (drain {drain} + grace {grace} + flush {flush} + 1)"
    );

    let env = container["env"].as_vec().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"].as_str() == Some(name));
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
    check("inventory");
}

#[test]
fn orders_manifest_matches_its_configuration() {
    check("orders");
}

/// A discovery target that names a Kubernetes Service through cluster DNS.
#[derive(Debug)]
struct ClusterTarget {
    service: String,
    namespace: String,
    /// `dns+srv://`: the port's name and protocol from `_name._proto`.
    srv: Option<(String, String)>,
    /// `dns://...:port`: the port number.
    port: Option<i64>,
}

const CLUSTER_DOMAIN: &str = ".svc.cluster.local";

fn cluster_target(target: &str) -> Option<ClusterTarget> {
    if let Some(name) = target.strip_prefix("dns+srv://") {
        let rest = name.strip_suffix(CLUSTER_DOMAIN)?;
        let labels: Vec<&str> = rest.split('.').collect();
        let [port, proto, service, namespace] = labels.as_slice() else {
            panic!("{target}: expected _<port>._<proto>.<service>.<namespace>{CLUSTER_DOMAIN}");
        };
        Some(ClusterTarget {
            service: (*service).into(),
            namespace: (*namespace).into(),
            srv: Some((
                port.strip_prefix('_').expect("_port").into(),
                proto
                    .strip_prefix('_')
                    .expect("_proto")
                    .to_ascii_uppercase(),
            )),
            port: None,
        })
    } else if let Some(name) = target.strip_prefix("dns://") {
        let (host, port) = name.rsplit_once(':')?;
        let rest = host.strip_suffix(CLUSTER_DOMAIN)?;
        let (service, namespace) = rest.split_once('.')?;
        Some(ClusterTarget {
            service: service.into(),
            namespace: namespace.into(),
            srv: None,
            port: Some(port.parse().unwrap()),
        })
    } else {
        None
    }
}

/// Problems with one target against the manifests: the Service exists in
/// that namespace, is headless, has the port the name asks for, and selects
/// the pods of a Deployment that serve that port.
fn target_problems(rendered: &Rendered, origin: &str, target: &str) -> Vec<String> {
    let Some(t) = cluster_target(target) else {
        return vec![format!(
            "{origin}: {target} names no Service in the cluster (a pod needs cluster DNS here)"
        )];
    };
    let Some(service) = rendered.find("Service", &t.namespace, &t.service) else {
        let defined: Vec<String> = rendered
            .of_kind("Service")
            .map(|s| format!("{}/{}", s.namespace, s.name))
            .collect();
        return vec![format!(
            "{origin}: {target} names Service {}/{}, which no manifest defines (Services: {})",
            t.namespace,
            t.service,
            defined.join(", ")
        )];
    };
    let mut problems = Vec::new();
    let spec = &service.doc["spec"];
    if spec["clusterIP"].as_str() != Some("None") {
        problems.push(format!(
            "{origin}: Service {} is not headless (clusterIP: None): its DNS answer is one virtual IP, which defeats client-side balancing",
            t.service
        ));
    }
    let ports = spec["ports"].as_vec().cloned().unwrap_or_default();
    let port = ports.iter().find(|p| match (&t.srv, t.port) {
        (Some((name, proto)), _) => {
            p["name"].as_str() == Some(name.as_str())
                && p["protocol"].as_str().unwrap_or("TCP") == proto
        }
        (None, Some(number)) => p["port"].as_i64() == Some(number),
        (None, None) => false,
    });
    let Some(port) = port else {
        let wanted = match (&t.srv, t.port) {
            (Some((name, proto)), _) => format!("named {name} ({proto})"),
            (None, Some(number)) => number.to_string(),
            (None, None) => unreachable!("a cluster target names a port"),
        };
        problems.push(format!(
            "{origin}: Service {} has no port {wanted}, which {target} asks for",
            t.service
        ));
        return problems;
    };
    let selected: Vec<&Resource> = rendered
        .of_kind("Deployment")
        .filter(|d| {
            d.namespace == t.namespace
                && labels_match(
                    &spec["selector"],
                    &d.doc["spec"]["template"]["metadata"]["labels"],
                )
        })
        .collect();
    if selected.is_empty() {
        problems.push(format!(
            "{origin}: Service {} selects no Deployment's pods",
            t.service
        ));
    }
    for d in selected {
        let target_port = &port["targetPort"];
        let served =
            container(d)["ports"]
                .as_vec()
                .into_iter()
                .flatten()
                .any(|p| match target_port {
                    Yaml::String(name) => p["name"].as_str() == Some(name.as_str()),
                    Yaml::Integer(n) => p["containerPort"].as_i64() == Some(*n),
                    _ => p["containerPort"] == port["port"],
                });
        if !served {
            problems.push(format!(
                "{origin}: Service {} sends to port {target_port:?}, which Deployment {}'s container does not declare",
                t.service, d.name
            ));
        }
    }
    problems
}

#[test]
fn every_discovery_target_names_a_headless_service_in_the_manifests() {
    let rendered = rendered();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (service, bin) in services() {
        let deployed_profile = rendered
            .of_kind("Deployment")
            .find(|d| service_of(d) == service)
            .and_then(|d| env_value(container(d), "APP_PROFILE").map(str::to_owned));
        for profile in profiles(service) {
            let config = effective_config(bin, &profile);
            let clients = config
                .get("http")
                .and_then(|h| h.get("clients"))
                .and_then(|c| c.as_table())
                .cloned()
                .unwrap_or_default();
            let deployed = deployed_profile.as_deref() == Some(profile.as_str());
            for (client, settings) in clients {
                let origin = format!("{service} (profile {profile}) http.clients.{client}");
                let target = settings.get("discovery").and_then(|t| t.as_str());
                match target {
                    // Outside the cluster (dev, the laptop) a static list is right.
                    Some(t) if !deployed && cluster_target(t).is_none() => {}
                    Some(t) => {
                        checked += 1;
                        problems.extend(target_problems(&rendered, &origin, t));
                    }
                    None if deployed => problems.push(format!(
                        "{origin}: no discovery target in the profile the Deployment runs"
                    )),
                    None => {}
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "discovery targets that the manifests do not serve:\n  {}",
        problems.join("\n  ")
    );
    assert!(checked > 0, "no cluster discovery target was checked");
}

#[test]
fn every_mounted_config_map_is_generated_from_files_that_exist() {
    let rendered = rendered();
    let mut problems = Vec::new();
    for deployment in rendered.of_kind("Deployment") {
        let service = service_of(deployment);
        let container = container(deployment);
        let pod = &deployment.doc["spec"]["template"]["spec"];
        let profile = env_value(container, "APP_PROFILE").unwrap_or("default");
        let args: Vec<&str> = container["args"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .collect();
        let mut config_dir_mounted = false;
        for volume in pod["volumes"].as_vec().into_iter().flatten() {
            let Some(name) = volume["configMap"]["name"].as_str() else {
                continue;
            };
            let origin = format!("Deployment {} volume {name}", deployment.name);
            let Some(generated) = rendered.config_map(&deployment.namespace, name) else {
                problems.push(format!(
                    "{origin}: ConfigMap {}/{name} is mounted but no configMapGenerator makes it{}",
                    deployment.namespace,
                    if rendered
                        .find("ConfigMap", &deployment.namespace, name)
                        .is_some()
                    {
                        " (it is written out by hand instead)"
                    } else {
                        ""
                    }
                ));
                continue;
            };
            for file in &generated.files {
                if !file.is_file() {
                    problems.push(format!("{origin}: {} does not exist", file.display()));
                }
                let own_dir = examples_dir().join("config").join(&service);
                if file.parent().map(Path::canonicalize).and_then(Result::ok)
                    != own_dir.canonicalize().ok()
                {
                    problems.push(format!(
                        "{origin}: {} is not one of {service}'s config files ({})",
                        file.display(),
                        own_dir.display()
                    ));
                }
            }
            let keys = generated.keys();
            for wanted in ["default.toml".to_owned(), format!("{profile}.toml")] {
                if !keys.contains(&wanted) {
                    problems.push(format!("{origin}: no {wanted} among {keys:?}"));
                }
            }
            let volume_name = volume["name"].as_str().unwrap();
            for mount in container["volumeMounts"].as_vec().into_iter().flatten() {
                if mount["name"].as_str() != Some(volume_name) {
                    continue;
                }
                let path = mount["mountPath"].as_str().unwrap();
                if mount["subPath"].as_str().is_some() {
                    problems.push(format!(
                        "{origin}: mounted with subPath, which never updates"
                    ));
                }
                if args
                    .windows(2)
                    .any(|w| w[0] == "--config-dir" && w[1] == path)
                {
                    config_dir_mounted = true;
                }
            }
        }
        if !config_dir_mounted {
            problems.push(format!(
                "Deployment {}: its --config-dir is not a mounted generated ConfigMap",
                deployment.name
            ));
        }
    }
    assert!(
        rendered.of_kind("Deployment").count() > 0,
        "no Deployment in examples/deploy"
    );
    assert!(
        problems.is_empty(),
        "mounted ConfigMaps:\n  {}",
        problems.join("\n  ")
    );
}

/// Runs `bin --check-config` with `args`, the container's literal
/// environment, and nothing from the test's own `APP_*` variables.
fn check_config(bin: &str, args: &[String], env: &[(String, String)]) -> (bool, String) {
    let mut command = Command::new(bin);
    for (key, _) in std::env::vars() {
        if key.starts_with("APP_") || key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    let out = command
        .args(args)
        .arg("--check-config")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_config_each_pod_loads_passes_check_config() {
    let rendered = rendered();
    let mut checked = 0;
    for deployment in rendered.of_kind("Deployment") {
        let service = service_of(deployment);
        let container = container(deployment);
        let pod = &deployment.doc["spec"]["template"]["spec"];
        // The pod's view: each generated ConfigMap laid out as mounted.
        let scratch = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = container["args"]
            .as_vec()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        for mount in container["volumeMounts"].as_vec().into_iter().flatten() {
            let volume = pod["volumes"]
                .as_vec()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            let Some(name) = volume["configMap"]["name"].as_str() else {
                continue;
            };
            let generated = rendered
                .config_map(&deployment.namespace, name)
                .unwrap_or_else(|| panic!("{name}: not generated (see the test above)"));
            let dir = scratch.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            for (key, file) in generated.keys().iter().zip(&generated.files) {
                std::fs::copy(file, dir.join(key)).unwrap();
            }
            let path = mount["mountPath"].as_str().unwrap();
            for arg in &mut args {
                if arg == path {
                    *arg = dir.display().to_string();
                }
            }
        }
        let env: Vec<(String, String)> = container["env"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
            .collect();
        let profile = env_value(container, "APP_PROFILE").unwrap_or("default");
        let (ok, text) = check_config(binary_of(&service), &args, &env);
        assert!(
            ok && text.contains(&format!("profile: {profile}")),
            "Deployment {}: the mounted config fails --check-config:\n{text}",
            deployment.name
        );
        checked += 1;
    }
    assert!(checked > 0, "no Deployment checked");

    // The image on its own (`docker run IMAGE`): its baked-in config and profile.
    let dockerfile = Dockerfile::read(&workspace_dir().join("Dockerfile"));
    let runtime = dockerfile.stages.last().unwrap();
    let profile = runtime
        .all("ENV")
        .find_map(|e| e.strip_prefix("APP_PROFILE="))
        .expect("the image sets APP_PROFILE");
    for copy in runtime.all("COPY").filter(|c| !c.starts_with("--from")) {
        let [source, dest] = copy.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("COPY {copy}: one source and one destination expected");
        };
        let Some(service) = source
            .strip_prefix("examples/config/")
            .map(|s| s.trim_end_matches('/'))
        else {
            continue;
        };
        let args = vec![
            "--config-dir".to_owned(),
            workspace_dir().join(source).display().to_string(),
        ];
        let env = vec![("APP_PROFILE".to_owned(), profile.to_owned())];
        let (ok, text) = check_config(binary_of(service), &args, &env);
        assert!(ok, "the image's {dest} fails --check-config:\n{text}");
        // Kubernetes mounts the ConfigMap over the same directory.
        let deployment = deployment_of(&rendered, service);
        let mounted = container(deployment)["volumeMounts"]
            .as_vec()
            .unwrap()
            .iter()
            .any(|m| {
                m["mountPath"].as_str().map(|p| p.trim_end_matches('/'))
                    == Some(dest.trim_end_matches('/'))
            });
        assert!(
            mounted,
            "Deployment {service}: the ConfigMap is not mounted over the image's {dest}"
        );
    }
}

#[test]
fn the_dockerfile_builds_the_binaries_the_pods_run() {
    let dockerfile = Dockerfile::read(&workspace_dir().join("Dockerfile"));
    assert!(dockerfile.stages.len() >= 2, "a multi-stage build");
    let build = &dockerfile.stages[0];
    let runtime = dockerfile.stages.last().unwrap();
    assert_ne!(
        dockerfile.base_of(build),
        dockerfile.base_of(runtime),
        "the runtime is not the build image"
    );
    let cargo = build
        .all("RUN")
        .find(|r| r.contains("cargo build"))
        .expect("the build stage runs cargo build");
    for flag in ["--release", "--locked"] {
        assert!(cargo.contains(flag), "cargo build without {flag}: {cargo}");
    }
    let built: BTreeSet<String> = cargo
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_owned())
        .collect();
    let build_name = build
        .name
        .as_deref()
        .expect("the build stage is named (FROM ... AS name)");
    let copied: Vec<&str> = runtime
        .all("COPY")
        .filter(|c| c.starts_with(&format!("--from={build_name} ")))
        .collect();
    let copied_to = |bin: &str| {
        copied.iter().any(|c| {
            let words: Vec<&str> = c.split_whitespace().collect();
            words[1..words.len() - 1]
                .iter()
                .any(|s| s.ends_with(&format!("/{bin}")))
                && words
                    .last()
                    .is_some_and(|d| d.trim_end_matches('/') == "/usr/local/bin")
        })
    };

    // The image's user: numeric (so runAsNonRoot can verify it), not root,
    // and the one the pods run as.
    let user = runtime
        .all("USER")
        .last()
        .expect("USER in the runtime stage");
    let uid: i64 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "the image runs as root");

    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        Dockerfile::stage_arg(runtime, "VERSION").as_deref(),
        Some(version),
        "the Dockerfile's VERSION default vs the workspace version"
    );
    assert!(
        runtime
            .all("LABEL")
            .any(|l| l.contains("org.opencontainers.image.version=\"${VERSION}\"")),
        "the version label"
    );

    let rendered = rendered();
    let image = rendered
        .images
        .first()
        .expect("an images entry in the kustomization");
    assert_eq!(
        image.new_tag.as_deref(),
        Some(version),
        "the kustomization's image tag"
    );
    assert!(
        image.new_name.is_some(),
        "the kustomization names the image"
    );
    for deployment in rendered.of_kind("Deployment") {
        let container = container(deployment);
        assert_eq!(
            container["image"].as_str(),
            Some(image.name.as_str()),
            "Deployment {}: the image the kustomization sets",
            deployment.name
        );
        let service = service_of(deployment);
        assert_eq!(
            container["command"][0].as_str(),
            Some(format!("/usr/local/bin/{service}").as_str()),
            "Deployment {}",
            deployment.name
        );
        assert!(
            built.contains(&service),
            "the Dockerfile does not build {service}: {cargo}"
        );
        assert!(
            copied_to(&service),
            "the Dockerfile does not copy {service} to /usr/local/bin"
        );
        let pod_user =
            deployment.doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"].as_i64();
        assert_eq!(
            pod_user,
            Some(uid),
            "Deployment {}: runAsUser vs the image's USER",
            deployment.name
        );
    }
}

#[test]
fn pods_meet_the_restricted_pod_security_standard_and_stay_available() {
    let rendered = rendered();
    let mut problems = Vec::new();
    for deployment in rendered.of_kind("Deployment") {
        let d = format!("Deployment {}", deployment.name);
        let template = &deployment.doc["spec"]["template"];
        let pod = &template["spec"];
        let labels = &template["metadata"]["labels"];
        let container = container(deployment);
        let mut expect = |ok: bool, what: &str| {
            if !ok {
                problems.push(format!("{d}: {what}"));
            }
        };

        expect(
            deployment.namespace != "default",
            "runs in the default namespace",
        );
        expect(
            rendered
                .find("Namespace", "", &deployment.namespace)
                .is_some_and(|n| {
                    n.doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"].as_str()
                        == Some("restricted")
                }),
            "its namespace is not defined here with pod-security enforce=restricted",
        );
        expect(
            pod["automountServiceAccountToken"].as_bool() == Some(false),
            "mounts a service-account token",
        );
        let account = pod["serviceAccountName"].as_str().unwrap_or("default");
        expect(
            rendered
                .find("ServiceAccount", &deployment.namespace, account)
                .is_some_and(|a| a.doc["automountServiceAccountToken"].as_bool() == Some(false)),
            "its ServiceAccount is not defined here with automountServiceAccountToken: false",
        );
        let pod_security = &pod["securityContext"];
        let security = &container["securityContext"];
        expect(
            pod_security["runAsNonRoot"].as_bool() == Some(true)
                || security["runAsNonRoot"].as_bool() == Some(true),
            "runAsNonRoot is not set",
        );
        expect(
            pod_security["seccompProfile"]["type"].as_str() == Some("RuntimeDefault"),
            "no RuntimeDefault seccomp profile",
        );
        expect(
            security["allowPrivilegeEscalation"].as_bool() == Some(false),
            "allowPrivilegeEscalation is not false",
        );
        expect(
            security["readOnlyRootFilesystem"].as_bool() == Some(true),
            "the root filesystem is writable",
        );
        expect(
            security["capabilities"]["drop"]
                .as_vec()
                .is_some_and(|d| d.iter().any(|c| c.as_str() == Some("ALL"))),
            "capabilities are not all dropped",
        );
        expect(
            security["capabilities"]["add"].is_badvalue(),
            "adds capabilities",
        );
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                expect(
                    !container["resources"][kind][resource].is_badvalue(),
                    &format!("no {resource} {kind}"),
                );
            }
        }
        // Every writable path is an emptyDir bounded in size.
        for mount in container["volumeMounts"].as_vec().into_iter().flatten() {
            if mount["readOnly"].as_bool() == Some(true) {
                continue;
            }
            let volume = pod["volumes"]
                .as_vec()
                .unwrap()
                .iter()
                .find(|v| v["name"] == mount["name"])
                .unwrap();
            expect(
                !volume["emptyDir"]["sizeLimit"].is_badvalue(),
                &format!(
                    "writable mount {:?} is not a size-limited emptyDir",
                    mount["mountPath"]
                ),
            );
        }

        // Availability: more than one replica, spread over nodes, and a
        // budget that keeps all but one through a drain.
        expect(
            deployment.doc["spec"]["replicas"].as_i64().unwrap_or(1) >= 2,
            "fewer than 2 replicas",
        );
        expect(
            pod["topologySpreadConstraints"]
                .as_vec()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["topologyKey"].as_str() == Some("kubernetes.io/hostname")
                        && labels_match(&c["labelSelector"]["matchLabels"], labels)
                }),
            "no topology spread over nodes",
        );
        expect(
            rendered.of_kind("PodDisruptionBudget").any(|p| {
                p.namespace == deployment.namespace
                    && labels_match(&p.doc["spec"]["selector"]["matchLabels"], labels)
            }),
            "no PodDisruptionBudget",
        );
        expect(
            rendered.of_kind("NetworkPolicy").any(|p| {
                p.namespace == deployment.namespace
                    && labels_match(&p.doc["spec"]["podSelector"]["matchLabels"], labels)
                    && !p.doc["spec"]["ingress"].is_badvalue()
            }),
            "no NetworkPolicy says who may reach its pods",
        );
    }
    assert!(
        problems.is_empty(),
        "pod settings:\n  {}",
        problems.join("\n  ")
    );
}

/// The virtualenv `scripts/install-test-deps` makes, with kubectl (for
/// `kubectl kustomize`), kubernetes-validate and checkov.
fn venv_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("PLATFORM_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join(".venv"));
    let tool = venv.join("bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run scripts/install-test-deps",
        tool.display()
    );
    tool
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// kustomize names a generated ConfigMap `<name>-<10-character hash>`.
fn without_hash(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((base, hash))
            if hash.len() == 10 && hash.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            base
        }
        _ => name,
    }
}

/// At most this many checkov checks may be skipped, each with its reason
/// written beside the skip in the manifest.
const MAX_CHECKOV_SKIPS: usize = 4;

#[test]
#[ignore = "needs checkov; run by .ci/run"]
fn rendered_manifests_pass_kubernetes_validate_and_checkov() {
    let deploy = examples_dir().join("deploy");
    let output = run(Command::new(venv_tool("kubectl"))
        .arg("kustomize")
        .arg(&deploy));
    let docs = YamlLoader::load_from_str(&output).unwrap();

    // kubectl's rendering and the reader the tests above use agree.
    let ours = rendered();
    let mut expected: BTreeSet<(String, String, String)> = ours
        .resources
        .iter()
        .map(|r| (r.kind.clone(), r.namespace.clone(), r.name.clone()))
        .collect();
    expected.extend(
        ours.config_maps
            .iter()
            .map(|c| ("ConfigMap".into(), c.namespace.clone(), c.name.clone())),
    );
    let theirs: BTreeSet<(String, String, String)> = docs
        .iter()
        .map(|d| {
            let kind = d["kind"].as_str().unwrap().to_owned();
            let name = d["metadata"]["name"].as_str().unwrap();
            let name = if kind == "ConfigMap" {
                without_hash(name)
            } else {
                name
            };
            let namespace = d["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (kind, namespace, name.to_owned())
        })
        .collect();
    assert_eq!(
        theirs, expected,
        "kubectl kustomize vs the deploy test's reader"
    );
    for d in docs
        .iter()
        .filter(|d| d["kind"].as_str() == Some("Deployment"))
    {
        for volume in d["spec"]["template"]["spec"]["volumes"]
            .as_vec()
            .into_iter()
            .flatten()
        {
            if let Some(name) = volume["configMap"]["name"].as_str() {
                assert!(
                    docs.iter().any(|c| c["kind"].as_str() == Some("ConfigMap")
                        && c["metadata"]["name"].as_str() == Some(name)),
                    "rendered Deployment mounts ConfigMap {name}, which the rendering lacks"
                );
            }
        }
    }

    let scratch = tempfile::tempdir().unwrap();
    let rendered_file = scratch.path().join("rendered.yaml");
    std::fs::write(&rendered_file, &output).unwrap();

    // Every manifest, rendered and as written.
    let files: BTreeSet<PathBuf> = ours.resources.iter().map(|r| r.file.clone()).collect();
    run(Command::new(venv_tool("kubernetes-validate"))
        .arg("--strict")
        .arg("--quiet")
        .arg(&rendered_file)
        .args(&files));

    // checkov: no failed check; skips few, each with its reason. Nothing is
    // downloaded (--skip-download keeps checkov off the network).
    let out = Command::new(venv_tool("checkov"))
        .args([
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--skip-download",
            "--file",
        ])
        .arg(&rendered_file)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's report is not JSON ({e}):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let summary = &report["summary"];
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["check_name"]))
        .collect();
    assert!(
        failed.is_empty() && summary["failed"] == 0,
        "checkov: {} failed:\n  {}",
        summary["failed"],
        failed.join("\n  ")
    );
    assert!(
        summary["passed"].as_u64().unwrap() > 100,
        "checkov ran its checks: {summary}"
    );
    let skipped = report["results"]["skipped_checks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let skipped_ids: BTreeSet<&str> = skipped
        .iter()
        .map(|c| c["check_id"].as_str().unwrap())
        .collect();
    assert!(
        skipped_ids.len() <= MAX_CHECKOV_SKIPS,
        "checkov: {} checks skipped, at most {MAX_CHECKOV_SKIPS}: {skipped_ids:?}",
        skipped_ids.len()
    );
    for skip in &skipped {
        let reason = skip["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or_default();
        assert!(
            reason.split_whitespace().count() >= 5,
            "checkov skip of {} on {} without a reason",
            skip["check_id"],
            skip["resource"]
        );
    }
    println!("checkov: {summary}; skipped {skipped_ids:?}");
}

#[test]
#[ignore = "needs hadolint; run by .ci/run"]
fn the_dockerfile_passes_hadolint() {
    let out = run(Command::new(venv_tool("hadolint")).arg(workspace_dir().join("Dockerfile")));
    assert!(out.trim().is_empty(), "hadolint:\n{out}");
}
