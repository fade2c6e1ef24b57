//! Bad configuration against the real `orders` binary: each case that once
//! got past `--check-config` (or took the process down) is refused with
//! exit 2 by `--check-config` and exit 1 by a normal start, naming the key
//! or the file, in under a second and 64 MiB. And `--check-config` agrees
//! with a normal start on every shipped profile and every corpus case.

#[path = "../support/mod.rs"]
mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::free_port;

const ORDERS: &str = env!("CARGO_BIN_EXE_orders");
const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/orders");
/// Every failing case the config property tests ever found, and the issue's.
const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../platform-config/tests/corpus"
);

/// How one run of `orders` went, measured by GNU time.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stderr: String,
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
}

/// One input: a config dir, variables and `--set` arguments.
struct Input {
    dir: PathBuf,
    env: Vec<(String, String)>,
    set: Vec<String>,
}

impl Input {
    fn command(&self, stats: &Path, check: bool) -> Command {
        let mut command = Command::new("time");
        command
            .args(["-f", "%e %U %S %M", "-o"])
            .arg(stats)
            .arg(ORDERS)
            .arg("--config-dir")
            .arg(&self.dir);
        if check {
            command.arg("--check-config");
        }
        // Loopback ports of its own, so a start never collides with another test.
        for (key, port) in [("server.bind", free_port()), ("admin.bind", free_port())] {
            command.args(["--set", &format!("{key}=127.0.0.1:{port}")]);
        }
        for arg in &self.set {
            command.args(["--set", arg]);
        }
        command
            .env_remove("APP_PROFILE")
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    /// Runs `orders` to its exit (a start that runs is stopped after `patience`).
    fn run(&self, check: bool, patience: Duration) -> Run {
        let stats = tempfile::NamedTempFile::new().unwrap();
        let mut child = self.command(stats.path(), check).spawn().unwrap();
        let deadline = Instant::now() + patience;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                // Still running: it passed start-up. Stop orders itself
                // (`time`'s child; killing `time` would orphan it).
                kill_children_of(child.id());
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            use std::io::Read;
            let _ = pipe.read_to_string(&mut stderr);
        }
        let text = std::fs::read_to_string(stats.path()).unwrap_or_default();
        // The last line; a first line may say "Command exited with non-zero status".
        let fields: Vec<f64> = text
            .lines()
            .last()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let [wall, user, sys, rss] = fields[..] else {
            panic!("no statistics from time: {text:?}");
        };
        Run {
            code: status.and_then(|s| s.code()),
            stderr,
            wall: Duration::from_secs_f64(wall),
            cpu: Duration::from_secs_f64(user + sys),
            peak_rss_kib: rss as u64,
        }
    }
}

/// Kills the children of `parent` (orders under `time`), which we started.
fn kill_children_of(parent: u32) {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
        .unwrap_or_default();
    for pid in children.split_whitespace() {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
    }
}

/// A config dir holding the shipped files of orders.
fn shipped_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(SHIPPED).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "toml") {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    dir
}

/// A case from the issue: what to write, and what the report must name.
struct Case {
    name: &'static str,
    /// Files over the shipped ones (`None`: an empty dir), made by `make`.
    shipped: bool,
    make: fn(&Path),
    names: &'static [&'static str],
}

fn alias_bomb(levels: usize) -> String {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=levels {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    text
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "sampling_ratio 1.5 and level loud",
            shipped: true,
            make: |d| {
                std::fs::write(
                    d.join("local.toml"),
                    "[telemetry.tracing]\nsampling_ratio = 1.5\n[telemetry.logging]\nlevel = \"loud\"\n",
                )
                .unwrap()
            },
            names: &[
                "telemetry.tracing.sampling_ratio",
                "telemetry.logging.level",
                "local.toml:2",
                "local.toml:4",
            ],
        },
        Case {
            name: "sampling_ratio nan",
            shipped: true,
            make: |d| {
                std::fs::write(
                    d.join("local.toml"),
                    "[telemetry.tracing]\nsampling_ratio = nan\n",
                )
                .unwrap()
            },
            names: &["telemetry.tracing.sampling_ratio", "local.toml:2", "finite"],
        },
        Case {
            name: "YAML alias bomb, six levels",
            shipped: false,
            make: |d| std::fs::write(d.join("default.yaml"), alias_bomb(6)).unwrap(),
            names: &["default.yaml:", "invalid YAML"],
        },
        Case {
            name: "YAML alias bomb, eight levels",
            shipped: false,
            make: |d| std::fs::write(d.join("default.yaml"), alias_bomb(8)).unwrap(),
            names: &["default.yaml:", "invalid YAML"],
        },
        Case {
            name: "default.toml a dangling symlink",
            shipped: false,
            make: |d| symlink("..data/default.toml", d.join("default.toml")).unwrap(),
            names: &["default.toml: is a symlink to ..data/default.toml"],
        },
        Case {
            name: "default.toml a symlink loop",
            shipped: false,
            make: |d| {
                symlink("default.toml", d.join("default.toml")).unwrap();
            },
            names: &["default.toml: is a symlink", "cannot be followed"],
        },
        Case {
            name: "YAML syntax error",
            shipped: false,
            make: |d| {
                std::fs::write(d.join("default.yaml"), "server:\n  bind: [unclosed\n").unwrap()
            },
            names: &["default.yaml:", "invalid YAML"],
        },
        Case {
            name: "JSON syntax error",
            shipped: false,
            make: |d| {
                std::fs::write(d.join("default.json"), "{\n  \"server\": {\"bind\": }\n}\n")
                    .unwrap()
            },
            names: &["default.json:2:", "invalid JSON"],
        },
    ]
}

#[test]
fn each_case_of_the_issue_is_refused_by_check_and_start_quickly_and_in_little_memory() {
    let mut table = Vec::new();
    for case in cases() {
        let dir = if case.shipped {
            shipped_dir()
        } else {
            tempfile::tempdir().unwrap()
        };
        (case.make)(dir.path());
        let input = Input {
            dir: dir.path().to_owned(),
            env: vec![],
            set: vec![],
        };
        for (check, wanted) in [(true, 2), (false, 1)] {
            let run = input.run(check, Duration::from_secs(10));
            let what = format!(
                "{} ({})",
                case.name,
                if check { "--check-config" } else { "start" }
            );
            assert_eq!(run.code, Some(wanted), "{what}: {run:#?}");
            for name in case.names {
                assert!(
                    run.stderr.contains(name),
                    "{what} names {name:?}: {}",
                    run.stderr
                );
            }
            // CPU time is what the input costs; wall time also waits for a
            // machine shared with other builds, so it gets more room.
            assert!(run.cpu < Duration::from_secs(1), "{what}: {run:#?}");
            assert!(run.wall < Duration::from_secs(3), "{what}: {run:#?}");
            assert!(run.peak_rss_kib < 64 * 1024, "{what}: {run:#?}");
            table.push(format!(
                "{what}: exit {wanted}, {:.2} s wall, {:.2} s cpu, {} KiB peak",
                run.wall.as_secs_f64(),
                run.cpu.as_secs_f64(),
                run.peak_rss_kib
            ));
        }
    }
    // Shown with --nocapture: the figures the README quotes.
    println!("{}", table.join("\n"));
}

/// What `--check-config` said and what a start did with the same input.
fn agree(label: &str, input: &Input) {
    let check = input.run(true, Duration::from_secs(10));
    // Given time to start: a start that is still running passed start-up.
    let start = input.run(false, Duration::from_secs(3));
    match (check.code, start.code) {
        (Some(0), None) | (Some(2), Some(1)) => {}
        _ => panic!(
            "{label}: --check-config exited {:?}, a start {:?}\ncheck: {}\nstart: {}",
            check.code, start.code, check.stderr, start.stderr
        ),
    }
}

#[test]
fn check_config_and_start_agree_on_every_profile_and_corpus_case() {
    let shipped = shipped_dir();
    for profile in ["", "dev", "prod"] {
        let input = Input {
            dir: shipped.path().to_owned(),
            env: if profile.is_empty() {
                vec![]
            } else {
                vec![("APP_PROFILE".into(), profile.into())]
            },
            set: vec![],
        };
        agree(&format!("profile {profile:?}"), &input);
    }

    let mut stems: Vec<PathBuf> = std::fs::read_dir(CORPUS)
        .unwrap()
        .flatten()
        .map(|e| e.path().with_extension(""))
        .collect();
    stems.sort();
    stems.dedup();
    assert!(stems.len() >= 10, "the corpus is there: {stems:?}");
    for stem in stems {
        let dir = shipped_dir();
        let read = |ext: &str| std::fs::read(stem.with_extension(ext)).ok();
        // A corpus file is the local layer over the shipped files.
        for ext in ["toml", "yaml", "json"] {
            if let Some(bytes) = read(ext) {
                std::fs::write(dir.path().join(format!("local.{ext}")), bytes).unwrap();
            }
        }
        let lines = |ext: &str| -> Vec<String> {
            String::from_utf8_lossy(&read(ext).unwrap_or_default())
                .lines()
                .map(str::to_owned)
                .collect()
        };
        let input = Input {
            dir: dir.path().to_owned(),
            env: lines("env")
                .iter()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            set: lines("set"),
        };
        agree(&stem.display().to_string(), &input);
    }
}
