//! Generated input never panics: every load ends in settings or a report.
