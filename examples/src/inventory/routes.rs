//! Inventory's stock levels and reservations, and its HTTP API.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use platform_core::health::CheckOutcome;
use serde::{Deserialize, Serialize};

use super::settings::InventorySettings;

/// How many answered idempotency keys are remembered: enough to cover every
/// retry of a reservation, which happen within one request's deadline.
const REMEMBERED_KEYS: usize = 10_000;

/// Stock levels and recent reservations, shared by the handlers.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    shelf: Arc<Mutex<Shelf>>,
    max_reservation: u32,
    extra_latency: Duration,
    failure_rate: f64,
    /// `app.workers`: what one instance can do at once.
    workers: Option<Arc<tokio::sync::Semaphore>>,
}

#[derive(Debug, Default)]
struct Shelf {
    stock: BTreeMap<String, u32>,
    /// Answers already given, by idempotency key: a retried reservation gets
    /// the same answer instead of taking the stock twice.
    answered: HashMap<String, Stock>,
    /// Keys in the order they were answered, oldest first, to forget them.
    answered_order: VecDeque<String>,
}

impl Shelf {
    fn remember(&mut self, key: String, answer: Stock) {
        if self.answered_order.len() == REMEMBERED_KEYS
            && let Some(oldest) = self.answered_order.pop_front()
        {
            self.answered.remove(&oldest);
        }
        self.answered_order.push_back(key.clone());
        self.answered.insert(key, answer);
    }
}

impl Store {
    pub(crate) fn new(settings: &InventorySettings) -> Self {
        Store {
            shelf: Arc::new(Mutex::new(Shelf {
                stock: settings.initial_stock.clone(),
                ..Shelf::default()
            })),
            max_reservation: settings.max_reservation,
            extra_latency: settings.extra_latency,
            failure_rate: settings.failure_rate,
            workers: (settings.workers > 0)
                .then(|| Arc::new(tokio::sync::Semaphore::new(settings.workers as usize))),
        }
    }

    fn shelf(&self) -> std::sync::MutexGuard<'_, Shelf> {
        // A handler that panicked cannot leave the map half-written (every
        // change is one insert or one subtraction): keep serving.
        self.shelf.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The `store` health check: warns while a SKU is sold out.
    pub(crate) fn check(&self) -> CheckOutcome {
        let shelf = self.shelf();
        let sold_out: Vec<&str> = shelf
            .stock
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(sku, _)| sku.as_str())
            .collect();
        if sold_out.is_empty() {
            CheckOutcome::pass()
        } else {
            CheckOutcome::warn(format!("sold out: {}", sold_out.join(", ")))
        }
    }

    /// What every answer goes through first: a worker when `app.workers`
    /// bounds them, the configured extra latency, and the configured share
    /// of made-up failures (`app.failure_rate`).
    async fn simulate(&self) -> Result<(), Refusal> {
        // Waits for a worker (FIFO) and holds it through the latency.
        let _worker = match &self.workers {
            Some(workers) => workers.acquire().await.ok(),
            None => None,
        };
        if !self.extra_latency.is_zero() {
            tokio::time::sleep(self.extra_latency).await;
        }
        if self.failure_rate > 0.0 && rand::random::<f64>() < self.failure_rate {
            return Err(Refusal::Failing);
        }
        Ok(())
    }

    /// How much of `sku` is left: the answer of both APIs.
    pub(crate) async fn stock(&self, sku: String) -> Result<Stock, Refusal> {
        self.simulate().await?;
        let available = *self
            .shelf()
            .stock
            .get(&sku)
            .ok_or_else(|| Refusal::UnknownSku(sku.clone()))?;
        Ok(Stock { sku, available })
    }

    /// Takes the reservation's units; a `key` seen before gets the first
    /// answer again (callers retry a reservation only because it carries one).
    pub(crate) async fn reserve(
        &self,
        request: Reservation,
        key: Option<String>,
    ) -> Result<Stock, Refusal> {
        self.simulate().await?;
        if request.quantity == 0 || request.quantity > self.max_reservation {
            return Err(Refusal::Quantity {
                max: self.max_reservation,
            });
        }
        let mut shelf = self.shelf();
        if let Some(answer) = key.as_ref().and_then(|k| shelf.answered.get(k)) {
            return Ok(answer.clone());
        }
        let available = shelf
            .stock
            .get_mut(&request.sku)
            .ok_or_else(|| Refusal::UnknownSku(request.sku.clone()))?;
        if *available < request.quantity {
            return Err(Refusal::TooLittle {
                available: *available,
            });
        }
        *available -= request.quantity;
        let answer = Stock {
            sku: request.sku,
            available: *available,
        };
        if let Some(key) = key {
            shelf.remember(key, answer.clone());
        }
        Ok(answer)
    }
}

/// Why inventory did not answer with stock: each API says it in its terms.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("unknown sku {0:?}")]
    UnknownSku(String),
    #[error("quantity must be 1..={max}")]
    Quantity { max: u32 },
    #[error("only {available} left")]
    TooLittle { available: u32 },
    #[error("failing on purpose (app.failure_rate)")]
    Failing,
}

impl axum::response::IntoResponse for Refusal {
    fn into_response(self) -> axum::response::Response {
        let status = match self {
            Refusal::UnknownSku(_) => StatusCode::NOT_FOUND,
            Refusal::Quantity { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::TooLittle { .. } => StatusCode::CONFLICT,
            Refusal::Failing => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, self.to_string()).into_response()
    }
}

/// How much of a SKU is left.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stock {
    pub(crate) sku: String,
    pub(crate) available: u32,
}

/// A request to take `quantity` units of `sku`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Reservation {
    pub(crate) sku: String,
    pub(crate) quantity: u32,
}

pub(crate) fn router(store: Store) -> Router {
    Router::new()
        .route("/stock/{sku}", get(stock))
        .route("/reservations", post(reserve))
        .with_state(store)
}

async fn stock(
    State(store): State<Store>,
    Path(sku): Path<String>,
) -> Result<Json<Stock>, Refusal> {
    store.stock(sku).await.map(Json)
}

async fn reserve(
    State(store): State<Store>,
    headers: HeaderMap,
    Json(request): Json<Reservation>,
) -> Result<Json<Stock>, Refusal> {
    let key = headers
        .get(platform_http::client::IDEMPOTENCY_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    store.reserve(request, key).await.map(Json)
}
