//! `GET /v1/events`: server-sent events. Each event is `event: <kind>` + `data: <json>`;
//! a comment line every [`KEEPALIVE`] keeps proxies and browsers from closing an idle
//! stream. A subscriber that falls behind gets an `events.lagged` event with the number
//! missed (the ledger has them all).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::{broadcast, mpsc};

use super::AdminResponse;
use crate::events::{Event, EventBus};

/// Interval of keep-alive comments.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// Frames buffered per subscriber between the bus and the socket.
const FRAMES: usize = 64;

/// One SSE frame for an event.
pub fn frame(event: &Event) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_default();
    Bytes::from(format!("event: {}\ndata: {data}\n\n", event.kind))
}

struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Whether the caller of a stream may still see events (re-checked on every event and
/// keep-alive, so a revoked approver's open stream ends).
pub type StillAuthorized = Box<dyn Fn() -> bool + Send + Sync>;

/// The streaming response; a task feeds it until the client goes away or loses access.
pub fn stream(bus: &EventBus, authorized: StillAuthorized) -> AdminResponse {
    let mut events = bus.subscribe();
    let (tx, rx) = mpsc::channel::<Bytes>(FRAMES);
    tokio::spawn(async move {
        if tx
            .send(Bytes::from_static(b": clawser events\n\n"))
            .await
            .is_err()
        {
            return;
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            let out = tokio::select! {
                r = events.recv() => match r {
                    Ok(e) => frame(&e),
                    Err(broadcast::error::RecvError::Lagged(n)) => Bytes::from(format!(
                        "event: events.lagged\ndata: {{\"missed\": {n}}}\n\n"
                    )),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
                _ = tx.closed() => return,
            };
            if !authorized() || tx.send(out).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(SseBody { rx }.boxed());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_follow_the_bus() {
        let bus = EventBus::new(8);
        let allowed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let a2 = allowed.clone();
        let resp = stream(
            &bus,
            Box::new(move || a2.load(std::sync::atomic::Ordering::SeqCst)),
        );
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert!(first.starts_with(b": clawser events"));
        bus.publish(
            "approval.created",
            Some(3),
            serde_json::json!({"approval": "apr_1"}),
        );
        let f = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let text = String::from_utf8(f.to_vec()).unwrap();
        assert!(text.starts_with("event: approval.created\ndata: {"));
        assert!(text.contains("\"apr_1\"") && text.ends_with("\n\n"));
        // Access revoked: the stream ends at the next event.
        allowed.store(false, std::sync::atomic::Ordering::SeqCst);
        bus.publish("approval.decided", Some(4), serde_json::json!({}));
        assert!(body.frame().await.is_none());
    }
}
