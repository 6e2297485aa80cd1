//! Sends the body upstream unchanged to `/v1/chat/completions` and returns responses and events
//! unchanged. The cheapest possible transform: the floor for benchmarks.
use tollgate_plugin_sdk::{
    export_plugin, http, ClientResponse, Reject, SseEvent, StreamOutput, Transform, TransformCtx,
    UpstreamRequest,
};

pub struct Passthrough;

impl Transform for Passthrough {
    fn transform_request(_ctx: TransformCtx, body: Vec<u8>) -> Result<UpstreamRequest, Reject> {
        Ok(UpstreamRequest {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            headers: vec![http::json_content_type()],
            body,
            stream_state: Vec::new(),
        })
    }

    fn transform_response(
        _ctx: TransformCtx,
        status: u16,
        body: Vec<u8>,
    ) -> Result<ClientResponse, Reject> {
        Ok(ClientResponse {
            status,
            headers: vec![http::json_content_type()],
            body,
            usage: None,
        })
    }

    fn transform_event(
        _ctx: TransformCtx,
        state: Vec<u8>,
        event: SseEvent,
    ) -> Result<StreamOutput, Reject> {
        Ok(StreamOutput::events(vec![event], state))
    }

    fn end_of_stream(_ctx: TransformCtx, state: Vec<u8>) -> Result<StreamOutput, Reject> {
        Ok(StreamOutput::events(Vec::new(), state))
    }
}

export_plugin!(transform: Passthrough);
