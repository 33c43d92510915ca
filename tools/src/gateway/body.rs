//! The body the gateway answers with: whole bytes or a stream of gated
//! chunks, and a hook that runs once the exchange is over: when the caller
//! has read the last byte, or when the body is dropped unread (the complete
//! gate's cue).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Runs when the body has been read to its end, once.
pub(crate) type OnEnd = Box<dyn FnOnce()>;

/// A response body.
pub(crate) struct GateBody {
    inner: Inner,
    on_end: Option<OnEnd>,
}

enum Inner {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl GateBody {
    /// A whole body.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> GateBody {
        let bytes = bytes.into();
        GateBody {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
            on_end: None,
        }
    }

    /// A body whose chunks come through `rx`; it ends when the sender drops.
    pub(crate) fn stream(rx: mpsc::Receiver<Bytes>) -> GateBody {
        GateBody {
            inner: Inner::Stream(rx),
            on_end: None,
        }
    }

    /// Runs `f` once the caller has read the last byte.
    pub(crate) fn on_end(mut self, f: OnEnd) -> GateBody {
        self.on_end = Some(f);
        self
    }

    fn ended(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}

impl Drop for GateBody {
    /// A body hyper never polls (an empty one) or drops early (the caller
    /// went away) still ends the exchange: the hook runs here then.
    fn drop(&mut self) {
        self.ended();
    }
}

impl Body for GateBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let next = match &mut this.inner {
            Inner::Full(bytes) => bytes.take(),
            Inner::Stream(rx) => match rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(next) => next,
            },
        };
        match next {
            Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            None => {
                this.ended();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.inner, Inner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Inner::Full(None) => SizeHint::with_exact(0),
            Inner::Stream(_) => SizeHint::default(),
        }
    }
}
