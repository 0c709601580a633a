//! Forges (GitHub): promotion pull requests, check runs, commit statuses.
