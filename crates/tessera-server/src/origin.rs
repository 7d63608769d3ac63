//! Where a request comes from: the client's IP address and `User-Agent`, recorded on
//! sessions and audit events and used to key login throttling.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;

use crate::state::AppState;

/// Longest `User-Agent` recorded.
const MAX_USER_AGENT_CHARS: usize = 200;

/// The client behind a request.
#[derive(Debug, Clone)]
pub(crate) struct Origin {
    /// The peer address, or with trusted proxies the client they forwarded for.
    pub(crate) ip: Option<IpAddr>,
    /// `User-Agent`, cut short.
    pub(crate) user_agent: Option<String>,
}

impl Origin {
    pub(crate) fn ip_text(&self) -> Option<String> {
        self.ip.map(|ip| ip.to_string())
    }
}

impl FromRequestParts<AppState> for Origin {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(address)| address.ip());
        let forwarded = parts.headers.get_all("x-forwarded-for");
        let ip = peer.map(|peer| {
            crate::client_ip::client_ip(peer, forwarded.iter(), &state.config.trusted_proxies)
        });
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect());
        Ok(Self { ip, user_agent })
    }
}
