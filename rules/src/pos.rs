//! Where each YAML node starts: an index from a path (`routes[2].credential`) to its
//! 1-based line and column.
//!
//! serde_yaml 0.9 gives locations only for its own errors, not for the nodes it
//! deserializes, so validation looks positions up here. The index is built from the
//! event stream of `yaml-rust2`'s parser, whose [`Marker`]s give 1-based lines and
//! 0-based columns counted in characters (made 1-based here), the same convention as serde_yaml's error locations.
//! Only the first document is indexed; a path that is not indexed falls back to its
//! nearest indexed ancestor, and finally to 1:1, so a lookup never fails.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Seg {
    Key(String),
    Idx(usize),
}

/// A path from the document root, e.g. `routes[2].match.hosts[0]`.
pub(crate) type YPath = Vec<Seg>;

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    fn from_marker(m: &Marker) -> Pos {
        Pos {
            line: m.line().max(1),
            // `Marker::col` is documented as 1-indexed but is 0-indexed in practice
            // (yaml-rust2 0.13); the tests below pin the convention.
            column: m.col() + 1,
        }
    }
}

/// Positions of values (and of mapping keys) by path.
#[derive(Debug, Default)]
pub(crate) struct PosIndex {
    values: HashMap<YPath, Pos>,
    keys: HashMap<YPath, Pos>,
    /// Every position at which a key of the mapping at this path occurs, in order, for
    /// mappings whose keys repeat (so duplicates can be located individually).
    key_occurrences: HashMap<YPath, Vec<Pos>>,
}

/// A collection being walked.
enum Frame {
    Map {
        /// The key whose value comes next; `None` while a key is expected.
        key: Option<Seg>,
    },
    Seq {
        next: usize,
    },
}

/// What the node that starts now is, relative to its parent.
enum Role {
    /// A value at this path.
    Value(YPath),
    /// A mapping key (a scalar; its text becomes the pending key).
    Key,
}

struct Builder {
    index: PosIndex,
    /// Open collections: the path of the collection itself, its frame, whether it is a
    /// mapping key, and (for a mapping whose position is not yet known) its start marker.
    stack: Vec<(YPath, Frame, bool, Option<Pos>)>,
}

impl Builder {
    fn role(&mut self) -> Role {
        match self.stack.last_mut() {
            None => Role::Value(Vec::new()),
            Some((path, Frame::Seq { next }, _, _)) => {
                let mut p = path.clone();
                p.push(Seg::Idx(*next));
                *next += 1;
                Role::Value(p)
            }
            Some((path, Frame::Map { key }, _, _)) => match key.take() {
                None => Role::Key,
                Some(seg) => {
                    let mut p = path.clone();
                    p.push(seg);
                    Role::Value(p)
                }
            },
        }
    }

    fn scalar(&mut self, text: String, mark: &Marker) {
        let pos = Pos::from_marker(mark);
        match self.role() {
            Role::Value(p) => {
                self.index.values.entry(p).or_insert(pos);
            }
            Role::Key => {
                if let Some((path, Frame::Map { key }, _, pending)) = self.stack.last_mut() {
                    // A block mapping's start marker sits at its first `:`, so a mapping
                    // is located at its first key instead.
                    if pending.take().is_some() {
                        self.index.values.entry(path.clone()).or_insert(pos);
                    }
                    let mut kp = path.clone();
                    kp.push(Seg::Key(text.clone()));
                    self.index.keys.entry(kp).or_insert(pos);
                    self.index
                        .key_occurrences
                        .entry(path.clone())
                        .or_default()
                        .push(pos);
                    *key = Some(Seg::Key(text));
                }
            }
        }
    }

    fn start(&mut self, frame: Frame, mark: &Marker) {
        let pos = Pos::from_marker(mark);
        match self.role() {
            Role::Value(p) => {
                let pending = match frame {
                    Frame::Map { .. } => Some(pos),
                    Frame::Seq { .. } => {
                        self.index.values.entry(p.clone()).or_insert(pos);
                        None
                    }
                };
                self.stack.push((p, frame, false, pending));
            }
            Role::Key => {
                // A collection used as a key: walk it under a path no lookup asks for.
                let mut p = self.stack.last().map(|s| s.0.clone()).unwrap_or_default();
                p.push(Seg::Key("\u{0}complex-key".to_owned()));
                self.stack.push((p, frame, true, None));
            }
        }
    }

    fn end(&mut self) {
        if let Some((path, _, was_key, pending)) = self.stack.pop() {
            if let Some(pos) = pending {
                self.index.values.entry(path).or_insert(pos);
            }
            if was_key {
                if let Some((_, Frame::Map { key }, _, _)) = self.stack.last_mut() {
                    *key = Some(Seg::Key("\u{0}complex-key".to_owned()));
                }
            }
        }
    }
}

impl PosIndex {
    /// Index the first document of `text`. Text yaml-rust2 cannot parse gives a partial
    /// (possibly empty) index, never an error: positions are a convenience.
    pub fn build(text: &str) -> PosIndex {
        let mut b = Builder {
            index: PosIndex::default(),
            stack: Vec::new(),
        };
        let mut parser = Parser::new_from_str(text);
        let mut documents = 0usize;
        while let Ok((event, mark)) = parser.next_token() {
            match event {
                Event::StreamEnd => break,
                Event::DocumentStart => {
                    documents += 1;
                    if documents > 1 {
                        break;
                    }
                }
                Event::DocumentEnd => break,
                Event::Scalar(text, ..) => b.scalar(text, &mark),
                Event::Alias(_) => b.scalar(String::new(), &mark),
                Event::MappingStart(..) => b.start(Frame::Map { key: None }, &mark),
                Event::SequenceStart(..) => b.start(Frame::Seq { next: 0 }, &mark),
                Event::MappingEnd | Event::SequenceEnd => b.end(),
                Event::Nothing | Event::StreamStart => {}
            }
        }
        b.index
    }

    /// Where the value at `path` starts, or its nearest indexed ancestor.
    pub fn value(&self, path: &[Seg]) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.split_last() {
                Some((_, parent)) => p = parent,
                None => return Pos::START,
            }
        }
    }

    /// Where the key at `path` (its last segment) starts; falls back like [`Self::value`].
    pub fn key(&self, path: &[Seg]) -> Pos {
        match self.keys.get(path) {
            Some(pos) => *pos,
            None => self.value(path),
        }
    }

    /// Positions of all keys of the mapping at `path`, in file order.
    pub fn key_positions(&self, path: &[Seg]) -> &[Pos] {
        self.key_occurrences
            .get(path)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Renders a path the way serde_yaml does, for messages: `routes[2].match.hosts[0]`.
pub(crate) fn display(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Idx(i) => {
                s.push('[');
                s.push_str(&i.to_string());
                s.push(']');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.to_owned())
    }

    #[test]
    fn indexes_block_and_flow_nodes() {
        let text =
            "listen:\n  proxy: 1.2.3.4:5\nroutes:\n  - name: a\n    match: { hosts: [x, \"y\"] }\n";
        let ix = PosIndex::build(text);
        assert_eq!(
            ix.value(&[k("listen"), k("proxy")]),
            Pos {
                line: 2,
                column: 10
            }
        );
        assert_eq!(
            ix.key(&[k("listen"), k("proxy")]),
            Pos { line: 2, column: 3 }
        );
        assert_eq!(
            ix.value(&[k("routes"), Seg::Idx(0), k("name")]),
            Pos {
                line: 4,
                column: 11
            }
        );
        assert_eq!(
            ix.value(&[
                k("routes"),
                Seg::Idx(0),
                k("match"),
                k("hosts"),
                Seg::Idx(1)
            ]),
            Pos {
                line: 5,
                column: 25
            }
        );
        // Missing paths fall back to the nearest ancestor.
        assert_eq!(
            ix.value(&[k("routes"), Seg::Idx(0), k("nope")]),
            Pos { line: 4, column: 5 }
        );
        assert_eq!(ix.value(&[k("zzz")]), Pos { line: 1, column: 1 });
        // Block sequences and mappings are located at their first item / key.
        assert_eq!(ix.value(&[k("routes")]), Pos { line: 4, column: 3 });
        assert_eq!(ix.value(&[k("listen")]), Pos { line: 2, column: 3 });
        assert_eq!(ix.value(&[]), Pos { line: 1, column: 1 });
        let ix = PosIndex::build(
            "a: {}
b: []
",
        );
        assert_eq!(ix.value(&[k("a")]), Pos { line: 1, column: 4 });
        assert_eq!(ix.value(&[k("b")]), Pos { line: 2, column: 4 });
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let ix = PosIndex::build("a: \"é\"\nb: \"ü\" # ü\nc: x\n");
        assert_eq!(ix.value(&[k("c")]), Pos { line: 3, column: 4 });
        let ix = PosIndex::build("é: 1\nx: é\n");
        assert_eq!(ix.value(&[k("x")]), Pos { line: 2, column: 4 });
    }

    #[test]
    fn complex_keys_and_broken_input_do_not_panic() {
        let ix = PosIndex::build("? [a, b]\n: c\nd: e\n");
        assert_eq!(ix.value(&[k("d")]), Pos { line: 3, column: 4 });
        let _ = PosIndex::build("a: [\n");
        let _ = PosIndex::build("");
        let _ = PosIndex::build("---\na: 1\n---\nb: 2\n");
    }

    #[test]
    fn display_paths() {
        assert_eq!(
            display(&[k("routes"), Seg::Idx(2), k("credential")]),
            "routes[2].credential"
        );
        assert_eq!(display(&[]), "");
    }
}
