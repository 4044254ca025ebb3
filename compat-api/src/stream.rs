//! Response bodies fed from channels: each item is sent (and flushed) as it comes.

/// A response whose body is fed from `rx`, each item flushed as it comes.
pub fn streamed(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
    content_type: axum::http::HeaderValue,
) -> axum::http::Response<axum::body::Body> {
    let mut r = axum::http::Response::new(axum::body::Body::from_stream(futures_stream(rx)));
    r.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, content_type);
    r
}

/// An mpsc receiver as a body stream; each item is sent (and flushed) as it comes.
pub fn futures_stream(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    ReceiverStream { rx }
}

struct ReceiverStream {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
}

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// A `Write` that hands each buffer to the response body.
pub struct ChannelWriter(pub tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(buf.to_vec()))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One JSON object and a newline: a line of Docker's JSON progress streams.
pub fn json_line(v: &serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    b
}

/// Writes a request body (chunked or not) to `path` as it arrives.
pub async fn spool_body(
    req: axum::extract::Request,
    path: &std::path::Path,
) -> crate::error::ApiResult<()> {
    use crate::error::ApiError;
    use futures_core::Stream;
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiError::internal(format!("spool: {e}")))?;
    let mut body = req.into_body().into_data_stream();
    loop {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_next(cx)).await;
        match next {
            None => break,
            Some(Ok(chunk)) => f
                .write_all(&chunk)
                .await
                .map_err(|e| ApiError::internal(format!("spool: {e}")))?,
            Some(Err(e)) => return Err(ApiError::bad_request(format!("reading body: {e}"))),
        }
    }
    f.flush()
        .await
        .map_err(|e| ApiError::internal(format!("spool: {e}")))
}
