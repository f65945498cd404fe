//! The connection limit of a listener (`server.max_connections`): a
//! connection over it is answered 503 with `Retry-After` and closed at once,
//! so that a flood of connections cannot take the file descriptors and
//! memory the open ones need.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntCounter;
use tokio::io::AsyncWriteExt;

/// Wraps a listener's application with its connection limit.
pub struct Limited<A> {
    inner: Arc<A>,
    open: AtomicUsize,
    max: usize,
    refused: IntCounter,
}

impl<A> Limited<A> {
    pub fn new(inner: A, max: usize, refused: IntCounter) -> Limited<A> {
        Limited {
            inner: Arc::new(inner),
            open: AtomicUsize::new(0),
            max,
            refused,
        }
    }
}

/// Counts a connection out when it ends, however it ends.
struct Open<'a>(&'a AtomicUsize);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Limited<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        let _open = Open(&self.open);
        if before >= self.max {
            self.refused.inc();
            let mut out = BytesMut::new();
            refusal(&mut out, self.max);
            let _ = stream.write_all(&out).await;
            let _ = stream.flush().await;
            let _ = stream.shutdown().await;
            return None;
        }
        // A kept-alive connection stays counted until it closes.
        let mut reuse = self.inner.process_new(stream, shutdown).await;
        while let Some(stream) = reuse {
            reuse = self.inner.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

/// The 503 a connection over the limit gets.
fn refusal(out: &mut BytesMut, max: usize) {
    let reply = crate::admin::Reply::error(crate::admin::ErrorObject::new(
        503,
        "too_many_connections",
        &format!(
            "the listener holds its limit of {max} open connections (server.max_connections); retry later"
        ),
    ))
    .with_header("Retry-After", "1".into());
    super::fast::write_reply(out, &reply, true, false);
}
