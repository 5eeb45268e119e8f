//! Serves [`rust_outbox::INFO`] over dualcheck's black-box HTTP contract on
//! `127.0.0.1:$PORT` (environment: `DATABASE_URL`, `KAFKA_BOOTSTRAP`, `TOPIC`, `PORT`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,librdkafka=off,rdkafka=off")),
        )
        .init();
    let config = dualcheck_implementations::AppConfig::from_env()?;
    dualcheck_implementations::serve(&rust_outbox::INFO, config).await
}
