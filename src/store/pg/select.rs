//! The one [`Selection`] in PostgreSQL's dialect: the same conditions as
//! `Selection::where_clause` (SQLite's), with numbered parameters, `~` for path globs and an
//! SQL expression for the path that `mf_path` computes in SQLite.

use postgres::types::ToSql;

use crate::store::Selection;

/// One parameter of a clause.
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// The path of `e.target` without its query (absolute-form targets lose scheme and
/// authority), as `model::origin_form` and `mf_path` compute it.
const PATH_EXPR: &str = "split_part(CASE WHEN e.target ~ '^https?://'
        THEN coalesce(substring(e.target from '^https?://[^/]*(/.*)$'), '/')
        ELSE e.target END, '?', 1)";

/// The `WHERE` condition over `exchanges e` and its parameters, numbered from `$first`.
pub(super) fn where_clause(selection: &Selection, first: usize) -> (String, Vec<Param>) {
    let mut parts: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    let mark = |params: &mut Vec<Param>, p: Param| {
        params.push(p);
        format!("${}", first + params.len() - 1)
    };
    if !selection.methods.is_empty() {
        let upper: Vec<String> = selection.methods.iter().map(|m| m.to_uppercase()).collect();
        let m = mark(&mut params, Box::new(upper));
        parts.push(format!("upper(e.method) = ANY({m})"));
    }
    if !selection.protocols.is_empty() {
        let lower: Vec<String> = selection
            .protocols
            .iter()
            .map(|p| p.to_lowercase())
            .collect();
        let m = mark(&mut params, Box::new(lower));
        parts.push(format!("e.protocol = ANY({m})"));
    }
    if !selection.statuses.is_empty() {
        let alts: Vec<String> = selection
            .statuses
            .iter()
            .map(|r| {
                let low = mark(&mut params, Box::new(i32::from(r.low)));
                let high = mark(&mut params, Box::new(i32::from(r.high)));
                format!("e.status BETWEEN {low} AND {high}")
            })
            .collect();
        parts.push(format!("({})", alts.join(" OR ")));
    }
    if !selection.hosts.is_empty() {
        let alts: Vec<String> = selection
            .hosts
            .iter()
            .map(|h| {
                let h = h.to_lowercase();
                let exact = mark(&mut params, Box::new(h.clone()));
                let prefix = mark(&mut params, Box::new(format!("{h}:")));
                format!("(lower(e.authority) = {exact} OR position({prefix} in lower(e.authority)) = 1)")
            })
            .collect();
        parts.push(format!("({})", alts.join(" OR ")));
    }
    if !selection.paths.is_empty() {
        let alts: Vec<String> = selection
            .paths
            .iter()
            .map(|g| {
                let m = mark(&mut params, Box::new(glob_regex(g)));
                format!("{PATH_EXPR} ~ {m}")
            })
            .collect();
        parts.push(format!("({})", alts.join(" OR ")));
    }
    if let Some(ns) = selection.since_ns {
        let m = mark(&mut params, Box::new(ns));
        parts.push(format!("e.started_at_ns >= {m}"));
    }
    if let Some(ns) = selection.until_ns {
        let m = mark(&mut params, Box::new(ns));
        parts.push(format!("e.started_at_ns < {m}"));
    }
    if let Some(t) = &selection.trace_id {
        let m = mark(&mut params, Box::new(t.to_lowercase()));
        parts.push(format!("e.trace_id = {m}"));
    }
    if let Some(ns) = selection.slower_than_ns {
        let m = mark(&mut params, Box::new(i64::try_from(ns).unwrap_or(i64::MAX)));
        parts.push(format!("e.response_end_ns > {m}"));
    }
    if let Some(c) = selection.connection_id {
        let m = mark(&mut params, Box::new(c));
        parts.push(format!("e.connection_id = {m}"));
    }
    if let Some(id) = selection.after_id {
        let m = mark(&mut params, Box::new(id));
        parts.push(format!("e.id > {m}"));
    }
    if selection.errors {
        parts.push(
            "(e.error IS NOT NULL OR e.status IS NULL OR e.status >= 500 OR e.protocol = 'grpc')"
                .into(),
        );
    }
    if parts.is_empty() {
        ("TRUE".into(), params)
    } else {
        (parts.join(" AND "), params)
    }
}

/// An SQLite `GLOB` pattern (`*`, `?`, `[…]`, `[^…]`) as an anchored regular expression.
fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let mut in_class = false;
    for c in glob.chars() {
        if in_class {
            if c == ']' {
                in_class = false;
            }
            if c == '\\' {
                out.push('\\');
            }
            out.push(c);
            continue;
        }
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                in_class = true;
                out.push('[');
            }
            c if ".+()|{}^$\\]".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    if in_class {
        out.push(']');
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_regexes() {
        assert_eq!(glob_regex("/api/*"), "^/api/.*$");
        assert_eq!(glob_regex("/v?.json"), "^/v.\\.json$");
        assert_eq!(glob_regex("/[ab]x"), "^/[ab]x$");
    }

    #[test]
    fn parameters_are_numbered_from_the_first() {
        let selection = Selection {
            methods: vec!["get".into()],
            since_ns: Some(5),
            ..Selection::default()
        };
        let (clause, params) = where_clause(&selection, 3);
        assert_eq!(params.len(), 2);
        assert!(clause.contains("$3") && clause.contains("$4"), "{clause}");
        assert_eq!(where_clause(&Selection::default(), 1).0, "TRUE");
    }
}
