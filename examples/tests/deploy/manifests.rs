//! What `kubectl apply -k examples/deploy/` would create, read from the
//! files without kubectl: the resources with their namespace, and the
//! ConfigMaps the kustomizations generate, each with the files it is made of.
//!
//! Only the kustomization fields the examples use are understood; any other
//! field is an error, so this reading cannot silently drift from kustomize's
//! (the `#[ignore]`d test in `main.rs` also compares it with `kubectl
//! kustomize`). Without a `kustomization.yaml` the directory is read as
//! plain manifests, as `kubectl apply -f` would: that is how the test judged
//! the manifests before there was one.

use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

/// The fields of a kustomization this reader understands.
const KNOWN_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "configMapGenerator",
    "images",
];

/// One Kubernetes object, with the namespace it lands in.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) namespace: String,
    /// Where it was written, for messages.
    pub(crate) file: PathBuf,
    pub(crate) doc: Yaml,
}

/// A ConfigMap made by a `configMapGenerator`: its keys are the files' names.
#[derive(Debug, Clone)]
pub(crate) struct GeneratedConfigMap {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) files: Vec<PathBuf>,
}

impl GeneratedConfigMap {
    /// The ConfigMap's keys: the files' names, as kustomize makes them.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }
}

/// An `images:` entry of a kustomization.
#[derive(Debug, Clone)]
pub(crate) struct ImageOverride {
    pub(crate) name: String,
    pub(crate) new_name: Option<String>,
    pub(crate) new_tag: Option<String>,
}

/// Everything a directory of manifests creates.
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    pub(crate) resources: Vec<Resource>,
    pub(crate) config_maps: Vec<GeneratedConfigMap>,
    pub(crate) images: Vec<ImageOverride>,
}

impl Rendered {
    pub(crate) fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Resource> {
        self.resources.iter().filter(move |r| r.kind == kind)
    }

    pub(crate) fn find(&self, kind: &str, namespace: &str, name: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|r| r.kind == kind && r.namespace == namespace && r.name == name)
    }

    pub(crate) fn config_map(&self, namespace: &str, name: &str) -> Option<&GeneratedConfigMap> {
        self.config_maps
            .iter()
            .find(|c| c.namespace == namespace && c.name == name)
    }
}

/// Reads `dir` as kustomize would (or as plain manifests when it has no
/// kustomization). Panics with the file and the reason on anything it cannot
/// read: this is test code, and the message is the report.
pub(crate) fn render(dir: &Path) -> Rendered {
    let mut rendered = Rendered::default();
    if dir.join("kustomization.yaml").exists() {
        kustomize(dir, None, &mut rendered);
    } else {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        for file in files {
            rendered.resources.extend(resources_in(&file, None));
        }
    }
    rendered
}

fn kustomize(dir: &Path, outer_namespace: Option<&str>, rendered: &mut Rendered) {
    let path = dir.join("kustomization.yaml");
    let k = single_doc(&path);
    let fields = k
        .as_hash()
        .unwrap_or_else(|| panic!("{}: not a map", path.display()));
    for key in fields.keys() {
        let key = key.as_str().unwrap_or_default();
        assert!(
            KNOWN_FIELDS.contains(&key),
            "{}: field `{key}` is not understood by the deploy test's reader; teach it (tests/deploy/manifests.rs)",
            path.display()
        );
    }
    // An outer kustomization's namespace wins over an inner one's.
    let namespace = outer_namespace
        .map(str::to_owned)
        .or_else(|| k["namespace"].as_str().map(str::to_owned));

    for generator in k["configMapGenerator"].as_vec().into_iter().flatten() {
        let name = generator["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: a configMapGenerator without a name", path.display()));
        let files = generator["files"]
            .as_vec()
            .unwrap_or_else(|| panic!("{}: generator {name} has no files", path.display()))
            .iter()
            .map(|f| {
                let f = f.as_str().unwrap();
                assert!(
                    !f.contains('='),
                    "{}: generator {name}: renamed keys (`key=file`) are not understood here",
                    path.display()
                );
                dir.join(f)
            })
            .collect();
        rendered.config_maps.push(GeneratedConfigMap {
            name: name.to_owned(),
            namespace: namespace.clone().unwrap_or_else(|| "default".into()),
            files,
        });
    }
    for image in k["images"].as_vec().into_iter().flatten() {
        rendered.images.push(ImageOverride {
            name: image["name"].as_str().unwrap().to_owned(),
            new_name: image["newName"].as_str().map(str::to_owned),
            new_tag: image["newTag"].as_str().map(str::to_owned),
        });
    }
    for resource in k["resources"].as_vec().into_iter().flatten() {
        let target = dir.join(resource.as_str().unwrap());
        if target.is_dir() {
            kustomize(&target, namespace.as_deref(), rendered);
        } else {
            rendered
                .resources
                .extend(resources_in(&target, namespace.as_deref()));
        }
    }
}

fn resources_in(file: &Path, namespace: Option<&str>) -> Vec<Resource> {
    load(file)
        .into_iter()
        .filter(|d| !d.is_null())
        .map(|doc| {
            let kind = doc["kind"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a document without a kind", file.display()))
                .to_owned();
            let name = doc["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: a {kind} without a name", file.display()))
                .to_owned();
            let namespace = if kind == "Namespace" {
                String::new()
            } else {
                namespace
                    .or(doc["metadata"]["namespace"].as_str())
                    .unwrap_or("default")
                    .to_owned()
            };
            Resource {
                kind,
                name,
                namespace,
                file: file.to_owned(),
                doc,
            }
        })
        .collect()
}

pub(crate) fn load(file: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn single_doc(file: &Path) -> Yaml {
    let mut docs = load(file);
    assert_eq!(docs.len(), 1, "{}: one document expected", file.display());
    docs.remove(0)
}
