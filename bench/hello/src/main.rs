//! A bare axum JSON hello-world: the ceiling credvault's read paths are measured against.
//! Usage: bench-hello [ADDR]   (default 127.0.0.1:8300)

use axum::routing::get;
use axum::{Json, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8300".to_owned());
    let app = Router::new().route(
        "/hello",
        get(|| async { Json(serde_json::json!({"message": "hello"})) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
