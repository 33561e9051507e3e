//! The session's outputs as messages; a session that failed ends the stream with its status,
//! and a client stream that broke ends it with the transport's.

use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::super::convert;
use super::super::status::ApiError;
use crate::proto;
use crate::session::{SessionError, SessionOutput};

pub type ResponseStream = Pin<Box<dyn Stream<Item = Result<proto::StreamResponse, Status>> + Send>>;

/// Dropping the stream (the client went away) drops the receiver, which the session sees. The
/// STARTED event carries `session_id`, by which other calls steer the session.
pub fn responses(
    outputs: mpsc::Receiver<Result<SessionOutput, SessionError>>,
    failure: oneshot::Receiver<Status>,
    session_id: String,
) -> ResponseStream {
    let answers = ReceiverStream::new(outputs).map(move |output| {
        let mut response = output.map(convert::stream_response).map_err(|e: SessionError| Status::from(ApiError::from(e)))?;
        if let Some(proto::stream_response::Msg::Event(event)) = &mut response.msg
            && event.kind == proto::EventKind::Started as i32
        {
            event.session_id.clone_from(&session_id);
        }
        Ok(response)
    });
    let broken = futures_util::stream::once(failure).filter_map(|failure| failure.ok().map(Err));
    Box::pin(answers.chain(broken))
}
