//! The loader's validation of `http.clients.<name>` and the client builder
//! agree: what `--check-config` accepts, the client builds, and what the
//! builder refuses, `--check-config` has refused already.

use platform_config::{Validate, Validation};
use platform_core::resilience::ResilienceRegistry;
use platform_http::Client;
use platform_http::ClientSettings;
use proptest::prelude::*;

mod section;

fn validation_problems(settings: &ClientSettings) -> Vec<(String, String)> {
    let mut v = Validation::default();
    settings.validate(&mut v);
    v.errors().to_vec()
}

fn builds(settings: &ClientSettings) -> bool {
    Client::builder("agree", settings)
        .registry(&ResilienceRegistry::new())
        .build()
        .is_ok()
}

/// Pieces base URLs are made of, the awkward ones included.
fn base_url() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "http://", "https://", "HTTP://", "ftp://", "", "http:/", "http:",
    ]);
    let host = prop::sample::select(vec![
        "inventory",
        "127.0.0.1",
        "[::1]",
        "[::1",
        "exa mple",
        "",
        "xn--80ak6aa92e.com",
        "a.b.c",
        "%41",
        "user@host",
    ]);
    let port = prop::sample::select(vec![
        "", ":8081", ":0", ":65535", ":65536", ":99999", ":", ":x",
    ]);
    let path = prop::sample::select(vec![
        "", "/", "/api", "/api/", "?q=1", "#frag", "/a b", "/%zz", "\\x",
    ]);
    prop_oneof![
        (scheme, host, port, path).prop_map(|(s, h, p, x)| format!("{s}{h}{p}{x}")),
        "\\PC{0,24}",
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,12}",
        "\\PC{0,8}",
        prop::sample::select(vec!["a\u{1}b", "tab\there", "line\nbreak", "é", "\u{7f}"])
            .prop_map(String::from),
    ]
}

proptest! {
    #[test]
    fn base_urls_and_headers_are_judged_alike(
        url in base_url(),
        name in prop::sample::select(vec!["x-team", "X-Team", "bad name", "", "x:y", "é"]),
        value in header_value(),
    ) {
        let mut settings = ClientSettings { base_url: url, ..ClientSettings::default() };
        settings.headers.insert(name.to_owned(), value);
        let problems = validation_problems(&settings);
        prop_assert_eq!(
            problems.is_empty(),
            builds(&settings),
            "validation says {:?} for {:?}",
            problems,
            settings
        );
    }
}

#[test]
fn the_examples_judged_by_hand() {
    for (url, ok) in [
        ("http://inventory:8081/api", true),
        ("https://example.test", true),
        ("http://inventory:99999", false),
        ("inventory:8081", false),
        ("http://x/?a=1", false),
        ("http://", false),
    ] {
        let settings = ClientSettings {
            base_url: url.into(),
            ..ClientSettings::default()
        };
        assert_eq!(validation_problems(&settings).is_empty(), ok, "{url}");
        assert_eq!(builds(&settings), ok, "{url}");
    }
}
