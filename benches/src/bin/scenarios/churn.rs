//! `churn`: endpoints added and removed under load (the discovery answer
//! changes every 100 ms, never empty, removed backends keep running so
//! in-flight requests drain): no request may fail.

use std::time::{Duration, Instant};

use platform_benches::load::{Mode, TargetServer, paced_loop};
use platform_core::discovery::{Endpoint, ManualResolver};

use crate::Budget;

const TASKS: usize = 8;
const BACKENDS: usize = 4;

pub(crate) fn run(budget: Budget) -> Result<serde_json::Value, String> {
    let servers: Vec<TargetServer> = (0..BACKENDS)
        .map(|_| TargetServer::start(Mode::Healthy))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    for s in &servers {
        // Long enough that requests are in flight when their endpoint leaves.
        s.set_delay(Duration::from_millis(1));
    }
    let endpoints: Vec<Endpoint> = servers
        .iter()
        .map(|s| Endpoint::new(s.addr.ip().to_string(), s.addr.port()))
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (calls, changes) = rt.block_on(async {
        let resolver = ManualResolver::new("churn");
        resolver.set(endpoints.clone());
        let settings = platform_http::ClientSettings {
            base_url: "http://backends".into(),
            ..Default::default()
        };
        let client = platform_http::Client::builder("churn", &settings)
            .resolver(resolver.clone())
            .build()
            .map_err(|e| e.to_string())?;
        let stop = Instant::now() + budget.load;
        let churner = tokio::spawn(async move {
            let mut changes = 0u64;
            let mut step = 0usize;
            while Instant::now() < stop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                step += 1;
                // A rotating, never-empty subset: 1 to 4 endpoints starting at `step`.
                let size = 1 + step % BACKENDS;
                let subset: Vec<Endpoint> = (0..size)
                    .map(|i| endpoints[(step + i) % BACKENDS].clone())
                    .collect();
                resolver.set(subset);
                changes += 1;
            }
            changes
        });
        let calls = paced_loop(
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
        let changes = churner.await.map_err(|e| e.to_string())?;
        Ok::<_, String>((calls, changes))
    })?;
    let failed = calls.iter().filter(|c| !c.2).count();
    println!(
        "{:<10} {:>10} {:>16} {:>16}",
        "", "requests", "endpoint changes", "failed requests"
    );
    println!(
        "{:<10} {:>10} {:>16} {:>16}",
        "platform",
        calls.len(),
        changes,
        failed
    );
    println!(
        "  failed requests: {failed} (target 0) {}",
        if failed == 0 { "met" } else { "MISSED" }
    );
    Ok(serde_json::json!({
        "failed_requests": failed,
        "requests": calls.len(),
        "endpoint_changes": changes,
    }))
}
