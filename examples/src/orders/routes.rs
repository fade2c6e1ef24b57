//! Orders' HTTP API: an order reserves stock in inventory, over HTTP or gRPC.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::inventory::grpc::generated::ReserveRequest;
use crate::inventory::grpc::generated::inventory_client::InventoryClient;

/// Inventory's client, on the API `app.inventory_api` names: either way
/// with the platform's retries, budget, breaker, balancing and deadline
/// propagation (config: `[http.clients.inventory]` or `[grpc.clients.inventory]`).
#[derive(Debug, Clone)]
pub(crate) enum Inventory {
    Http(platform_http::Client),
    Grpc {
        /// The channel the client calls through (its policies, its pool).
        channel: platform_grpc::Channel,
        client: InventoryClient<platform_grpc::Channel>,
    },
}

impl Inventory {
    /// Inventory over gRPC, through `channel`.
    pub(crate) fn grpc(channel: platform_grpc::Channel) -> Self {
        Inventory::Grpc {
            client: InventoryClient::new(channel.clone()),
            channel,
        }
    }

    /// The policies shared by every call to inventory.
    pub(crate) fn resilience(&self) -> &platform_core::resilience::Resilience {
        match self {
            Inventory::Http(client) => client.resilience(),
            Inventory::Grpc { channel, .. } => channel.resilience(),
        }
    }

    /// Inventory's instances ejected as outliers now.
    pub(crate) fn ejected_endpoints(&self) -> Vec<Arc<str>> {
        match self {
            Inventory::Http(client) => client.ejected_endpoints(),
            Inventory::Grpc { channel, .. } => channel.ejected_endpoints(),
        }
    }

    /// Reserves the order's units under `key` (inventory answers a repeated
    /// key with its first answer, so the call may be retried like an
    /// idempotent one); the stock left, or what orders answers instead.
    async fn reserve(&self, order: &Order, key: String) -> Result<u32, (StatusCode, String)> {
        match self {
            Inventory::Http(client) => reserve_over_http(client, order, key).await,
            Inventory::Grpc { client, .. } => {
                let request = ReserveRequest {
                    sku: order.sku.clone(),
                    quantity: order.quantity,
                    idempotency_key: key,
                };
                match client.clone().reserve(request).await {
                    Ok(stock) => Ok(stock.into_inner().available),
                    Err(status) => Err((status_for_grpc(&status), format!("inventory: {status}"))),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Orders {
    pub(crate) inventory: Inventory,
    pub(crate) max_quantity: u32,
    /// This process's instance id: with `next_key`, a unique idempotency key
    /// for orders whose caller sent none.
    pub(crate) instance: Arc<str>,
    pub(crate) next_key: Arc<AtomicU64>,
}

impl Orders {
    /// The caller's `Idempotency-Key`, so that a caller retrying an order
    /// reserves once; or a new one for this order.
    fn idempotency_key(&self, headers: &HeaderMap) -> String {
        headers
            .get(platform_http::client::IDEMPOTENCY_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let n = self.next_key.fetch_add(1, Ordering::Relaxed);
                format!("{}-{n}", self.instance)
            })
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Order {
    pub(crate) sku: String,
    pub(crate) quantity: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Placed {
    pub(crate) sku: String,
    pub(crate) quantity: u32,
    pub(crate) remaining_stock: u32,
}

#[derive(Debug, Deserialize)]
struct Stock {
    available: u32,
}

pub(crate) fn router(orders: Orders) -> Router {
    Router::new()
        .route("/orders", post(create_order))
        .with_state(orders)
}

async fn create_order(
    State(orders): State<Orders>,
    headers: HeaderMap,
    Json(order): Json<Order>,
) -> Result<(StatusCode, Json<Placed>), (StatusCode, String)> {
    if order.quantity == 0 || order.quantity > orders.max_quantity {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("quantity must be 1..={}", orders.max_quantity),
        ));
    }
    let key = orders.idempotency_key(&headers);
    let remaining_stock = orders.inventory.reserve(&order, key).await?;
    Ok((
        StatusCode::CREATED,
        Json(Placed {
            sku: order.sku,
            quantity: order.quantity,
            remaining_stock,
        }),
    ))
}

/// A reservation over inventory's HTTP API (`POST /reservations`).
async fn reserve_over_http(
    inventory: &platform_http::Client,
    order: &Order,
    key: String,
) -> Result<u32, (StatusCode, String)> {
    // Inventory answers a repeated idempotency key with its first answer, so
    // the client may retry the reservation (a POST) like an idempotent call.
    let response = inventory
        .post("/reservations")
        .idempotency_key(key)
        .json(&reservation_for(order))
        .send()
        .await
        .map_err(|e| (status_for(&e), format!("inventory unavailable: {e}")))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text();
        let code = match status {
            // Inventory is overloaded or down, after our retries: tell our
            // caller to back off too.
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            s if s.is_client_error() => StatusCode::CONFLICT,
            _ => StatusCode::BAD_GATEWAY,
        };
        return Err((code, format!("inventory said {status}: {body}")));
    }
    let stock: Stock = response.json().map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("inventory answer unreadable: {e}"),
        )
    })?;
    Ok(stock.available)
}

/// What orders answers for a gRPC call to inventory that did not succeed,
/// as for the HTTP API: its refusals are a conflict, its overload or outage
/// (after our retries) a 503, running out of time a 504.
fn status_for_grpc(status: &tonic::Status) -> StatusCode {
    use tonic::Code;
    match status.code() {
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unavailable | Code::ResourceExhausted => StatusCode::SERVICE_UNAVAILABLE,
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition => StatusCode::CONFLICT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// What orders answers when inventory could not be reached.
fn status_for(error: &platform_http::ClientError) -> StatusCode {
    use platform_http::ClientError;
    match error {
        ClientError::Timeout { .. } | ClientError::DeadlineExceeded { .. } => {
            StatusCode::GATEWAY_TIMEOUT
        }
        // Failing fast while inventory is down or overloaded: tell our
        // caller to back off too.
        ClientError::CircuitOpen { .. }
        | ClientError::BudgetExhausted { .. }
        | ClientError::Throttled { .. }
        | ClientError::BulkheadFull { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// The reservation inventory expects for an order.
fn reservation_for(order: &Order) -> impl Serialize + '_ {
    #[derive(Serialize)]
    struct Reservation<'a> {
        sku: &'a str,
        quantity: u32,
    }
    Reservation {
        sku: &order.sku,
        quantity: order.quantity,
    }
}
