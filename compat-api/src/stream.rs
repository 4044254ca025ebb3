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
