//! Reload: good, bad, rapid.

use std::time::Duration;

use platform_config::reload::Reloader;

use crate::settings::{Root, config_dir, loader, write};

fn start(dir: &std::path::Path) -> Reloader<Root> {
    let loader = loader(dir);
    let loaded = loader.load::<Root>().unwrap();
    Reloader::new(loader, loaded)
}

#[test]
fn a_good_reload_swaps_and_notifies() {
    let dir = config_dir(&[("default.toml", "[db]\nhost = \"a\"\n")]);
    let reloader = start(dir.path());
    let mut rx = reloader.subscribe();
    assert!(!reloader.reload().unwrap(), "nothing changed yet");
    assert!(!rx.has_changed().unwrap());

    write(dir.path(), "default.toml", "[db]\nhost = \"b\"\n");
    assert!(reloader.reload().unwrap());
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().db.host, "b");
    assert_eq!(reloader.current().db.host, "b");
    let status = reloader.status();
    assert_eq!(
        (status.generation, status.reloads, status.failed_reloads),
        (1, 2, 0)
    );
}

#[test]
fn a_bad_reload_keeps_the_last_good_config_and_reports() {
    let dir = config_dir(&[("default.toml", "[db]\nhost = \"a\"\n")]);
    let reloader = start(dir.path());
    let rx = reloader.subscribe();

    write(
        dir.path(),
        "default.toml",
        "[db]\nhost = \"b\"\npool_size = -1\nhots = 1\n",
    );
    let e = reloader.reload().unwrap_err();
    assert_eq!(e.report().unwrap().problems.len(), 2, "{e}");
    assert_eq!(reloader.current().db.host, "a");
    assert!(
        !rx.has_changed().unwrap(),
        "subscribers are not told of a rejected config"
    );
    let status = reloader.status();
    assert!(!status.is_ok());
    assert_eq!(status.failed_reloads, 1);
    assert!(
        status
            .last_error
            .unwrap()
            .to_string()
            .contains("db.pool_size")
    );

    write(dir.path(), "default.toml", "[db]\nhost = \"c\"\n");
    assert!(reloader.reload().unwrap());
    assert!(
        reloader.status().is_ok(),
        "a good reload clears the failure"
    );
    assert_eq!(reloader.current().db.host, "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_are_picked_up_and_rapid_writes_debounced() {
    let dir = config_dir(&[("default.toml", "[db]\nhost = \"v0\"\n")]);
    let reloader = start(dir.path());
    let mut status = reloader.subscribe_status();
    let _guard = reloader.watch(Duration::from_millis(300)).unwrap();

    for i in 1..=5 {
        write(
            dir.path(),
            "default.toml",
            &format!("[db]\nhost = \"v{i}\"\n"),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Bounded wait for the one reload the burst should cause.
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| s.reloads >= 1))
        .await
        .expect("a reload within 10 s")
        .unwrap();
    assert_eq!(reloader.current().db.host, "v5");
    // Nothing else is pending: a quiet period brings no second reload.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = reloader.status();
    assert_eq!((s.reloads, s.generation), (1, 1), "{s:?}");
}

#[test]
fn a_rule_added_to_the_loader_is_checked_on_reload_too() {
    let dir = config_dir(&[("default.toml", "[db]\nhost = \"a\"\n")]);
    let loader = loader(dir.path()).rule(|root: &Root, v| {
        v.check(root.db.host != "forbidden", "db.host", "is forbidden here")
    });
    let reloader = Reloader::new(loader.clone(), loader.load::<Root>().unwrap());
    write(dir.path(), "default.toml", "[db]\nhost = \"forbidden\"\n");
    let e = reloader.reload().unwrap_err();
    assert!(
        e.to_string().contains("`db.host`") && e.to_string().contains("default.toml:2"),
        "{e}"
    );
    assert_eq!(reloader.current().db.host, "a");
}
