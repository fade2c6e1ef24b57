//! Generated input never panics: every load ends in settings or a report,
//! quickly and in bounded memory.
//!
//! Files are generated at random, by mutating valid examples, and deeply
//! nested; environment variables and `--set` values from the schema's keys
//! and hostile text. A case that panics or takes too long is written to
//! `tests/corpus/` before the test fails, and every file there is replayed
//! by [`every_corpus_case_loads_or_is_refused`] (as are proptest's own seeds
//! in `proptest-regressions/`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::settings::{Root, config_dir, loader};

/// Slower than this is a failure: real loads take about a millisecond.
const TIME_BOUND: Duration = Duration::from_secs(2);

const VALID_TOML: &str = "[server]\nbind = \"127.0.0.1\"\nport = 8081\ntimeout = \"2s\"\nmax_body = \"1MiB\"\nsample_ratio = 0.5\n\n[db]\nhost = \"db\"\npool_size = 20\nreplicas = [\"r1\", \"r2\"]\n\n[app]\ncamelField = \"x\"\nports = [1, 2]\n[app.clients.inventory]\nbase_url = \"http://inventory\"\n";
const VALID_YAML: &str = "server:\n  bind: 127.0.0.1\n  port: 8081\n  timeout: 2s\n  sample_ratio: 0.5\ndb: &db\n  host: db\n  replicas: [r1, r2]\napp:\n  camelField: x\n  ports:\n    - 1\n    - 2\n  clients:\n    inventory: {base_url: 'http://inventory'}\n";
const VALID_JSON: &str = "{\"server\": {\"bind\": \"127.0.0.1\", \"port\": 8081, \"timeout\": \"2s\", \"sample_ratio\": 0.5},\n \"db\": {\"host\": \"db\", \"pool_size\": 20, \"replicas\": [\"r1\", \"r2\"]},\n \"app\": {\"ports\": [1, 2], \"clients\": {\"inventory\": {\"base_url\": \"http://inventory\"}}}}\n";

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// What one case feeds the loader.
#[derive(Debug, Clone)]
struct Case {
    /// `default.<ext>` and its content, if any.
    file: Option<(&'static str, String)>,
    env: Vec<(String, String)>,
    set: Vec<String>,
}

/// Loads a case; a panic or a slow load is saved to the corpus and fails.
fn check(case: &Case) -> Result<(), TestCaseError> {
    let dir = config_dir(&[]);
    if let Some((ext, text)) = &case.file {
        std::fs::write(dir.path().join(format!("default.{ext}")), text).unwrap();
    }
    let mut l = loader(dir.path()).env_vars(case.env.clone());
    for arg in &case.set {
        l = l.set_arg(arg);
    }
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| l.load::<Root>()));
    let took = started.elapsed();
    let verdict = match &outcome {
        Err(_) => Some("panicked".to_owned()),
        Ok(_) if took > TIME_BOUND => Some(format!("took {took:?}")),
        // An error is fine, but it must say something.
        Ok(Err(e)) if e.report().is_none_or(|r| r.problems.is_empty()) => {
            Some(format!("an error without problems: {e}"))
        }
        Ok(_) => None,
    };
    if let Some(verdict) = verdict {
        let saved = save_to_corpus(case);
        return Err(TestCaseError::fail(format!(
            "{verdict}; saved as {}",
            saved.display()
        )));
    }
    Ok(())
}

/// Saves a failing case. While proptest shrinks, every smaller failing case
/// overwrites the last under one name per run and test, so what stays is
/// the minimal one.
fn save_to_corpus(case: &Case) -> PathBuf {
    static RUN: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let test = std::thread::current()
        .name()
        .unwrap_or("test")
        .rsplit("::")
        .next()
        .unwrap_or("test")
        .to_owned();
    let stem = format!("found-{run}-{test}");
    for ext in ["toml", "yaml", "json", "env", "set"] {
        let _ = std::fs::remove_file(corpus_dir().join(format!("{stem}.{ext}")));
    }
    let dir = corpus_dir();
    let _ = std::fs::create_dir_all(&dir);
    if let Some((ext, text)) = &case.file {
        let _ = std::fs::write(dir.join(format!("{stem}.{ext}")), text);
    }
    if !case.env.is_empty() {
        let lines: String = case.env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let _ = std::fs::write(dir.join(format!("{stem}.env")), lines);
    }
    if !case.set.is_empty() {
        let lines: String = case.set.iter().map(|a| format!("{a}\n")).collect();
        let _ = std::fs::write(dir.join(format!("{stem}.set")), lines);
    }
    dir.join(stem)
}

/// A valid example with a few random edits: bytes deleted, duplicated, or
/// replaced by characters that matter to some parser.
fn mutated(example: &'static str) -> impl Strategy<Value = String> {
    let edit = (
        0..example.len(),
        0usize..3,
        prop::sample::select(vec![
            "[",
            "]",
            "{",
            "}",
            ":",
            "\"",
            "'",
            "&a",
            "*a",
            "!",
            "#",
            "\n",
            "=",
            ",",
            "- ",
            "\t",
            "nan",
            "inf",
            "1e999",
            "-",
            "<<: *db\n",
            "~",
            "\\u0000",
            "é",
            "\u{0}",
            "99999999999999999999",
        ]),
    );
    prop::collection::vec(edit, 1..6).prop_map(move |edits| {
        let mut text = example.as_bytes().to_vec();
        for (at, kind, piece) in edits {
            let at = at.min(text.len());
            match kind {
                0 => {
                    let end = (at + piece.len()).min(text.len());
                    text.drain(at..end);
                }
                1 => {
                    let end = (at + 16).min(text.len());
                    let slice = text[at..end].to_vec();
                    text.splice(at..at, slice);
                }
                _ => {
                    text.splice(at..at, piece.bytes());
                }
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// Deeply nested values in any of the three formats, under a real key.
fn nested() -> impl Strategy<Value = (&'static str, String)> {
    (0usize..3, 1usize..3000, any::<bool>()).prop_map(|(format, depth, tables)| {
        let (ext, open, close) = match (format, tables) {
            (0, false) => ("toml", "[", "]"),
            (0, true) => ("toml", "{a = ", "}"),
            (1, false) => ("yaml", "[", "]"),
            (1, true) => ("yaml", "{a: ", "}"),
            (_, false) => ("json", "[", "]"),
            (_, true) => ("json", "{\"a\": ", "}"),
        };
        let value = format!("{}1{}", open.repeat(depth), close.repeat(depth));
        let text = match ext {
            "toml" => format!("[app]\nports = {value}\n"),
            "yaml" => format!("app:\n  ports: {value}\n"),
            _ => format!("{{\"app\": {{\"ports\": {value}}}}}"),
        };
        (ext, text)
    })
}

fn file() -> impl Strategy<Value = (&'static str, String)> {
    prop_oneof![
        ("\\PC{0,300}").prop_map(|t| ("toml", t)),
        ("\\PC{0,300}").prop_map(|t| ("yaml", t)),
        ("\\PC{0,300}").prop_map(|t| ("json", t)),
        mutated(VALID_TOML).prop_map(|t| ("toml", t)),
        mutated(VALID_YAML).prop_map(|t| ("yaml", t)),
        mutated(VALID_JSON).prop_map(|t| ("json", t)),
        nested(),
    ]
}

/// Keys the schema knows, a few it does not, and hostile segments.
fn key() -> impl Strategy<Value = Vec<String>> {
    let segment = prop_oneof![
        4 => prop::sample::select(vec![
            "server", "bind", "port", "timeout", "max_body", "sample_ratio", "db", "host",
            "pool_size", "password", "password_file", "replicas", "app", "camelField", "code",
            "ports", "clients", "inventory", "base_url", "0", "1",
        ]).prop_map(String::from),
        1 => "\\PC{0,8}",
    ];
    prop::collection::vec(segment, 0..6)
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            "0",
            "-1",
            "8080",
            "65536",
            "nan",
            "NaN",
            "inf",
            "-inf",
            "1e999",
            "0.5",
            "true",
            "5s",
            "5 parsecs",
            "1MiB",
            "a,b,,c",
            ",",
            "007",
            "/nonexistent/file",
            "/dev/null",
            "/proc/self/environ",
            "99999999999999999999999",
        ])
        .prop_map(String::from),
        "\\PC{0,40}",
    ]
}

fn env() -> impl Strategy<Value = Vec<(String, String)>> {
    let var = (key(), value(), any::<bool>()).prop_map(|(key, value, exact)| {
        let name = if exact {
            format!("APP__{}", key.join("__").to_ascii_uppercase())
        } else {
            format!("APP_{}", key.join("__"))
        };
        (name, value)
    });
    prop::collection::vec(var, 0..4)
}

fn set() -> impl Strategy<Value = Vec<String>> {
    let arg = prop_oneof![
        (key(), value()).prop_map(|(key, value)| format!("{}={value}", key.join("."))),
        "\\PC{0,20}",
    ];
    prop::collection::vec(arg, 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_files_yield_settings_or_a_report(file in file()) {
        check(&Case { file: Some(file), env: vec![], set: vec![] })?;
    }

    #[test]
    fn generated_env_and_set_values_yield_settings_or_a_report(
        file in prop::option::of(mutated(VALID_TOML).prop_map(|t| ("toml", t))),
        env in env(),
        set in set(),
    ) {
        check(&Case { file, env, set })?;
    }
}

/// Every saved case (and the hand-made ones from the issue) still ends in
/// settings or a report, in time.
#[test]
fn every_corpus_case_loads_or_is_refused() {
    let mut stems: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus exists")
        .flatten()
        .map(|e| e.path().with_extension(""))
        .collect();
    stems.sort();
    stems.dedup();
    assert!(!stems.is_empty(), "the corpus holds the issue's cases");
    for stem in stems {
        let read = |ext: &str| std::fs::read_to_string(stem.with_extension(ext)).ok();
        let file = ["toml", "yaml", "json"]
            .into_iter()
            .find_map(|ext| read(ext).map(|text| (ext, text)));
        let env = read("env")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let set = read("set")
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        let case = Case { file, env, set };
        if let Err(e) = check(&case) {
            panic!("{}: {e}", stem.display());
        }
    }
}

/// The peak memory of this whole test process, generated cases included.
#[test]
fn loading_hostile_files_stays_in_bounded_memory() {
    let bomb = crate::limits::alias_bomb(9);
    let deep = format!("a: {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
    for (ext, text) in [("yaml", bomb), ("yaml", deep)] {
        check(&Case {
            file: Some((ext, text)),
            env: vec![],
            set: vec![],
        })
        .unwrap();
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    // The test binary itself, every test thread and their files: far below
    // what one unbounded alias bomb takes (739 MB for six levels).
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB");
}
