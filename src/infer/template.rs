//! Endpoint templates: clustering paths (`/users/123`, `/users/456` → `/users/{id}`).
//!
//! A segment becomes a parameter when its value looks like an identifier (integer, UUID, long
//! hex, date, long base64-ish token) — decided per value, so no global state is needed — or
//! when a position holds many distinct rare literals (slugs). Any other literal stays literal:
//! `/users/me` never merges into `/users/{id}`, because `me` is not an identifier.

use std::collections::BTreeMap;

use crate::vocab::{self, segment_class};

/// Literal children beyond this count at one position are candidates for a slug parameter.
const SLUG_MIN_DISTINCT: usize = 20;
/// Memory bound on distinct literals kept per position; the rest go straight to the parameter.
const MAX_LITERALS: usize = 1000;

#[derive(Debug, Default)]
struct Node {
    literals: BTreeMap<String, Node>,
    param: Option<(String, Box<Node>)>,
    /// Requests passing through this node.
    through: u64,
    /// Requests ending here.
    terminal: u64,
}

impl Node {
    fn param_child(&mut self, class: &str) -> &mut Node {
        let slot = self
            .param
            .get_or_insert_with(|| (class.to_string(), Box::default()));
        if slot.0 != class {
            slot.0 = "id".to_string();
        }
        &mut slot.1
    }

    fn merge(&mut self, other: Node) {
        self.through += other.through;
        self.terminal += other.terminal;
        for (k, child) in other.literals {
            self.literals.entry(k).or_default().merge(child);
        }
        if let Some((class, child)) = other.param {
            self.param_child(&class).merge(*child);
        }
    }

    /// Folds positions holding many rare literals into a `slug` parameter. A literal used by at
    /// least 5% of the requests through this position stays literal.
    fn collapse(&mut self) {
        if self.literals.len() > SLUG_MIN_DISTINCT {
            let keep_min = (self.through / 20).max(3);
            let rare: Vec<String> = self
                .literals
                .iter()
                .filter(|(_, n)| n.through < keep_min)
                .map(|(k, _)| k.clone())
                .collect();
            if rare.len() > SLUG_MIN_DISTINCT / 2 {
                for k in rare {
                    if let Some(n) = self.literals.remove(&k) {
                        self.param_child("slug").merge(n);
                    }
                }
            }
        }
        for child in self.literals.values_mut() {
            child.collapse();
        }
        if let Some((_, child)) = self.param.as_mut() {
            child.collapse();
        }
    }
}

/// Path of a request target, without scheme, authority and query.
pub fn path_of(target: &str) -> &str {
    vocab::split_target(vocab::origin_form(target)).0
}

/// First pass: sees every `(method, path)` once.
#[derive(Debug, Default)]
pub struct TemplateBuilder {
    roots: BTreeMap<String, Node>,
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl TemplateBuilder {
    /// Adds one request path.
    pub fn add(&mut self, method: &str, path: &str) {
        let mut node = child(&mut self.roots, method);
        node.through += 1;
        for seg in segments(path) {
            node = match segment_class(seg) {
                Some(class) => node.param_child(class),
                None if node.literals.len() >= MAX_LITERALS && !node.literals.contains_key(seg) => {
                    node.param_child("slug")
                }
                None => child(&mut node.literals, seg),
            };
            node.through += 1;
        }
        node.terminal += 1;
    }

    /// The templates, sorted by method then path.
    pub fn finish(mut self) -> Templates {
        for root in self.roots.values_mut() {
            root.collapse();
        }
        let mut list = Vec::new();
        for (method, root) in &self.roots {
            let mut segs = Vec::new();
            walk(method, root, &mut segs, &mut list);
        }
        list.sort_by(|a: &Template, b| (&a.method, &a.path).cmp(&(&b.method, &b.path)));
        Templates {
            roots: self.roots,
            list,
        }
    }
}

/// One segment of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// Parameter name and value class.
    Param(String, String),
}

/// An endpoint template.
#[derive(Clone, Debug)]
pub struct Template {
    pub method: String,
    /// `/users/{id}`.
    pub path: String,
    pub segments: Vec<Segment>,
}

fn walk(
    method: &str,
    node: &Node,
    segs: &mut Vec<(bool, String, String)>,
    out: &mut Vec<Template>,
) {
    if node.terminal > 0 {
        out.push(build(method, segs));
    }
    for (lit, child) in &node.literals {
        segs.push((false, lit.clone(), String::new()));
        walk(method, child, segs, out);
        segs.pop();
    }
    if let Some((class, child)) = &node.param {
        segs.push((true, String::new(), class.clone()));
        walk(method, child, segs, out);
        segs.pop();
    }
}

fn singular(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    s.strip_suffix("ies")
        .map(|p| format!("{p}y"))
        .or_else(|| s.strip_suffix('s').map(String::from))
        .unwrap_or(s)
}

/// Names parameters: the last is `id`, earlier ones `<singular of the literal before>_id`.
fn build(method: &str, segs: &[(bool, String, String)]) -> Template {
    let params = segs.iter().filter(|s| s.0).count();
    let mut seen = 0;
    let mut used: Vec<String> = Vec::new();
    let mut segments = Vec::new();
    for (i, (is_param, lit, class)) in segs.iter().enumerate() {
        if !*is_param {
            segments.push(Segment::Literal(lit.clone()));
            continue;
        }
        seen += 1;
        let prev = segs[..i]
            .iter()
            .rev()
            .find(|s| !s.0)
            .map(|s| singular(&s.1))
            .filter(|s| !s.is_empty());
        let mut name = if seen == params {
            "id".to_string()
        } else {
            format!("{}_id", prev.unwrap_or_else(|| "p".into()))
        };
        while used.contains(&name) {
            name.push('_');
        }
        used.push(name.clone());
        segments.push(Segment::Param(name, class.clone()));
    }
    let path = if segments.is_empty() {
        "/".to_string()
    } else {
        segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => format!("/{l}"),
                Segment::Param(n, _) => format!("/{{{n}}}"),
            })
            .collect()
    };
    Template {
        method: method.to_string(),
        path,
        segments,
    }
}

/// The result of the first pass.
#[derive(Debug)]
pub struct Templates {
    roots: BTreeMap<String, Node>,
    pub list: Vec<Template>,
}

impl Templates {
    /// Index of the template `path` belongs to (literal segments first, then parameters).
    pub fn find(&self, method: &str, path: &str) -> Option<usize> {
        let root = self.roots.get(method)?;
        let segs: Vec<&str> = segments(path).collect();
        let mut shape = Vec::with_capacity(segs.len());
        if !descend(root, &segs, &mut shape) {
            return None;
        }
        // Binary search on the sorted list by the rebuilt template path.
        let key = rebuild(&self.list, method, &shape)?;
        Some(key)
    }
}

fn descend(node: &Node, segs: &[&str], shape: &mut Vec<Option<String>>) -> bool {
    let Some((first, rest)) = segs.split_first() else {
        return node.terminal > 0;
    };
    if segment_class(first).is_none() {
        if let Some(child) = node.literals.get(*first) {
            shape.push(Some((*first).to_string()));
            if descend(child, rest, shape) {
                return true;
            }
            shape.pop();
        }
    }
    if let Some((_, child)) = &node.param {
        shape.push(None);
        if descend(child, rest, shape) {
            return true;
        }
        shape.pop();
    }
    false
}

fn rebuild(list: &[Template], method: &str, shape: &[Option<String>]) -> Option<usize> {
    list.iter().position(|t| {
        t.method == method
            && t.segments.len() == shape.len()
            && t.segments
                .iter()
                .zip(shape)
                .all(|(s, want)| match (s, want) {
                    (Segment::Literal(l), Some(w)) => l == w,
                    (Segment::Param(..), None) => true,
                    _ => false,
                })
    })
}

/// Path parameter values of `path` under `template`.
pub fn params_of<'a>(template: &Template, path: &'a str) -> Vec<(&'a str, String)> {
    template
        .segments
        .iter()
        .zip(segments(path))
        .filter_map(|(s, v)| match s {
            Segment::Param(name, _) => Some((v, name.clone())),
            Segment::Literal(_) => None,
        })
        .collect()
}

/// The node under `key`, created when missing; the key is copied only then (this pass sees
/// every exchange of the recording, most of them on paths seen before).
fn child<'a>(nodes: &'a mut BTreeMap<String, Node>, key: &str) -> &'a mut Node {
    if !nodes.contains_key(key) {
        nodes.insert(key.to_string(), Node::default());
    }
    match nodes.get_mut(key) {
        Some(node) => node,
        None => unreachable!("inserted just above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn templates(paths: &[(&str, &str)]) -> Templates {
        let mut b = TemplateBuilder::default();
        for (m, p) in paths {
            b.add(m, p);
        }
        b.finish()
    }

    #[test]
    fn ids_merge_and_literals_stay() {
        let t = templates(&[
            ("GET", "/users/123"),
            ("GET", "/users/456"),
            ("GET", "/users/me"),
            ("GET", "/orders/9b2f6c1e-8d1a-4c3b-9f2e-1a2b3c4d5e6f"),
            ("GET", "/users/7/orders/8"),
        ]);
        let paths: Vec<&str> = t.list.iter().map(|t| t.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/orders/{id}",
                "/users/me",
                "/users/{id}",
                "/users/{user_id}/orders/{id}"
            ]
        );
        assert_eq!(
            t.list[t.find("GET", "/users/999").unwrap()].path,
            "/users/{id}"
        );
        assert_eq!(
            t.list[t.find("GET", "/users/me").unwrap()].path,
            "/users/me"
        );
        assert!(t.find("POST", "/users/1").is_none());
    }

    #[test]
    fn many_rare_slugs_become_a_parameter() {
        let mut paths = vec![];
        let names: Vec<String> = (0..40)
            .map(|i| {
                format!(
                    "article-title-{}",
                    ["a", "b", "c", "d"][i % 4].repeat(i + 1)
                )
            })
            .collect();
        for n in &names {
            paths.push(("GET", format!("/blog/{n}")));
        }
        for _ in 0..50 {
            paths.push(("GET", "/blog/latest".to_string()));
        }
        let refs: Vec<(&str, &str)> = paths.iter().map(|(m, p)| (*m, p.as_str())).collect();
        let t = templates(&refs);
        let paths: Vec<&str> = t.list.iter().map(|t| t.path.as_str()).collect();
        assert_eq!(paths, ["/blog/latest", "/blog/{id}"]);
    }
}
