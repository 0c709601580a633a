//! The crate's error type: what failed, on what, and which exit code it means.
//!
//! Exit codes (DESIGN.md §5): 0 done, 1 a gate or check said no / a job failed, 2 usage or
//! input error, 3 infrastructure (git, network, store) failure.

use crate::diag::Diagnostics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Manifests that do not validate: every problem, located.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// A command line or an argument that cannot be acted on.
    #[error("{message}")]
    Usage {
        message: String,
        help: Option<String>,
    },
    /// A git operation failed.
    #[error("git: {context}: {}", chain(source.as_ref()))]
    Git {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A tree that cannot be written to disk safely (crafted, or refused by `git fsck`).
    #[error("refusing the entry {path:?}: {why}")]
    UnsafeTree { path: String, why: String },
    /// Some other infrastructure (a subprocess like `git push`, the artifact store, a forge).
    #[error("{message}")]
    Infra {
        message: String,
        help: Option<String>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            help: None,
        }
    }

    pub fn usage_help(message: impl Into<String>, help: impl Into<String>) -> Self {
        Error::Usage {
            message: message.into(),
            help: Some(help.into()),
        }
    }

    pub fn infra(message: impl Into<String>) -> Self {
        Error::Infra {
            message: message.into(),
            help: None,
        }
    }

    pub fn infra_help(message: impl Into<String>, help: impl Into<String>) -> Self {
        Error::Infra {
            message: message.into(),
            help: Some(help.into()),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Usage { .. } | Error::UnsafeTree { .. } => 2,
            Error::Git { .. } | Error::Io { .. } | Error::Infra { .. } => 3,
        }
    }

    pub fn help(&self) -> Option<&str> {
        match self {
            Error::Usage { help, .. } | Error::Infra { help, .. } => help.as_deref(),
            _ => None,
        }
    }
}

/// Attach what we were doing to a gix or io error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Git {
            context: what(),
            source: Box::new(e),
        })
    }
}

/// An error and its causes on one line, without repeating a cause its parent already shows.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

pub trait IoContext<T> {
    fn io_context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Io {
            context: what(),
            source: e,
        })
    }
}

/// Warnings for the user about things that went wrong but did not stop the work (a work
/// tree that could not follow its branch). The library must not print: it leaves them
/// here, and the command line prints them ([`take_warnings`]).
static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Leave a warning for the command line to print.
pub fn warn(message: impl Into<String>) {
    if let Ok(mut w) = WARNINGS.lock() {
        w.push(message.into());
    }
}

/// The warnings left so far, oldest first; each is returned once.
pub fn take_warnings() -> Vec<String> {
    WARNINGS
        .lock()
        .map(|mut w| std::mem::take(&mut *w))
        .unwrap_or_default()
}
