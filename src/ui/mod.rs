//! The browser viewer: a recording (or a fixtures folder) as web pages, and the control
//! center of a running replay. Served by `mf ui` and at `/` of `mf replay --admin`.
//!
//! Pages are rendered on the server (maud escapes every recorded byte it is given, so a
//! recorded `<script>` is shown as text); the only script is `assets/ui.js`, served from
//! this origin, which drives the control center through the admin API and its live feed.
//!
//! Files: `page` (layout and shared bits), `filters` (query string ↔ store selection),
//! `list` (the paged exchange list), `detail` (one exchange), `body` (how a body is shown),
//! `endpoints` (templates and patterns), `diagram` (Mermaid source and its SVG), `control`
//! (the control center's page).
//!
//! Imports: `store`, `net`, `vocab`, `model` only. What inference found reaches this module
//! as a [`FixtureSet`] computed by whoever builds the [`Viewer`] (the CLI), on first use.

mod body;
mod control;
mod detail;
pub mod diagram;
mod endpoints;
mod filters;
mod list;
mod page;

use std::sync::{Mutex, OnceLock};

use crate::net::pages::{PageRequest, PageResponse, Pages};
use crate::store::fixtures::FixtureSet;
use crate::store::RecordingRead;

/// Computes what inference finds in the viewed data, once, when a page first needs it.
pub type Analyse = Box<dyn Fn() -> Result<FixtureSet, String> + Send + Sync>;

/// What the pages show: a recording, a fixtures folder, or both (a replay of either).
pub struct Viewer {
    /// The recording, if the viewed thing is one. SQLite connections are not `Sync`: one
    /// page reads at a time, which a local viewer can afford.
    recording: Option<Mutex<Box<dyn RecordingRead>>>,
    /// What the title bar says (the file's name).
    name: String,
    analyse: Analyse,
    analysis: OnceLock<Result<FixtureSet, String>>,
    /// Whether a replay runs beside the pages (its admin API is at the same origin).
    control: bool,
    /// The recording's size and when it was counted: `count(*)` walks the whole table
    /// (a fifth of a second at a million rows), so pages reuse it for a while.
    counted: Mutex<Option<(std::time::Instant, u64)>>,
}

impl Viewer {
    /// Pages over `recording` (or none, for a fixtures folder), named `name`; `analyse`
    /// runs on the first visit of the endpoints page; `control` adds the control center.
    pub fn new(
        recording: Option<Box<dyn RecordingRead>>,
        name: impl Into<String>,
        analyse: Analyse,
        control: bool,
    ) -> Viewer {
        Viewer {
            recording: recording.map(Mutex::new),
            name: name.into(),
            analyse,
            analysis: OnceLock::new(),
            control,
            counted: Mutex::new(None),
        }
    }

    /// How many exchanges `reader` holds, counted at most every [`Self::RECOUNT`].
    fn count(&self, reader: &dyn RecordingRead) -> u64 {
        let mut counted = match self.counted.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((at, n)) = *counted {
            if at.elapsed() < Self::RECOUNT {
                return n;
            }
        }
        let n = reader.count().unwrap_or(0);
        *counted = Some((std::time::Instant::now(), n));
        n
    }

    /// How long a count stands (a replay that keeps misses appends meanwhile).
    const RECOUNT: std::time::Duration = std::time::Duration::from_secs(10);

    fn analysis(&self) -> &Result<FixtureSet, String> {
        self.analysis.get_or_init(|| (self.analyse)())
    }

    /// Runs `f` with the recording, or answers that there is none.
    fn with_recording(&self, f: impl FnOnce(&dyn RecordingRead) -> PageResponse) -> PageResponse {
        match &self.recording {
            None => page::html(page::layout(
                self,
                "Exchanges",
                maud::html! {
                    p { "This is a fixtures folder, not a recording: see "
                        a href="/endpoints" { "Endpoints" } "." }
                },
            )),
            Some(m) => match m.lock() {
                Ok(r) => f(r.as_ref()),
                Err(poisoned) => f(poisoned.into_inner().as_ref()),
            },
        }
    }
}

impl Pages for Viewer {
    fn page(&self, req: &PageRequest) -> PageResponse {
        let query = filters::Query::parse(&req.query);
        let path = req.path.trim_end_matches('/');
        match path {
            "" | "/exchanges" => self.with_recording(|r| list::page(self, r, &query)),
            "/endpoints" => {
                let (patterns, sample) = self.recording_patterns();
                endpoints::page(self, patterns, &sample)
            }
            "/diagram" => self.with_recording(|r| diagram::page(self, r, &query)),
            "/control" if self.control => control::page(self),
            "/assets/ui.js" => PageResponse::ok(
                "text/javascript; charset=utf-8",
                include_str!("assets/ui.js"),
            ),
            "/assets/ui.css" => {
                PageResponse::ok("text/css; charset=utf-8", include_str!("assets/ui.css"))
            }
            p => match p.strip_prefix("/x/").map(str::parse::<i64>) {
                Some(Ok(id)) => self.with_recording(|r| detail::page(self, r, id)),
                _ => page::not_found(self, p),
            },
        }
    }
}

impl Viewer {
    /// The patterns `mf infer` stored in the recording, if any, and the exchanges of one
    /// busy connection near its start, for a sample diagram (both empty for a folder).
    fn recording_patterns(
        &self,
    ) -> (
        Vec<crate::store::PatternRow>,
        Vec<crate::store::ExchangeSummary>,
    ) {
        let Some(m) = &self.recording else {
            return (Vec::new(), Vec::new());
        };
        let r = match m.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        // The first page of the recording is enough to find a connection worth drawing;
        // the whole recording would be a walk over a million rows.
        let first = r.summaries_after(0, 1000).unwrap_or_default();
        let mut per: std::collections::BTreeMap<i64, usize> = Default::default();
        for s in &first {
            *per.entry(s.connection_id).or_default() += 1;
        }
        let busiest = per.iter().max_by_key(|(c, n)| (**n, -**c)).map(|(c, _)| *c);
        let sample = first
            .into_iter()
            .filter(|s| Some(s.connection_id) == busiest)
            .take(12)
            .collect();
        (r.patterns().unwrap_or_default(), sample)
    }
}

#[cfg(test)]
mod tests;
