//! `orders`: takes orders and reserves their stock in `inventory`; the code
//! is in `src/orders/`. Try `cargo run -p platform-examples --bin orders -- --help`.

#[tokio::main]
async fn main() -> Result<(), platform_core::Error> {
    platform_examples::orders::main(None).await
}
