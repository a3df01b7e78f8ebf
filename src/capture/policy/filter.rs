//! Which exchanges are stored at all: path, host, method and content-type filters.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::model::{Exchange, HeaderList};

use super::PolicyError;

/// What the filter flags asked for; empty lists filter nothing.
#[derive(Clone, Debug, Default)]
pub struct FilterConfig {
    /// Store only exchanges whose path matches one of these globs.
    pub include: Vec<String>,
    /// Never store exchanges whose path matches one of these globs.
    pub exclude: Vec<String>,
    /// Store only exchanges addressed to one of these hosts (globs, port optional).
    pub hosts: Vec<String>,
    /// Store only these methods (case-insensitive).
    pub methods: Vec<String>,
    /// Store only exchanges whose request or response media type matches one of these
    /// globs (`application/json`, `image/*`).
    pub content_types: Vec<String>,
}

/// The compiled filter.
#[derive(Debug)]
pub(crate) struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    hosts: Option<GlobSet>,
    methods: Vec<String>,
    content_types: Option<GlobSet>,
}

/// Globs over paths: `*` crosses `/` (`/api/*` is everything under /api), since a path
/// filter that needs `**` to mean "below" surprised people.
fn globs(patterns: &[String], case_insensitive: bool) -> Result<Option<GlobSet>, PolicyError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = GlobBuilder::new(p)
            .literal_separator(false)
            .case_insensitive(case_insensitive)
            .build()
            .map_err(|e| PolicyError::Glob {
                pattern: p.clone(),
                reason: e.kind().to_string(),
            })?;
        set.add(glob);
    }
    set.build().map(Some).map_err(|e| PolicyError::Glob {
        pattern: patterns.join(" "),
        reason: e.kind().to_string(),
    })
}

impl Filter {
    pub(crate) fn new(cfg: &FilterConfig) -> Result<Filter, PolicyError> {
        Ok(Filter {
            include: globs(&cfg.include, false)?,
            exclude: globs(&cfg.exclude, false)?,
            hosts: globs(&cfg.hosts, true)?,
            methods: cfg.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            content_types: globs(&cfg.content_types, true)?,
        })
    }

    /// True when `ex` is to be stored.
    pub(crate) fn keeps(&self, ex: &Exchange) -> bool {
        let path = ex.request.path();
        if self.include.as_ref().is_some_and(|g| !g.is_match(path)) {
            return false;
        }
        if self.exclude.as_ref().is_some_and(|g| g.is_match(path)) {
            return false;
        }
        if let Some(hosts) = &self.hosts {
            let authority = ex.authority.as_str();
            let host = authority
                .rsplit_once(':')
                .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
                .map_or(authority, |(h, _)| h);
            if !hosts.is_match(authority) && !hosts.is_match(host) {
                return false;
            }
        }
        if !self.methods.is_empty()
            && !self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&ex.request.method))
        {
            return false;
        }
        if let Some(types) = &self.content_types {
            let media = |ct: Option<String>| {
                ct.map(|c| {
                    c.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
            };
            let req = media(ex.request.headers.header_str("content-type"));
            let resp = media(
                ex.response
                    .as_ref()
                    .and_then(|r| r.headers.header_str("content-type")),
            );
            if ![req, resp].iter().flatten().any(|m| types.is_match(m)) {
                return false;
            }
        }
        true
    }
}
