//! Self-registration: this instance's [`EndpointRecord`] under a lease in etcd.
//!
//! The record is put under a lease of [`RegistrationSettings::lease_ttl`] and kept alive every
//! third of the TTL, so a crashed or partitioned instance disappears from every watcher within
//! one TTL without anyone cleaning up. When the lease is lost (the keep-alive answers TTL 0,
//! fails, or the member dies) a new lease is granted and the record put again, on the next
//! member. [`Registration::deregister`] revokes the lease, which deletes the record at once: the
//! runtime calls it at the start of its shutdown, before the drain delay ends, so callers stop
//! picking this instance while it still serves what it has accepted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, PutOptions};
use tokio::sync::{oneshot, watch};

use super::backoff;
use super::endpoint::{Endpoint, EndpointRecord};
use super::error::DiscoveryError;
use super::etcd::{connect, with_timeout};
use super::settings::{EtcdSettings, RegistrationSettings};

/// Where a registration stands; readable for health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// Connecting, granting a lease or putting the record.
    Registering,
    /// The record is in etcd under this lease.
    Registered {
        /// The etcd lease id.
        lease: i64,
    },
    /// The last attempt failed; retrying.
    Lost {
        /// Why.
        reason: String,
    },
    /// Deregistered on request.
    Deregistered,
}

type Reply = oneshot::Sender<Result<(), DiscoveryError>>;

/// A running registration of this instance in etcd (feature `etcd`).
///
/// The instance's [`EndpointRecord`] is put at `<prefix>/<service>/<host:port>` under a lease of
/// [`RegistrationSettings::lease_ttl`], renewed every third of the TTL; a crashed instance
/// disappears from every watcher within one TTL. When the lease is lost (expired, revoked, or
/// its member died) a new one is granted and the record put again, on the next member.
/// [`deregister`](Self::deregister) revokes the lease, deleting the record at once: call it
/// at the start of shutdown, before the drain delay ends. Dropping without deregistering leaves
/// the record until the lease expires.
///
/// ```no_run
/// # use platform_core::discovery::{DiscoverySettings, Registration};
/// # async fn example(settings: DiscoverySettings, bound: std::net::SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
/// let endpoint = settings.registration.advertised_endpoint(bound)?.with_version("1.4.2");
/// let registration = Registration::start("inventory", &endpoint, &settings.etcd, &settings.registration)?;
/// // ... serve; on SIGTERM, before the drain delay ends:
/// registration.deregister().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Registration {
    key: String,
    state: watch::Receiver<RegistrationState>,
    stop: Option<oneshot::Sender<Reply>>,
    task: tokio::task::JoinHandle<()>,
}

/// The lease currently holding the record, for deregistration.
type Current = Arc<Mutex<Option<(Client, i64)>>>;

impl Registration {
    /// Registers `endpoint` as an instance of `service` (key
    /// `<prefix>/<service>/<host:port>`) and keeps it registered until [`deregister`] or drop.
    /// Returns at once; watch [`state`](Self::state) or await [`registered`](Self::registered).
    ///
    /// [`deregister`]: Self::deregister
    pub fn start(
        service: &str,
        endpoint: &Endpoint,
        etcd: &EtcdSettings,
        settings: &RegistrationSettings,
    ) -> Result<Self, DiscoveryError> {
        etcd.validate()?;
        settings.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| DiscoveryError::NoRuntime)?;
        let key = format!("{}{}", etcd.service_prefix(service), endpoint.id());
        let value = serde_json::to_string(&EndpointRecord::from(endpoint)).map_err(|error| {
            DiscoveryError::Etcd {
                operation: "encode",
                key: key.clone(),
                reason: error.to_string(),
            }
        })?;
        let (state_sender, state) = watch::channel(RegistrationState::Registering);
        let (stop, stop_receiver) = oneshot::channel();
        let task = runtime.spawn(run(
            key.clone(),
            value,
            etcd.clone(),
            settings.lease_ttl,
            state_sender,
            stop_receiver,
        ));
        Ok(Self {
            key,
            state,
            stop: Some(stop),
            task,
        })
    }

    /// The etcd key of the record.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The current state.
    pub fn state(&self) -> RegistrationState {
        self.state.borrow().clone()
    }

    /// A receiver of state changes.
    pub fn subscribe(&self) -> watch::Receiver<RegistrationState> {
        self.state.clone()
    }

    /// Waits until the record is in etcd, at most `timeout`; true when it is.
    pub async fn registered(&self, timeout: Duration) -> bool {
        let mut state = self.state.clone();
        let wait = state.wait_for(|s| matches!(s, RegistrationState::Registered { .. }));
        matches!(tokio::time::timeout(timeout, wait).await, Ok(Ok(_)))
    }

    /// Revokes the lease, removing the record, and stops the keep-alive loop.
    pub async fn deregister(mut self) -> Result<(), DiscoveryError> {
        let gone = || DiscoveryError::RegistrationGone {
            key: self.key.clone(),
        };
        let stop = self.stop.take().ok_or_else(gone)?;
        let (reply, answer) = oneshot::channel();
        stop.send(reply).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Without deregister the lease simply expires after its TTL.
        self.task.abort();
    }
}

async fn run(
    key: String,
    value: String,
    etcd: EtcdSettings,
    ttl: Duration,
    state: watch::Sender<RegistrationState>,
    mut stop: oneshot::Receiver<Reply>,
) {
    let current: Current = Arc::new(Mutex::new(None));
    let mut member = 0usize;
    let mut attempt = 0u32;
    loop {
        let address = etcd.endpoints[member % etcd.endpoints.len()].clone();
        let session = keep_registered(
            &address,
            &key,
            &value,
            &etcd,
            ttl,
            &state,
            &current,
            &mut attempt,
        );
        let failure = tokio::select! {
            reply = &mut stop => {
                finish(reply.ok(), &key, &etcd, &current, &state).await;
                return;
            }
            failure = session => failure,
        };
        tracing::warn!(
            key,
            member = address,
            reason = failure,
            "service registration lost; registering again"
        );
        state.send_replace(RegistrationState::Lost { reason: failure });
        current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        member += 1;
        let delay = backoff(etcd.reconnect_min, etcd.reconnect_max, attempt);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            reply = &mut stop => {
                finish(reply.ok(), &key, &etcd, &current, &state).await;
                return;
            }
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Registers and keeps the lease alive; returns only on failure.
#[allow(clippy::too_many_arguments)]
async fn keep_registered(
    address: &str,
    key: &str,
    value: &str,
    etcd: &EtcdSettings,
    ttl: Duration,
    state: &watch::Sender<RegistrationState>,
    current: &Current,
    attempt: &mut u32,
) -> String {
    let timeout = etcd.request_timeout;
    let mut client = match connect(address, etcd).await {
        Ok(client) => client,
        Err(error) => return error,
    };
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let lease = match with_timeout(timeout, client.lease_grant(ttl_secs, None)).await {
        Ok(response) => response.id(),
        Err(error) => return format!("etcd lease grant on {address} failed: {error}"),
    };
    let options = PutOptions::new().with_lease(lease);
    if let Err(error) = with_timeout(timeout, client.put(key, value, Some(options))).await {
        return format!("etcd put of {key} on {address} failed: {error}");
    }
    *current
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((client.clone(), lease));
    tracing::info!(key, lease, member = address, "service registered in etcd");
    state.send_replace(RegistrationState::Registered { lease });
    *attempt = 0;

    let (mut keeper, mut responses) =
        match with_timeout(timeout, client.lease_keep_alive(lease)).await {
            Ok(pair) => pair,
            Err(error) => {
                return format!("etcd keep-alive of lease {lease} on {address} failed: {error}");
            }
        };
    let interval = ttl / 3;
    loop {
        tokio::time::sleep(interval).await;
        let renewed = tokio::time::timeout(timeout, async {
            keeper.keep_alive().await?;
            responses.message().await
        })
        .await;
        match renewed {
            Ok(Ok(Some(response))) if response.ttl() > 0 => {}
            Ok(Ok(Some(_))) => return format!("etcd lease {lease} expired"),
            Ok(Ok(None)) => return format!("etcd keep-alive stream of lease {lease} ended"),
            Ok(Err(error)) => return format!("etcd keep-alive of lease {lease} failed: {error}"),
            Err(_) => {
                return format!("etcd keep-alive of lease {lease} unanswered within {timeout:?}");
            }
        }
    }
}

/// Deregisters: revokes the lease (deleting the record) and answers the caller.
async fn finish(
    reply: Option<Reply>,
    key: &str,
    etcd: &EtcdSettings,
    current: &Current,
    state: &watch::Sender<RegistrationState>,
) {
    let held = current
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    let result = match held {
        None => Ok(()),
        Some((mut client, lease)) => {
            match with_timeout(etcd.request_timeout, client.lease_revoke(lease)).await {
                Ok(_) => {
                    tracing::info!(key, lease, "service deregistered from etcd");
                    Ok(())
                }
                Err(reason) => {
                    tracing::warn!(
                        key,
                        lease,
                        reason,
                        "deregistration failed; the record expires with its lease"
                    );
                    Err(DiscoveryError::Etcd {
                        operation: "revoke",
                        key: key.to_owned(),
                        reason,
                    })
                }
            }
        }
    };
    state.send_replace(RegistrationState::Deregistered);
    if let Some(reply) = reply {
        let _ = reply.send(result);
    }
}
