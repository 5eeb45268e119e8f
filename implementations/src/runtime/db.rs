//! Postgres access that survives faults: a small pool that hands out healthy
//! connections and drops broken ones (a new one is made on the next request),
//! dedicated connections for relays, and a timeout on everything so nothing
//! hangs when Postgres is paused or the link is black-holed.

use crate::AppConfig;
use anyhow::{anyhow, Context, Result};
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

/// A reconnecting pool of Postgres connections.
pub struct Db {
    config: Config,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
    /// Timeout applied to every statement (client side; also `statement_timeout`).
    pub timeout: Duration,
}

/// Runs a database future with a timeout; the error says what timed out.
pub async fn timed<T, E>(d: Duration, what: &str, f: impl Future<Output = Result<T, E>>) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(d, f).await {
        Ok(r) => r.map_err(|e| anyhow!(e).context(what.to_string())),
        Err(_) => Err(anyhow!("{what}: no answer from Postgres within {d:?}")),
    }
}

impl Db {
    /// A pool for `cfg.database_url` (connects lazily).
    pub fn new(cfg: &AppConfig) -> Result<Arc<Self>> {
        let mut config: Config = cfg
            .database_url
            .parse()
            .with_context(|| format!("DATABASE_URL={:?} is not a Postgres URL", cfg.database_url))?;
        let t = cfg.db_timeout.as_millis();
        // Long enough for a relay's claim-publish-record transaction and the
        // workload's long transactions; short enough that a transaction left open
        // by a black-holed client does not stall the xid relay for long.
        let idle_tx = (cfg.publish_timeout.as_millis() * 2 + 10_000).max(30_000);
        config
            .connect_timeout(Duration::from_secs(5))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(15))
            .application_name("dualcheck-app")
            // jit=off: the relays' claim queries are planned expensive enough to
            // trigger JIT compilation, which cost ~40 ms of a 10 ms query per
            // round (the usual advice for OLTP work).
            .options(format!(
                "-c statement_timeout={t} -c lock_timeout={} -c idle_in_transaction_session_timeout={idle_tx} -c client_min_messages=warning -c jit=off",
                t.min(5000)
            ));
        Ok(Arc::new(Db {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(cfg.pool_size),
            timeout: cfg.db_timeout,
        }))
    }

    /// A new dedicated connection (relays, schema set-up); it dies with the client.
    pub async fn connect(&self) -> Result<Client> {
        let (client, conn) = timed(self.timeout, "connecting to Postgres", self.config.connect(NoTls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// A new dedicated connection whose notifications (LISTEN) are sent to `tx`.
    pub async fn connect_listening(&self, tx: tokio::sync::mpsc::UnboundedSender<String>) -> Result<Client> {
        let (client, mut conn) = timed(
            self.timeout,
            "connecting to Postgres (listener)",
            self.config.connect(NoTls),
        )
        .await?;
        tokio::spawn(async move {
            let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
            use futures::StreamExt;
            while let Some(m) = stream.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ = tx.send(n.payload().to_string());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(client)
    }

    /// A pooled connection (waits for a free slot at most the statement timeout).
    pub async fn get(&self) -> Result<Pooled<'_>> {
        let permit = tokio::time::timeout(self.timeout, self.permits.acquire())
            .await
            .map_err(|_| {
                anyhow!(
                    "all {} pooled Postgres connections busy for {:?}",
                    self.permits.available_permits(),
                    self.timeout
                )
            })?
            .map_err(|_| anyhow!("pool closed"))?;
        let reused = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let client = match reused {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Pooled {
            client: Some(client),
            db: self,
            _permit: permit,
            healthy: true,
        })
    }
}

/// A connection borrowed from [`Db`]; back to the pool on drop unless
/// [`Pooled::discard`]ed or closed.
pub struct Pooled<'a> {
    client: Option<Client>,
    db: &'a Db,
    _permit: SemaphorePermit<'a>,
    healthy: bool,
}

impl Pooled<'_> {
    /// Marks the connection as not to be reused (after any error: its state is unknown).
    pub fn discard(&mut self) {
        self.healthy = false;
    }
}

impl Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("pooled client present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("pooled client present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if self.healthy && !c.is_closed() {
                self.db.idle.lock().unwrap_or_else(|e| e.into_inner()).push(c);
            }
        }
    }
}
