//! Inventory's HTTP API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::settings::InventorySettings;

/// Stock levels, shared by the handlers.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    stock: Arc<Mutex<BTreeMap<String, u32>>>,
    max_reservation: u32,
    extra_latency: Duration,
}

impl Store {
    pub(crate) fn new(settings: &InventorySettings) -> Self {
        Store {
            stock: Arc::new(Mutex::new(settings.initial_stock.clone())),
            max_reservation: settings.max_reservation,
            extra_latency: settings.extra_latency,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stock {
    pub(crate) sku: String,
    pub(crate) available: u32,
}

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
) -> Result<Json<Stock>, StatusCode> {
    tokio::time::sleep(store.extra_latency).await;
    let stock = store.stock.lock().unwrap_or_else(PoisonError::into_inner);
    let available = *stock.get(&sku).ok_or(StatusCode::NOT_FOUND)?;
    Ok(Json(Stock { sku, available }))
}

async fn reserve(
    State(store): State<Store>,
    Json(request): Json<Reservation>,
) -> Result<Json<Stock>, (StatusCode, String)> {
    tokio::time::sleep(store.extra_latency).await;
    if request.quantity == 0 || request.quantity > store.max_reservation {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("quantity must be 1..={}", store.max_reservation),
        ));
    }
    let mut stock = store.stock.lock().unwrap_or_else(PoisonError::into_inner);
    let available = stock.get_mut(&request.sku).ok_or((
        StatusCode::NOT_FOUND,
        format!("unknown sku {:?}", request.sku),
    ))?;
    if *available < request.quantity {
        return Err((StatusCode::CONFLICT, format!("only {available} left")));
    }
    *available -= request.quantity;
    Ok(Json(Stock {
        sku: request.sku,
        available: *available,
    }))
}
