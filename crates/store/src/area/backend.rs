/// What kind of store this is.
pub trait BackendStore: Send + Sync {
    /// Which backend this is, for health output (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;
}
