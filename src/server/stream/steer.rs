//! UpdateSession: a prompt update for a running session, by the id of its STARTED event, from
//! any client (a browser's gRPC-Web call, a planner that is not the process reading the masks).

use std::time::Instant;

use tokio::sync::oneshot;

use super::super::status::ApiError;
use super::super::validate;
use super::Streams;
use crate::cluster::AFFINITY_HEADER;
use crate::proto;
use crate::session::SessionInput;

impl Streams {
    /// UpdateSession: `update` applied to the session `session_id` names, as if its stream had
    /// sent it; answers once the session applied it (or said why not).
    pub async fn update(
        &self,
        affinity: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
        request: proto::UpdateSessionRequest,
    ) -> Result<proto::UpdateSessionResponse, ApiError> {
        const ENDED: &str = "session_id: no running session has this id (it ended, or never existed)";
        if request.session_id.is_empty() {
            return Err(ApiError::invalid("session_id", "required (the session_id of the session's STARTED event)"));
        }
        let steering = self.sessions.find(&request.session_id).ok_or_else(|| ApiError::NotFound(ENDED.into()))?;
        if let (Some(header), Some(key)) = (affinity, &steering.source_key) {
            let named = header.to_str().unwrap_or_default();
            if named != key {
                return Err(ApiError::invalid(
                    AFFINITY_HEADER,
                    format!("{named:?} names another source than the session's ({key:?}): the call may reach the wrong replica"),
                ));
            }
        }
        let update = validate::prompt_update(request.prompts.unwrap_or_default(), &self.prompt_limits)?;
        let (reply, answer) = oneshot::channel();
        let input = SessionInput::Prompts { update, received_at: Instant::now(), reply: Some(reply) };
        steering.inputs.send(input).await.map_err(|_| ApiError::NotFound(ENDED.into()))?;
        match answer.await {
            Ok(Ok(applied)) => Ok(proto::UpdateSessionResponse { revision: applied.revision, objects: applied.objects as u32 }),
            // The session's reason names the field (prompts.upsert...).
            Ok(Err(reason)) => Err(ApiError::Rejected(reason)),
            Err(_) => Err(ApiError::NotFound(ENDED.into())),
        }
    }
}
