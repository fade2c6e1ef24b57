//! `inventory`: keeps stock levels and takes reservations; the code is in
//! `src/inventory/`. Try `cargo run -p platform-examples --bin inventory -- --help`.

#[tokio::main]
async fn main() -> Result<(), platform_core::Error> {
    platform_examples::inventory::main(None).await
}
