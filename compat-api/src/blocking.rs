//! Engine and registry calls block (files, locks, waiting for a monitor): they run on
//! tokio's blocking pool, never on the async workers.

use crate::error::{ApiError, ApiResult};

pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> ApiResult<T>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await?.map_err(Into::into)
}
