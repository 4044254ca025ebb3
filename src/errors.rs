//! The one place that turns an error into a message and an exit code.

use engine::ErrorKind;

/// Errors reaching the top of a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Network(#[from] network::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
    /// `docker run`'s own failures (create/start) exit 125, unlike other commands.
    #[error("{0}")]
    Run(Box<CliError>),
}

pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CliError::Engine(e) => e.kind(),
            CliError::Registry(e) => e.kind(),
            CliError::Network(e) => match e.kind() {
                network::Kind::NotFound => ErrorKind::NotFound,
                network::Kind::Conflict => ErrorKind::Conflict,
                network::Kind::Forbidden => ErrorKind::Forbidden,
                network::Kind::InvalidArgument => ErrorKind::InvalidArgument,
                network::Kind::Internal => ErrorKind::Internal,
            },
            CliError::Usage(_) => ErrorKind::InvalidArgument,
            CliError::Other(_) => ErrorKind::Internal,
            CliError::Run(e) => e.kind(),
        }
    }
}

/// Prints the error Docker-style and returns the exit code: the command's own code for a
/// process that could not start (126 not executable, 127 not found), 125 for other `run`
/// failures, 1 otherwise.
pub fn report(e: &CliError) -> i32 {
    eprintln!("pelagos: error: {e}");
    match e {
        CliError::Engine(engine::Error::StartFailed { exit_code, .. }) => *exit_code,
        CliError::Run(inner) => match inner.as_ref() {
            CliError::Engine(engine::Error::StartFailed { exit_code, .. }) => *exit_code,
            _ => 125,
        },
        // Docker's CLI exits 1 when the engine refused a request, whatever the reason;
        // bad invocations (usage) are 125.
        CliError::Usage(_) => 125,
        _ => match e.kind() {
            ErrorKind::InvalidArgument
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Forbidden
            | ErrorKind::NotModified
            | ErrorKind::Unauthorized
            | ErrorKind::Unavailable
            | ErrorKind::Internal => 1,
        },
    }
}
