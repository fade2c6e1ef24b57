//! Files as Kubernetes mounts them: symlinks into `..data`, swapped atomically.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use platform_config::Problem;
use platform_config::reload::Reloader;

use crate::settings::{Root, config_dir, loader, write};

fn source_problem(dir: &Path) -> (std::path::PathBuf, String) {
    let e = loader(dir).load::<Root>().unwrap_err();
    match &e.report().unwrap().problems[..] {
        [Problem::Source { path, message, .. }] => (path.clone(), message.clone()),
        other => panic!("expected one source problem, got {other:#?}"),
    }
}

#[test]
fn a_dangling_symlink_for_a_config_file_is_an_error_naming_it() {
    let dir = config_dir(&[]);
    symlink("..data/default.toml", dir.path().join("default.toml")).unwrap();
    let (path, message) = source_problem(dir.path());
    assert_eq!(path, dir.path().join("default.toml"));
    assert!(
        message.contains("symlink to ..data/default.toml") && message.contains("does not exist"),
        "{message}"
    );
}

#[test]
fn a_symlink_loop_is_an_error_naming_it() {
    let dir = config_dir(&[]);
    symlink("local.toml", dir.path().join("default.toml")).unwrap();
    symlink("default.toml", dir.path().join("local.toml")).unwrap();
    let e = loader(dir.path()).load::<Root>().unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("default.toml") && text.contains("cannot be followed"),
        "{text}"
    );
    assert_eq!(e.report().unwrap().problems.len(), 2, "both links: {text}");
}

#[test]
fn a_config_dir_that_is_a_dangling_symlink_is_an_error_even_as_the_fallback() {
    let dir = config_dir(&[]);
    let mount = dir.path().join("config");
    symlink("gone", &mount).unwrap();
    let e = platform_config::Loader::new()
        .env_vars(Vec::<(String, String)>::new())
        .fallback_config_dir(&mount)
        .load::<Root>()
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("config: is a symlink to gone"), "{text}");
}

#[test]
fn a_secret_file_that_is_a_dangling_link_or_a_directory_is_named() {
    let dir = config_dir(&[]);
    symlink("nowhere", dir.path().join("password")).unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    for (target, wanted) in [("password", "does not exist"), ("secrets", "directory")] {
        let file = dir.path().join(target);
        let e = loader(dir.path())
            .env_vars([("APP__DB__PASSWORD_FILE", file.to_str().unwrap())])
            .load::<Root>()
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("APP__DB__PASSWORD_FILE")
                && text.contains(target)
                && text.contains(wanted),
            "{text}"
        );
    }
}

/// A ConfigMap volume as the kubelet writes it (its atomic writer): the
/// files live in a timestamped directory, `..data` points at it, and each
/// key is a symlink through `..data`.
struct ConfigMapVolume {
    dir: tempfile::TempDir,
    current: String,
}

impl ConfigMapVolume {
    fn new(files: &[(&str, &str)]) -> Self {
        let dir = config_dir(&[]);
        let current = "..2026_11_30_12_00_00.123".to_owned();
        Self::write_version(dir.path(), &current, files);
        symlink(&current, dir.path().join("..data")).unwrap();
        for (name, _) in files {
            symlink(format!("..data/{name}"), dir.path().join(name)).unwrap();
        }
        ConfigMapVolume { dir, current }
    }

    fn write_version(root: &Path, version: &str, files: &[(&str, &str)]) {
        std::fs::create_dir(root.join(version)).unwrap();
        for (name, content) in files {
            write(&root.join(version), name, content);
        }
    }

    /// An update: a new timestamped directory, `..data_tmp` pointing at it,
    /// renamed over `..data` (the atomic step), then the old one removed.
    fn update(&mut self, version: &str, files: &[(&str, &str)]) {
        let root = self.dir.path();
        Self::write_version(root, version, files);
        symlink(version, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        std::fs::remove_dir_all(root.join(&self.current)).unwrap();
        self.current = version.to_owned();
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

#[test]
fn a_configmap_volume_loads_and_reloads_through_the_data_swap() {
    let mut volume = ConfigMapVolume::new(&[("default.toml", "[db]\nhost = \"v1\"\n")]);
    let loader = loader(volume.path());
    let loaded = loader.load::<Root>().unwrap();
    assert_eq!(loaded.value().db.host, "v1");
    assert_eq!(loaded.files(), [volume.path().join("default.toml")]);
    let reloader = Reloader::new(loader, loaded);

    volume.update(
        "..2026_11_30_12_05_00.456",
        &[("default.toml", "[db]\nhost = \"v2\"\n")],
    );
    assert!(reloader.reload().unwrap());
    assert_eq!(reloader.current().db.host, "v2");

    // A key removed from the ConfigMap: its link dangles until the kubelet
    // removes it. That is an error, and the last good config stays.
    volume.update("..2026_11_30_12_10_00.789", &[("other.toml", "# other\n")]);
    let e = reloader.reload().unwrap_err();
    assert!(e.to_string().contains("default.toml: is a symlink"), "{e}");
    assert_eq!(reloader.current().db.host, "v2");
}

async fn wait_for_host(reloader: &Reloader<Root>, host: &str) {
    let mut rx = reloader.subscribe();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|root| root.db.host == host),
    )
    .await;
    assert!(
        matches!(result, Ok(Ok(_))),
        "no reload to {host} within 10 s: {:?}",
        reloader.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_follows_the_data_swap_in_place_writes_and_rename_on_save() {
    // The kubelet's swap.
    let mut volume = ConfigMapVolume::new(&[("default.toml", "[db]\nhost = \"v1\"\n")]);
    let loader = loader(volume.path());
    let reloader = Reloader::new(loader.clone(), loader.load::<Root>().unwrap());
    let _guard = reloader.watch(Duration::from_millis(100)).unwrap();
    volume.update(
        "..2026_11_30_12_05_00.456",
        &[("default.toml", "[db]\nhost = \"v2\"\n")],
    );
    wait_for_host(&reloader, "v2").await;

    // A plain directory: in-place writes, then an editor's rename-on-save.
    let dir = config_dir(&[("default.toml", "[db]\nhost = \"a\"\n")]);
    let loader = crate::settings::loader(dir.path());
    let reloader = Reloader::new(loader.clone(), loader.load::<Root>().unwrap());
    let _guard = reloader.watch(Duration::from_millis(100)).unwrap();
    write(dir.path(), "default.toml", "[db]\nhost = \"b\"\n");
    wait_for_host(&reloader, "b").await;
    write(dir.path(), ".default.toml.swp", "[db]\nhost = \"c\"\n");
    std::fs::rename(
        dir.path().join(".default.toml.swp"),
        dir.path().join("default.toml"),
    )
    .unwrap();
    wait_for_host(&reloader, "c").await;
}
