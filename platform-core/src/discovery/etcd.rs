//! The etcd backend: a service's instances are JSON [`EndpointRecord`]s under
//! `<prefix>/<service>/`, followed with a prefix watch.
//!
//! The backend loads the prefix once, then watches from the revision after the load. Every
//! event moves the last seen revision forward. When the connection or the watch breaks, it
//! reconnects (to the next configured member, so one dead member of a cluster does not stall
//! it) and watches again from the last seen revision + 1: etcd replays every change made in
//! between, so none is missed. Only when that revision has been compacted away does it load the
//! prefix again. While disconnected, the last known endpoints stay published, stale.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, KeyValue, WatchOptions};

use super::backoff;
use super::endpoint::{Endpoint, EndpointRecord};
use super::publisher::{Publisher, dedup};
use super::settings::EtcdSettings;

/// Connects to one member. The request timeout is applied per call by [`with_timeout`], not on
/// the channel, so that the watch stream is not cut after it.
pub(crate) async fn connect(member: &str, settings: &EtcdSettings) -> Result<Client, String> {
    let options = ConnectOptions::new()
        .with_connect_timeout(settings.connect_timeout)
        .with_keep_alive(Duration::from_secs(5), settings.request_timeout)
        .with_keep_alive_while_idle(true);
    with_timeout(
        settings.request_timeout,
        Client::connect([member], Some(options)),
    )
    .await
    .map_err(|error| format!("cannot connect to etcd at {member}: {error}"))
}

/// Runs `call` with a timeout, folding both failures into one message.
pub(crate) async fn with_timeout<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// What the backend knows: the valid endpoint of each key, and the last revision seen.
#[derive(Debug, Default)]
struct Known {
    entries: BTreeMap<String, Endpoint>,
    revision: i64,
}

impl Known {
    fn apply_put(&mut self, kv: &KeyValue, publisher: &Publisher) {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        match parse_value(kv.value()) {
            Ok(endpoint) => {
                self.entries.insert(key, endpoint);
            }
            Err(reason) => {
                // The key's previous value no longer describes the instance.
                self.entries.remove(&key);
                publisher.rejected(&key, "malformed", &reason);
            }
        }
    }

    fn publish(&self, publisher: &Publisher) {
        let endpoints = dedup(publisher, self.entries.values().cloned().collect());
        publisher.answer(endpoints);
    }
}

/// Parses one stored value.
pub(crate) fn parse_value(value: &[u8]) -> Result<Endpoint, String> {
    let record: EndpointRecord = serde_json::from_slice(value)
        .map_err(|error| format!("not an endpoint record: {error}"))?;
    record.into_endpoint()
}

/// Follows `<prefix>/<service>/` until every reader is gone.
pub(crate) async fn run(service: String, publisher: Publisher, settings: EtcdSettings) {
    let prefix = settings.service_prefix(&service);
    let mut known = Known::default();
    let mut member = 0usize;
    let mut attempt = 0u32;
    while !publisher.is_closed() {
        let address = &settings.endpoints[member % settings.endpoints.len()];
        let outcome = follow(
            address,
            &prefix,
            &mut known,
            &publisher,
            &settings,
            &mut attempt,
        )
        .await;
        if let Err(reason) = outcome {
            publisher.problem(&reason);
            member += 1;
            let delay = backoff(settings.reconnect_min, settings.reconnect_max, attempt);
            attempt = attempt.saturating_add(1);
            tokio::time::sleep(delay).await;
        }
    }
}

/// One connection's worth of following; returns why it stopped.
async fn follow(
    address: &str,
    prefix: &str,
    known: &mut Known,
    publisher: &Publisher,
    settings: &EtcdSettings,
    attempt: &mut u32,
) -> Result<(), String> {
    let mut client = connect(address, settings).await?;
    loop {
        if known.revision == 0 {
            load(&mut client, prefix, known, publisher, settings).await?;
            *attempt = 0;
        }
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(known.revision + 1);
        let mut stream = with_timeout(
            settings.request_timeout,
            client.watch(prefix, Some(options)),
        )
        .await
        .map_err(|error| format!("etcd watch of {prefix} on {address} failed: {error}"))?;
        loop {
            let message = match stream.message().await {
                Ok(Some(message)) => message,
                Ok(None) => return Err(format!("etcd watch of {prefix} on {address} ended")),
                Err(error) => {
                    return Err(format!(
                        "etcd watch of {prefix} on {address} broke: {error}"
                    ));
                }
            };
            if message.canceled() {
                if message.compact_revision() > 0 {
                    tracing::info!(
                        prefix,
                        revision = known.revision,
                        compacted = message.compact_revision(),
                        "etcd history compacted past the last seen revision; loading again"
                    );
                    known.revision = 0;
                    break;
                }
                return Err(format!(
                    "etcd canceled the watch of {prefix}: {}",
                    message.cancel_reason()
                ));
            }
            if message.created() {
                // Connected again: what we hold is current up to the last seen revision, and the
                // watch replays everything after it.
                *attempt = 0;
                known.publish(publisher);
            }
            if message.events().is_empty() {
                continue;
            }
            for event in message.events() {
                let Some(kv) = event.kv() else { continue };
                match event.event_type() {
                    EventType::Put => known.apply_put(kv, publisher),
                    EventType::Delete => {
                        known
                            .entries
                            .remove(String::from_utf8_lossy(kv.key()).as_ref());
                    }
                }
                known.revision = known.revision.max(kv.mod_revision());
            }
            known.publish(publisher);
        }
    }
}

/// Loads the whole prefix, replacing what is known.
async fn load(
    client: &mut Client,
    prefix: &str,
    known: &mut Known,
    publisher: &Publisher,
    settings: &EtcdSettings,
) -> Result<(), String> {
    let response = with_timeout(
        settings.request_timeout,
        client.get(prefix, Some(GetOptions::new().with_prefix())),
    )
    .await
    .map_err(|error| format!("etcd get of {prefix} failed: {error}"))?;
    known.entries.clear();
    for kv in response.kvs() {
        known.apply_put(kv, publisher);
    }
    known.revision = response
        .header()
        .map(|header| header.revision())
        .unwrap_or(1);
    known.publish(publisher);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_parsed_or_explained() {
        let endpoint = parse_value(br#"{"host":"10.1.2.3","port":8080,"version":"2"}"#).unwrap();
        assert_eq!(endpoint.authority(), "10.1.2.3:8080");
        assert_eq!(endpoint.version.as_deref(), Some("2"));
        assert!(
            parse_value(b"not json")
                .unwrap_err()
                .contains("not an endpoint record")
        );
        assert!(
            parse_value(br#"{"host":"a","port":0}"#)
                .unwrap_err()
                .contains("port 0")
        );
        assert!(parse_value(br#"{"host":"a","port":80,"colour":"red"}"#).is_err());
    }
}
