//! The one table from tribune's errors to Consul's status codes and
//! plain-text bodies.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Response};
use tribune_core::agent::AgentError;
use tribune_core::api::ApiError;
use tribune_core::command::ApplyError;

#[derive(Debug)]
pub enum HttpError {
    Api(ApiError),
    Apply(ApplyError),
    Agent(AgentError),
    BadRequest(String),
    NotFound,
    NotFoundText(String),
    MethodNotAllowed(Vec<Method>),
    NoPathToDatacenter,
    Internal(String),
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError::Api(e)
    }
}
impl From<ApplyError> for HttpError {
    fn from(e: ApplyError) -> Self {
        HttpError::Apply(e)
    }
}
impl From<crate::state::WriteError> for HttpError {
    fn from(e: crate::state::WriteError) -> Self {
        match e {
            crate::state::WriteError::NotCommitted(why) => HttpError::Internal(why),
            crate::state::WriteError::NoLeader => HttpError::Internal("No cluster leader".into()),
            crate::state::WriteError::NoServers => {
                HttpError::Internal(crate::upstream::NO_SERVERS.into())
            }
        }
    }
}
impl From<AgentError> for HttpError {
    fn from(e: AgentError) -> Self {
        HttpError::Agent(e)
    }
}

fn api_status(e: &ApiError) -> u16 {
    match e {
        ApiError::ValueTooLarge { .. }
        | ApiError::BodyTooLarge { .. }
        | ApiError::TooManyTxnOps { .. } => 413,
        // Consul reports an unknown acquire/release session from the store.
        ApiError::InvalidSession(_) => 500,
        _ => 400,
    }
}

impl HttpError {
    pub fn status_and_text(&self) -> (u16, String) {
        match self {
            HttpError::Api(e) => (api_status(e), e.to_string()),
            HttpError::Apply(e) => (500, e.to_string()),
            HttpError::Agent(
                e @ (AgentError::UnknownService(_)
                | AgentError::UnknownCheck(_)
                | AgentError::NoServiceForMaintenance(_)),
            ) => (404, e.to_string()),
            HttpError::Agent(e @ AgentError::TooMany) => (429, e.to_string()),
            HttpError::Agent(e) => (400, e.to_string()),
            HttpError::BadRequest(text) => (400, text.clone()),
            HttpError::NotFound => (404, "404 page not found".into()),
            HttpError::NotFoundText(text) => (404, text.clone()),
            HttpError::MethodNotAllowed(_) => (405, "method not allowed".into()),
            HttpError::NoPathToDatacenter => (500, "No path to datacenter".into()),
            HttpError::Internal(text) => (500, text.clone()),
        }
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let (status, text) = self.status_and_text();
        let mut builder = Response::builder()
            .status(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .header("X-Consul-Default-Acl-Policy", "allow");
        if let HttpError::MethodNotAllowed(methods) = &self {
            let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
            builder = builder.header("Allow", allow.join(", "));
        }
        builder
            .body(Full::new(Bytes::from(text)))
            .expect("static header names and values are valid")
    }
}
