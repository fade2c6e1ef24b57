//! Inventory's gRPC API (`examples/proto/inventory.proto`): the same store
//! as the HTTP API, served on the same port.

use tonic::{Request, Response, Status};

use super::routes::{Refusal, Reservation, Store};

/// The code generated from `examples/proto/inventory.proto`, checked in so
/// that a build needs no protoc (a test regenerates it and compares).
#[rustfmt::skip]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod generated;

use generated::inventory_server::{Inventory, InventoryServer};
use generated::{GetStockRequest, ReserveRequest, Stock};

/// The gRPC server of `store`, to add to `platform_grpc::Services`.
pub(crate) fn server(store: Store) -> InventoryServer<Service> {
    InventoryServer::new(Service { store })
}

/// Inventory's gRPC handlers.
#[derive(Debug)]
pub(crate) struct Service {
    store: Store,
}

#[tonic::async_trait]
impl Inventory for Service {
    async fn get_stock(
        &self,
        request: Request<GetStockRequest>,
    ) -> Result<Response<Stock>, Status> {
        let stock = self.store.stock(request.into_inner().sku).await?;
        Ok(Response::new(Stock {
            sku: stock.sku,
            available: stock.available,
        }))
    }

    async fn reserve(&self, request: Request<ReserveRequest>) -> Result<Response<Stock>, Status> {
        let ReserveRequest {
            sku,
            quantity,
            idempotency_key,
        } = request.into_inner();
        let key = (!idempotency_key.is_empty()).then_some(idempotency_key);
        let stock = self
            .store
            .reserve(Reservation { sku, quantity }, key)
            .await?;
        Ok(Response::new(Stock {
            sku: stock.sku,
            available: stock.available,
        }))
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        let message = refusal.to_string();
        match refusal {
            Refusal::UnknownSku(_) => Status::not_found(message),
            Refusal::Quantity { .. } => Status::invalid_argument(message),
            Refusal::TooLittle { .. } => Status::failed_precondition(message),
            Refusal::Failing => Status::unavailable(message),
        }
    }
}
