//! The SDK's error types: what went wrong talking to the server
//! ([`Error`]) and what went wrong keeping tokens ([`StoreError`]).

use std::path::PathBuf;

use reqwest::StatusCode;

/// Everything a [`Session`](crate::Session) call can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server URL is not an `http` or `https` origin this SDK can use.
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidServerUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A request path is not a path on the session's server.
    #[error("invalid request path `{path}`: it must start with a single `/`")]
    InvalidPath {
        /// The path as given.
        path: String,
    },

    /// A full URL names another server (or a path outside this one's
    /// prefix); the access token is never sent there.
    #[error("refusing to send the token to {url}: it is not on {server}")]
    ForeignUrl {
        /// The URL as given.
        url: String,
        /// The session's server.
        server: String,
    },

    /// The server could not be reached or the exchange broke off.
    #[error("could not talk to the server")]
    Network(#[source] reqwest::Error),

    /// The server answered with an error status.
    #[error("{}", describe_status(*status, code.as_deref(), description.as_deref()))]
    Status {
        /// The HTTP status.
        status: StatusCode,
        /// The `error` code of the JSON error body, if there was one.
        code: Option<String>,
        /// The `error_description` of the JSON error body, if any.
        description: Option<String>,
        /// Seconds to wait before trying again, from `Retry-After`.
        retry_after: Option<u64>,
    },

    /// The server answered, but not in the shape the contract promises.
    #[error("unexpected answer from the server: {0}")]
    InvalidResponse(String),

    /// No tokens are stored for this server.
    #[error("not logged in to {server}: log in first")]
    LoggedOut {
        /// The server the caller asked about.
        server: String,
    },

    /// The server refused the refresh token (`invalid_grant`), so the
    /// session is over; the stored tokens have been removed.
    #[error("the session with {server} has ended: log in again")]
    SessionEnded {
        /// The server whose session ended.
        server: String,
    },

    /// The token store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// The OAuth or API error code the server sent, such as
    /// `invalid_grant`, when this is an [`Error::Status`].
    pub fn server_code(&self) -> Option<&str> {
        match self {
            Error::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

fn describe_status(status: StatusCode, code: Option<&str>, description: Option<&str>) -> String {
    match (code, description) {
        (Some(code), Some(text)) => {
            format!("server answered {status}: {code}: {text}")
        }
        (Some(code), None) => format!("server answered {status}: {code}"),
        (None, Some(text)) => format!("server answered {status}: {text}"),
        (None, None) => format!("server answered {status}"),
    }
}

/// What can go wrong loading, saving or clearing stored tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Neither `XDG_CONFIG_HOME` nor `HOME` says where to keep the file.
    #[error(
        "cannot find a config folder: set XDG_CONFIG_HOME or HOME \
         to an absolute path"
    )]
    NoConfigDir,

    /// Reading or writing a file failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done, such as "cannot read".
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// The credentials file can be read or written by other users, so its
    /// tokens may already be exposed; it is not used until fixed.
    #[error(
        "{} is accessible to other users (mode {mode:03o}); \
         run `chmod 600 {}` and log in again if others may have read it",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The credentials file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// The credentials file is not valid JSON of the expected shape.
    #[error("{} is not a valid credentials file", path.display())]
    Corrupt {
        /// The credentials file.
        path: PathBuf,
        /// What the parser found.
        #[source]
        source: serde_json::Error,
    },

    /// The OS keyring could not be used or refused the request.
    #[error("{reason}")]
    Keyring {
        /// What went wrong, without any secret.
        reason: String,
    },

    /// A blocking store call could not finish (its thread was cancelled).
    #[error("token store task failed: {0}")]
    Task(String),
}
