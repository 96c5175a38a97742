//! A sqlx pool behind the store's circuit breaker ([`StoreHealth`]): used exactly like a
//! `sqlx::Pool` by the SQL in `sql/` (`.fetch_one(&self.reader)`, `self.writer.begin_with(..)`),
//! but while the circuit is open every call fails at once, and every connection failure it sees
//! opens the circuit. Statements inside a transaction run on the transaction's connection and are
//! not seen here; their failures are seen when the next transaction cannot begin.

use std::borrow::Cow;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use sqlx::database::Database;
use sqlx::{Either, Execute, Executor};

use crate::health::{is_connection_failure, StoreHealth};

pub(crate) struct Pool<DB: Database> {
    inner: sqlx::Pool<DB>,
    health: Arc<StoreHealth>,
}

impl<DB: Database> Clone for Pool<DB> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            health: self.health.clone(),
        }
    }
}

impl<DB: Database> std::fmt::Debug for Pool<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("open", &self.health.is_open())
            .finish()
    }
}

/// The error of a call refused because the circuit is open.
fn refused() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the database cannot be reached (failing fast until a background probe reaches it)",
    ))
}

impl<DB: Database> Pool<DB> {
    pub(crate) fn new(inner: sqlx::Pool<DB>, health: Arc<StoreHealth>) -> Self {
        Self { inner, health }
    }

    fn admit(&self) -> Result<(), sqlx::Error> {
        if self.health.is_open() {
            Err(refused())
        } else {
            Ok(())
        }
    }

    fn observe<T>(health: &StoreHealth, r: &Result<T, sqlx::Error>) {
        if let Err(e) = r {
            if is_connection_failure(e) {
                health.unreachable(&e.to_string());
            }
        }
    }

    pub(crate) async fn begin_with(
        &self,
        statement: impl Into<Cow<'static, str>>,
    ) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
        self.admit()?;
        let r = self.inner.begin_with(statement).await;
        Self::observe(&self.health, &r);
        r
    }

    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
        self.admit()?;
        let r = self.inner.begin().await;
        Self::observe(&self.health, &r);
        r
    }

    #[allow(dead_code)]
    pub(crate) async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
        self.admit()?;
        let r = self.inner.acquire().await;
        Self::observe(&self.health, &r);
        r
    }
}

impl<'p, DB: Database> Executor<'p> for &'_ Pool<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    type Database = DB;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::stream::BoxStream<'e, Result<Either<DB::QueryResult, DB::Row>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        if let Err(e) = self.admit() {
            return Box::pin(futures_util::stream::once(async move { Err(e) }));
        }
        let health = self.health.clone();
        Box::pin((&self.inner).fetch_many(query).inspect(move |r| {
            Pool::<DB>::observe(&health, r);
        }))
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> futures_util::future::BoxFuture<'e, Result<Option<DB::Row>, sqlx::Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, DB>,
    {
        if let Err(e) = self.admit() {
            return Box::pin(async move { Err(e) });
        }
        let health = self.health.clone();
        Box::pin((&self.inner).fetch_optional(query).inspect(move |r| {
            Pool::<DB>::observe(&health, r);
        }))
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [DB::TypeInfo],
    ) -> futures_util::future::BoxFuture<'e, Result<DB::Statement<'q>, sqlx::Error>>
    where
        'p: 'e,
    {
        if let Err(e) = self.admit() {
            return Box::pin(async move { Err(e) });
        }
        (&self.inner).prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> futures_util::future::BoxFuture<'e, Result<sqlx::Describe<DB>, sqlx::Error>>
    where
        'p: 'e,
    {
        if let Err(e) = self.admit() {
            return Box::pin(async move { Err(e) });
        }
        (&self.inner).describe(sql)
    }
}
