//! `flaky`: one request in a hundred fails transiently (a 503); the platform
//! client with its defaults should hide it. Raw reqwest in the same run shows
//! the failure rate the client starts from.

use std::time::{Duration, Instant};

use platform_benches::load::{Mode, TargetServer, paced_loop};

use crate::Budget;

const TASKS: usize = 4;

pub(crate) fn run(budget: Budget) -> Result<serde_json::Value, String> {
    let server = TargetServer::start(Mode::Flaky).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let settings = platform_http::ClientSettings {
        base_url: server.url(),
        ..Default::default()
    };
    let (platform, raw) = rt.block_on(async {
        let client =
            platform_http::Client::from_settings("flaky", &settings).map_err(|e| e.to_string())?;
        let platform = paced_loop(
            Instant::now(),
            TASKS,
            budget.load,
            Duration::ZERO,
            move || {
                let c = client.clone();
                async move { matches!(c.get("/").send().await, Ok(r) if r.status() == 200) }
            },
        )
        .await;
        let client = reqwest::Client::new();
        let url = format!("{}/", server.url());
        let raw = paced_loop(
            Instant::now(),
            TASKS,
            budget.load,
            Duration::ZERO,
            move || {
                let (c, url) = (client.clone(), url.clone());
                async move { matches!(c.get(&url).send().await, Ok(r) if r.status() == 200) }
            },
        )
        .await;
        Ok::<_, String>((platform, raw))
    })?;
    let rate = |calls: &[(Duration, Duration, bool)]| {
        calls.iter().filter(|c| c.2).count() as f64 / calls.len().max(1) as f64
    };
    let success_rate = rate(&platform);
    let raw_rate = rate(&raw);
    println!("{:<18} {:>10} {:>14}", "client", "requests", "success rate");
    println!(
        "{:<18} {:>10} {:>14.5}",
        "platform",
        platform.len(),
        success_rate
    );
    println!("{:<18} {:>10} {:>14.5}", "raw reqwest", raw.len(), raw_rate);
    println!(
        "  success rate: {success_rate:.5} (target >= 0.999) {}",
        if success_rate >= 0.999 {
            "met"
        } else {
            "MISSED"
        }
    );
    let svg = platform_benches::plot::bar_chart(
        "flaky target (1% transient 503): success rate",
        "",
        &[
            ("platform client".into(), success_rate),
            ("raw reqwest".into(), raw_rate),
        ],
        Some(0.999),
    );
    platform_benches::plot::write_svg("flaky", &svg).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "success_rate": success_rate,
        "raw_success_rate": raw_rate,
        "requests": platform.len(),
    }))
}
