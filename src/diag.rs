//! Diagnostics: what is wrong with a manifest, where, and what to do about it.
//!
//! Every user-facing problem with the state repository's files is a [`Diagnostic`] that
//! names the file (relative to the repository root), the line and column (1-based, 0 when
//! the problem concerns the whole file), what was expected, and a hint where one helps.
//!
//! A leaf: it uses nothing of the crate, so the error type (which carries diagnostics)
//! and `manifest` (which makes them and returns the error type) both depend on it, not on
//! each other. `manifest` re-exports its types.

use std::fmt;

use serde::Serialize;

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(file: impl Into<String>, pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// A 1-based position in a file; `Pos::FILE` points at the file as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub const FILE: Pos = Pos { line: 1, column: 1 };

    pub fn of<T>(spanned: &serde_saphyr::Spanned<T>) -> Pos {
        let loc = spanned.referenced;
        if loc.line() == 0 {
            Pos::FILE
        } else {
            Pos {
                line: loc.line(),
                column: loc.column(),
            }
        }
    }
}

/// All problems found in one pass, sorted by file and position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn sorted(mut self) -> Self {
        self.0.sort();
        self.0.dedup();
        self
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}
