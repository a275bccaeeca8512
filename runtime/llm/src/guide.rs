//! Constrained decoding: a JSON parser driven by a JSON Schema that says,
//! byte by byte, whether an answer can still become a valid document. The
//! local model only emits tokens the guide accepts, so a 135M model produces
//! JSON that parses and has the schema's shape.
//!
//! The subset: `type` (one, or a list), `properties`, `required`,
//! `additionalProperties`, `items`, `minItems`/`maxItems`, `enum` (of
//! strings), `const` (a string), `maxLength`, `anyOf`/`oneOf` whose branches
//! start differently, and local `$ref`s. To make sure generation ends, strings
//! without `maxLength` stop at [`MAX_STRING`] bytes, arrays without `maxItems`
//! at [`MAX_ITEMS`], numbers at 16 characters, and runs of whitespace at 16
//! bytes. Everything the guide lets through is then checked against the full
//! schema by the router.

use serde_json::Value;

/// A JSON Schema the guide cannot follow (the reason is in the message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GuideError(pub String);

impl From<String> for GuideError {
    fn from(message: String) -> Self {
        GuideError(message)
    }
}

impl From<&str> for GuideError {
    fn from(message: &str) -> Self {
        GuideError(message.to_string())
    }
}

pub const MAX_STRING: usize = 400;
pub const MAX_ITEMS: usize = 16;
const MAX_NUMBER: usize = 16;
const MAX_WHITESPACE: usize = 16;

type NodeId = usize;

#[derive(Debug, Clone)]
enum Node {
    Any,
    Object {
        props: Vec<(String, NodeId)>,
        required: Vec<String>,
        /// Node for keys not in `props`, or `None` when they are not allowed.
        additional: Option<NodeId>,
    },
    Array {
        items: NodeId,
        min: usize,
        max: usize,
    },
    String {
        choices: Option<Vec<String>>,
        max: usize,
    },
    Number {
        integer: bool,
    },
    Boolean,
    Null,
    /// Alternatives told apart by their first byte.
    Union(Vec<NodeId>),
}

#[derive(Debug, Clone)]
struct Schema {
    nodes: Vec<Node>,
}

impl Schema {
    fn compile(root: &Value) -> Result<(Schema, NodeId), GuideError> {
        let mut schema = Schema { nodes: Vec::new() };
        let mut refs = Vec::new();
        let id = schema.add(root, root, &mut refs, 0)?;
        Ok((schema, id))
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn add(
        &mut self,
        root: &Value,
        v: &Value,
        refs: &mut Vec<(String, NodeId)>,
        depth: usize,
    ) -> Result<NodeId, GuideError> {
        if depth > 32 {
            return Err(GuideError("schema nests deeper than 32 levels".into()));
        }
        if let Value::Bool(true) = v {
            return Ok(self.push(Node::Any));
        }
        let Some(obj) = v.as_object() else {
            return Err(GuideError(format!("not a schema: {v}")));
        };
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            if let Some((_, id)) = refs.iter().find(|(r, _)| r == reference) {
                return Ok(*id);
            }
            let target = reference
                .strip_prefix('#')
                .and_then(|p| root.pointer(p))
                .ok_or_else(|| format!("$ref {reference} is not a local definition"))?;
            // Reserve the id first so recursive definitions terminate.
            let id = self.push(Node::Any);
            refs.push((reference.to_string(), id));
            let built = self.add(root, target, refs, depth + 1)?;
            self.nodes[id] = self.nodes[built].clone();
            return Ok(id);
        }
        if let Some(value) = obj.get("const") {
            let s = value.as_str().ok_or("only string consts are supported")?;
            return Ok(self.push(Node::String {
                choices: Some(vec![s.to_string()]),
                max: s.len(),
            }));
        }
        if let Some(values) = obj.get("enum").and_then(Value::as_array) {
            let choices: Option<Vec<String>> = values
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect();
            let choices = choices.ok_or("only enums of strings are supported")?;
            let max = choices.iter().map(String::len).max().unwrap_or(0);
            return Ok(self.push(Node::String {
                choices: Some(choices),
                max,
            }));
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = obj.get(key).and_then(Value::as_array) {
                let ids = branches
                    .iter()
                    .map(|b| self.add(root, b, refs, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(self.push(Node::Union(ids)));
            }
        }
        match obj.get("type") {
            Some(Value::Array(types)) => {
                let mut ids = Vec::new();
                for t in types {
                    let mut single = obj.clone();
                    single.insert("type".into(), t.clone());
                    ids.push(self.add(root, &Value::Object(single), refs, depth + 1)?);
                }
                Ok(self.push(Node::Union(ids)))
            }
            Some(Value::String(t)) => self.typed(root, obj, t, refs, depth),
            Some(other) => Err(GuideError(format!("unsupported type {other}"))),
            None if obj.contains_key("properties") => self.typed(root, obj, "object", refs, depth),
            None if obj.contains_key("items") => self.typed(root, obj, "array", refs, depth),
            None => Ok(self.push(Node::Any)),
        }
    }

    fn typed(
        &mut self,
        root: &Value,
        obj: &serde_json::Map<String, Value>,
        t: &str,
        refs: &mut Vec<(String, NodeId)>,
        depth: usize,
    ) -> Result<NodeId, GuideError> {
        let usize_of = |key: &str| obj.get(key).and_then(Value::as_u64).map(|n| n as usize);
        Ok(match t {
            "object" => {
                let mut props = Vec::new();
                if let Some(p) = obj.get("properties").and_then(Value::as_object) {
                    for (name, sub) in p {
                        props.push((name.clone(), self.add(root, sub, refs, depth + 1)?));
                    }
                }
                let required = obj
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| {
                        r.iter()
                            .filter_map(|v| v.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let additional = match obj.get("additionalProperties") {
                    Some(Value::Bool(false)) => None,
                    Some(Value::Bool(true)) => Some(self.push(Node::Any)),
                    Some(sub @ Value::Object(_)) => Some(self.add(root, sub, refs, depth + 1)?),
                    // Unset: other keys are allowed by JSON Schema, but a
                    // model is better kept to the declared ones when there
                    // are any.
                    _ if props.is_empty() => Some(self.push(Node::Any)),
                    _ => None,
                };
                self.push(Node::Object {
                    props,
                    required,
                    additional,
                })
            }
            "array" => {
                let items = match obj.get("items") {
                    Some(sub) => self.add(root, sub, refs, depth + 1)?,
                    None => self.push(Node::Any),
                };
                let min = usize_of("minItems").unwrap_or(0);
                let max = usize_of("maxItems").unwrap_or(MAX_ITEMS.max(min));
                self.push(Node::Array { items, min, max })
            }
            "string" => {
                let max = usize_of("maxLength").unwrap_or(MAX_STRING);
                self.push(Node::String { choices: None, max })
            }
            "integer" => self.push(Node::Number { integer: true }),
            "number" => self.push(Node::Number { integer: false }),
            "boolean" => self.push(Node::Boolean),
            "null" => self.push(Node::Null),
            other => return Err(GuideError(format!("unsupported type {other:?}"))),
        })
    }
}

/// Where the parser is.
#[derive(Debug, Clone)]
enum Frame {
    /// A value of `node` starts here (after optional whitespace).
    Value(NodeId),
    /// Inside `{ }`.
    Object {
        node: NodeId,
        seen: Vec<String>,
        state: ObjState,
    },
    /// Inside `[ ]`.
    Array {
        node: NodeId,
        count: usize,
        /// Whether a value may start (just after `[` or `,`).
        after_comma: bool,
    },
    /// Inside a string value.
    Str {
        node: NodeId,
        text: Vec<u8>,
        escape: bool,
    },
    /// Inside an object key.
    Key {
        object: NodeId,
        text: Vec<u8>,
        escape: bool,
    },
    Number {
        integer: bool,
        text: Vec<u8>,
    },
    /// The rest of `true`, `false` or `null`.
    Literal(&'static [u8]),
}

#[derive(Debug, Clone, PartialEq)]
enum ObjState {
    /// After `{` or `,`: a key (or `}` right after `{`).
    KeyOrEnd { first: bool },
    /// After a key: `:`.
    Colon(String),
    /// After a value: `,` or `}`.
    CommaOrEnd,
}

/// The guide for one answer.
#[derive(Debug, Clone)]
pub struct Guide {
    schema: std::sync::Arc<Schema>,
    stack: Vec<Frame>,
    done: bool,
    whitespace: usize,
}

impl Guide {
    pub fn new(schema: &Value) -> Result<Guide, GuideError> {
        let (schema, root) = Schema::compile(schema)?;
        Ok(Guide {
            schema: std::sync::Arc::new(schema),
            stack: vec![Frame::Value(root)],
            done: false,
            whitespace: 0,
        })
    }

    /// Whether the document is complete (only whitespace may follow).
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// Whether appending `bytes` keeps the answer a valid prefix.
    pub fn accepts(&self, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        let mut probe = self.clone();
        bytes.iter().all(|&b| probe.step(b))
    }

    /// Appends `bytes` (which `accepts` allowed).
    pub fn advance(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if !self.step(b) {
                return;
            }
        }
    }

    /// The shortest bytes that would complete the document from here, when
    /// generation must stop early: open strings closed, missing required
    /// keys given minimal values, containers closed. `None` if there is no
    /// such ending (a required key the guide cannot name, say).
    pub fn closing(&self) -> Option<Vec<u8>> {
        let mut g = self.clone();
        let mut out = Vec::new();
        for _ in 0..4096 {
            if g.done {
                return Some(out);
            }
            if let Some(Frame::Number { text, .. }) = g.stack.last() {
                if text.last().is_some_and(u8::is_ascii_digit) {
                    // The number is whole; it ends where its container goes on.
                    g.end_number();
                    continue;
                }
                if !g.step(b'0') {
                    return None;
                }
                out.push(b'0');
                continue;
            }
            for b in g.closing_bytes()? {
                if !g.step(b) {
                    return None;
                }
                out.push(b);
            }
        }
        None
    }

    /// The next few bytes towards the end, for the frame on top.
    fn closing_bytes(&self) -> Option<Vec<u8>> {
        let quoted = |s: &str| format!("\"{s}\"").into_bytes();
        match self.stack.last()? {
            Frame::Value(node) => Some(self.minimal_value(*node)),
            Frame::Literal(rest) => Some(rest.to_vec()),
            Frame::Number { .. } => None,
            Frame::Str { escape: true, .. } | Frame::Key { escape: true, .. } => {
                Some(b"n".to_vec())
            }
            Frame::Str { text, .. } | Frame::Key { text, .. } if utf8_pending(text) => {
                // Finish the character the model began: the document must
                // stay valid UTF-8.
                (0x80..=0xBF)
                    .find(|&b| utf8_continues(text, b))
                    .map(|b| vec![b])
            }
            Frame::Str { node, text, .. } => match self.node(*node) {
                Node::String {
                    choices: Some(choices),
                    ..
                } => {
                    let choice = choices.iter().find(|c| c.as_bytes().starts_with(text))?;
                    let mut rest = choice.as_bytes()[text.len()..].to_vec();
                    rest.push(b'"');
                    Some(rest)
                }
                _ => Some(b"\"".to_vec()),
            },
            Frame::Key { object, text, .. } => {
                let seen = match self.stack.iter().rev().nth(1) {
                    Some(Frame::Object { seen, .. }) => seen.clone(),
                    _ => Vec::new(),
                };
                let (keys, open) = self.open_keys(*object, &seen);
                match keys.iter().find(|k| k.as_bytes().starts_with(text)) {
                    Some(key) => {
                        let mut rest = key.as_bytes()[text.len()..].to_vec();
                        rest.push(b'"');
                        Some(rest)
                    }
                    None if open && !text.is_empty() => Some(b"\"".to_vec()),
                    None => None,
                }
            }
            Frame::Object { node, seen, state } => {
                let missing = match self.node(*node) {
                    Node::Object { required, .. } => {
                        required.iter().find(|r| !seen.contains(r)).cloned()
                    }
                    _ => None,
                };
                match (state, missing) {
                    (ObjState::Colon(_), _) => Some(b":".to_vec()),
                    (ObjState::KeyOrEnd { .. }, Some(key)) => Some(quoted(&key)),
                    (ObjState::KeyOrEnd { first: true }, None) => Some(b"}".to_vec()),
                    (ObjState::KeyOrEnd { first: false }, None) => {
                        let (keys, _) = self.open_keys(*node, seen);
                        keys.first().map(|k| quoted(k))
                    }
                    (ObjState::CommaOrEnd, Some(_)) => Some(b",".to_vec()),
                    (ObjState::CommaOrEnd, None) => Some(b"}".to_vec()),
                }
            }
            Frame::Array {
                node,
                count,
                after_comma,
            } => {
                let (items, min) = match self.node(*node) {
                    Node::Array { items, min, .. } => (*items, *min),
                    _ => (*node, 0),
                };
                Some(match (after_comma, *count >= min) {
                    (true, true) if *count == 0 => b"]".to_vec(),
                    (true, _) => self.minimal_value(items),
                    (false, true) => b"]".to_vec(),
                    (false, false) => b",".to_vec(),
                })
            }
        }
    }

    /// The opening of the shortest value of `node` (containers are closed
    /// by later steps).
    fn minimal_value(&self, node: NodeId) -> Vec<u8> {
        match self.node(node) {
            Node::Union(ids) => ids
                .first()
                .map(|id| self.minimal_value(*id))
                .unwrap_or_default(),
            Node::Any | Node::Number { .. } => b"0".to_vec(),
            Node::Object { .. } => b"{".to_vec(),
            Node::Array { .. } => b"[".to_vec(),
            Node::String {
                choices: Some(choices),
                ..
            } => format!(
                "\"{}\"",
                choices.first().map(String::as_str).unwrap_or_default()
            )
            .into_bytes(),
            Node::String { .. } => b"\"\"".to_vec(),
            Node::Boolean => b"false".to_vec(),
            Node::Null => b"null".to_vec(),
        }
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.schema.nodes[id]
    }

    fn space(&mut self, b: u8) -> bool {
        if matches!(b, b' ' | b'\n' | b'\t' | b'\r') && self.whitespace < MAX_WHITESPACE {
            self.whitespace += 1;
            true
        } else {
            false
        }
    }

    /// Feeds one byte; false when it cannot be part of a valid answer.
    fn step(&mut self, b: u8) -> bool {
        if b.is_ascii_whitespace() {
            // Whitespace is only free between tokens of the document.
            let between = self.done
                || matches!(
                    self.stack.last(),
                    Some(Frame::Value(_) | Frame::Object { .. } | Frame::Array { .. })
                );
            if between {
                return self.space(b);
            }
            if matches!(self.stack.last(), Some(Frame::Number { .. })) {
                return self.end_number() && self.step(b);
            }
        }
        if self.done {
            return false;
        }
        let Some(top) = self.stack.pop() else {
            return false;
        };
        let ok = match top {
            Frame::Value(node) => self.start_value(node, b),
            Frame::Literal(rest) => {
                if rest.first() == Some(&b) {
                    if rest.len() > 1 {
                        self.stack.push(Frame::Literal(&rest[1..]));
                    } else {
                        self.finish_value();
                    }
                    true
                } else {
                    false
                }
            }
            Frame::Str { node, text, escape } => self.in_string(node, text, escape, b),
            Frame::Key {
                object,
                text,
                escape,
            } => self.in_key(object, text, escape, b),
            Frame::Number { integer, mut text } => {
                if number_continues(integer, &text, b) {
                    text.push(b);
                    self.stack.push(Frame::Number { integer, text });
                    true
                } else {
                    // The number ended; this byte belongs to its container.
                    self.stack.push(Frame::Number { integer, text });
                    self.end_number() && self.step(b)
                }
            }
            Frame::Object { node, seen, state } => self.in_object(node, seen, state, b),
            Frame::Array {
                node,
                count,
                after_comma,
            } => self.in_array(node, count, after_comma, b),
        };
        if ok {
            self.whitespace = 0;
        }
        ok
    }

    fn start_value(&mut self, node: NodeId, b: u8) -> bool {
        match self.node(node).clone() {
            Node::Union(ids) => ids.into_iter().any(|id| {
                let mut probe = self.clone();
                if probe.start_value(id, b) {
                    *self = probe;
                    true
                } else {
                    false
                }
            }),
            Node::Any => match b {
                b'{' => self.open_object(node),
                b'[' => self.open_array(node),
                b'"' => self.open_string(node),
                b't' => self.literal(b"rue"),
                b'f' => self.literal(b"alse"),
                b'n' => self.literal(b"ull"),
                b'-' | b'0'..=b'9' => self.open_number(false, b),
                _ => false,
            },
            Node::Object { .. } => b == b'{' && self.open_object(node),
            Node::Array { .. } => b == b'[' && self.open_array(node),
            Node::String { .. } => b == b'"' && self.open_string(node),
            Node::Number { integer } => {
                matches!(b, b'-' | b'0'..=b'9') && self.open_number(integer, b)
            }
            Node::Boolean => match b {
                b't' => self.literal(b"rue"),
                b'f' => self.literal(b"alse"),
                _ => false,
            },
            Node::Null => b == b'n' && self.literal(b"ull"),
        }
    }

    fn literal(&mut self, rest: &'static [u8]) -> bool {
        self.stack.push(Frame::Literal(rest));
        true
    }

    fn open_object(&mut self, node: NodeId) -> bool {
        self.stack.push(Frame::Object {
            node,
            seen: Vec::new(),
            state: ObjState::KeyOrEnd { first: true },
        });
        true
    }

    fn open_array(&mut self, node: NodeId) -> bool {
        self.stack.push(Frame::Array {
            node,
            count: 0,
            after_comma: true,
        });
        true
    }

    fn open_string(&mut self, node: NodeId) -> bool {
        self.stack.push(Frame::Str {
            node,
            text: Vec::new(),
            escape: false,
        });
        true
    }

    fn open_number(&mut self, integer: bool, b: u8) -> bool {
        self.stack.push(Frame::Number {
            integer,
            text: vec![b],
        });
        true
    }

    fn end_number(&mut self) -> bool {
        match self.stack.pop() {
            Some(Frame::Number { text, .. }) => {
                let complete = text.last().is_some_and(u8::is_ascii_digit);
                if complete {
                    self.finish_value();
                }
                complete
            }
            _ => false,
        }
    }

    /// A value just ended: its container moves on, or the document is done.
    fn finish_value(&mut self) {
        match self.stack.last_mut() {
            None => self.done = true,
            Some(Frame::Object { state, .. }) => *state = ObjState::CommaOrEnd,
            Some(Frame::Array {
                count, after_comma, ..
            }) => {
                *count += 1;
                *after_comma = false;
            }
            Some(_) => {}
        }
    }

    fn in_string(&mut self, node: NodeId, mut text: Vec<u8>, escape: bool, b: u8) -> bool {
        let (choices, max) = match self.node(node) {
            Node::String { choices, max } => (choices.clone(), *max),
            _ => (None, MAX_STRING),
        };
        if escape {
            if !is_escape(b) || choices.is_some() {
                return false;
            }
            text.extend_from_slice(&[b'\\', b]);
            if char_len(&text) > max {
                return false;
            }
            self.stack.push(Frame::Str {
                node,
                text,
                escape: false,
            });
            return true;
        }
        if !utf8_continues(&text, b) {
            return false;
        }
        if b == b'"' {
            let ok = match &choices {
                Some(c) => c.iter().any(|s| s.as_bytes() == text.as_slice()),
                None => true,
            };
            if ok {
                self.finish_value();
            }
            return ok;
        }
        if b < 0x20 {
            return false;
        }
        if b == b'\\' {
            // An escape is one more character: there must be room for it.
            if choices.is_some() || char_len(&text) >= max {
                return false;
            }
            self.stack.push(Frame::Str {
                node,
                text,
                escape: true,
            });
            return true;
        }
        text.push(b);
        let ok = match &choices {
            Some(c) => c.iter().any(|s| s.as_bytes().starts_with(&text)),
            None => char_len(&text) <= max,
        };
        if ok {
            self.stack.push(Frame::Str {
                node,
                text,
                escape: false,
            });
        }
        ok
    }

    /// Keys this object may still take.
    fn open_keys(&self, object: NodeId, seen: &[String]) -> (Vec<String>, bool) {
        match self.node(object) {
            Node::Object {
                props, additional, ..
            } => (
                props
                    .iter()
                    .map(|(k, _)| k.clone())
                    .filter(|k| !seen.contains(k))
                    .collect(),
                additional.is_some(),
            ),
            _ => (Vec::new(), true),
        }
    }

    fn in_key(&mut self, object: NodeId, mut text: Vec<u8>, escape: bool, b: u8) -> bool {
        let seen = match self.stack.last() {
            Some(Frame::Object { seen, .. }) => seen.clone(),
            _ => Vec::new(),
        };
        let (keys, open) = self.open_keys(object, &seen);
        if escape {
            if !open || !is_escape(b) {
                return false;
            }
            text.extend_from_slice(&[b'\\', b]);
            self.stack.push(Frame::Key {
                object,
                text,
                escape: false,
            });
            return true;
        }
        if !utf8_continues(&text, b) {
            return false;
        }
        if b == b'"' {
            let key = String::from_utf8_lossy(&text).into_owned();
            let ok = (keys.contains(&key) || open && !seen.contains(&key) && !key.is_empty())
                && !seen.contains(&key);
            if ok && let Some(Frame::Object { state, .. }) = self.stack.last_mut() {
                *state = ObjState::Colon(key);
            }
            return ok;
        }
        if b < 0x20 || (b == b'\\' && !open) {
            return false;
        }
        if b == b'\\' {
            self.stack.push(Frame::Key {
                object,
                text,
                escape: true,
            });
            return true;
        }
        text.push(b);
        let ok = text.len() <= MAX_STRING
            && (open || keys.iter().any(|k| k.as_bytes().starts_with(&text)));
        if ok {
            self.stack.push(Frame::Key {
                object,
                text,
                escape: false,
            });
        }
        ok
    }

    fn in_object(&mut self, node: NodeId, seen: Vec<String>, state: ObjState, b: u8) -> bool {
        let (keys, open) = self.open_keys(node, &seen);
        let required_met = match self.node(node) {
            Node::Object { required, .. } => required.iter().all(|r| seen.contains(r)),
            _ => true,
        };
        match state {
            ObjState::KeyOrEnd { first } => {
                if b == b'}' && first && required_met {
                    self.finish_value();
                    return true;
                }
                if b == b'"' && (!keys.is_empty() || open) {
                    self.stack.push(Frame::Object {
                        node,
                        seen,
                        state: ObjState::KeyOrEnd { first },
                    });
                    self.stack.push(Frame::Key {
                        object: node,
                        text: Vec::new(),
                        escape: false,
                    });
                    return true;
                }
                false
            }
            ObjState::Colon(key) => {
                if b != b':' {
                    return false;
                }
                let value_node = match self.node(node) {
                    Node::Object {
                        props, additional, ..
                    } => props
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, id)| *id)
                        .or(*additional),
                    // An untyped object: its values are untyped too.
                    _ => Some(node),
                };
                let Some(value_node) = value_node else {
                    return false;
                };
                let mut seen = seen;
                seen.push(key);
                self.stack.push(Frame::Object {
                    node,
                    seen,
                    state: ObjState::CommaOrEnd,
                });
                self.stack.push(Frame::Value(value_node));
                true
            }
            ObjState::CommaOrEnd => match b {
                b',' if !keys.is_empty() || open => {
                    self.stack.push(Frame::Object {
                        node,
                        seen,
                        state: ObjState::KeyOrEnd { first: false },
                    });
                    true
                }
                b'}' if required_met => {
                    self.finish_value();
                    true
                }
                _ => false,
            },
        }
    }

    fn in_array(&mut self, node: NodeId, count: usize, after_comma: bool, b: u8) -> bool {
        let (items, min, max) = match self.node(node) {
            Node::Array { items, min, max } => (*items, *min, *max),
            // An untyped array: its items are untyped too.
            _ => (node, 0, MAX_ITEMS),
        };
        if after_comma {
            if b == b']' && count == 0 && min == 0 {
                self.finish_value();
                return true;
            }
            if count >= max {
                return false;
            }
            self.stack.push(Frame::Array {
                node,
                count,
                after_comma: true,
            });
            // The value's frame is pushed by start_value; on failure, undo.
            let depth = self.stack.len();
            if self.start_value(items, b) {
                return true;
            }
            self.stack.truncate(depth - 1);
            return false;
        }
        match b {
            b',' if count < max => {
                self.stack.push(Frame::Array {
                    node,
                    count,
                    after_comma: true,
                });
                true
            }
            b']' if count >= min => {
                self.finish_value();
                true
            }
            _ => false,
        }
    }
}

/// Whether `b` is a JSON escape the guide allows after a backslash (not
/// `\u`: a model that wants a character writes it as UTF-8).
fn is_escape(b: u8) -> bool {
    matches!(b, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')
}

/// The start of the UTF-8 sequence `text` ends in (its last lead byte).
fn last_sequence(text: &[u8]) -> &[u8] {
    let start = text.iter().rposition(|&c| c & 0xC0 != 0x80).unwrap_or(0);
    &text[start..]
}

/// Whether `text` + `b` is still a prefix of valid UTF-8, given that `text`
/// is: a token may end in the middle of a character, but no token may add a
/// stray continuation byte, an overlong form or a surrogate.
fn utf8_continues(text: &[u8], b: u8) -> bool {
    let mut seq = last_sequence(text).to_vec();
    seq.push(b);
    match std::str::from_utf8(&seq) {
        Ok(_) => true,
        // Incomplete at the end, but nothing invalid so far.
        Err(e) => e.error_len().is_none(),
    }
}

/// Whether `text` ends inside a multi-byte character.
fn utf8_pending(text: &[u8]) -> bool {
    std::str::from_utf8(last_sequence(text)).is_err()
}

/// Characters in a JSON string's raw text, as `maxLength` counts them: an
/// escape is one, a UTF-8 sequence is one.
fn char_len(text: &[u8]) -> usize {
    let mut count = 0;
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\\' {
            i += 2;
            count += 1;
        } else {
            if text[i] & 0xC0 != 0x80 {
                count += 1;
            }
            i += 1;
        }
    }
    count
}

/// Whether `b` continues a number that so far reads `text`.
fn number_continues(integer: bool, text: &[u8], b: u8) -> bool {
    if text.len() >= MAX_NUMBER {
        return false;
    }
    let has_dot = text.contains(&b'.');
    let has_exp = text.iter().any(|c| matches!(c, b'e' | b'E'));
    let after_digit = text.last().is_some_and(u8::is_ascii_digit);
    match b {
        // No leading zeros: `0` and `-0` take no more digits.
        b'0'..=b'9' => !(text == b"0" || text == b"-0"),
        b'.' => !integer && !has_dot && !has_exp && after_digit,
        b'e' | b'E' => !integer && !has_exp && after_digit,
        b'-' | b'+' => matches!(text.last(), Some(b'e' | b'E')),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guide(schema: Value) -> Guide {
        Guide::new(&schema).unwrap()
    }

    /// Feeds `text` and says whether every byte was accepted and the document
    /// is complete.
    fn complete(g: &Guide, text: &str) -> bool {
        let mut g = g.clone();
        for b in text.bytes() {
            if !g.accepts(&[b]) {
                return false;
            }
            g.advance(&[b]);
        }
        g.is_complete()
    }

    fn prefix_ok(g: &Guide, text: &str) -> bool {
        g.accepts(text.as_bytes())
    }

    fn task_list() -> Value {
        json!({
            "type": "object",
            "properties": {
                "tasks": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string", "maxLength": 20},
                            "role": {"enum": ["coder", "tester", "reviewer"]},
                            "depends_on": {"type": "array", "items": {"type": "string"}},
                            "priority": {"type": "integer"}
                        },
                        "required": ["id", "role"],
                        "additionalProperties": false
                    }
                }
            },
            "required": ["tasks"],
            "additionalProperties": false
        })
    }

    #[test]
    fn accepts_valid_documents() {
        let g = guide(task_list());
        assert!(complete(
            &g,
            r#"{"tasks": [{"id": "t1", "role": "coder", "priority": 2}]}"#
        ));
        assert!(complete(
            &g,
            "{\n  \"tasks\": [\n    {\"id\": \"a\", \"role\": \"tester\", \"depends_on\": [\"t1\"]}\n  ]\n}"
        ));
    }

    #[test]
    fn rejects_what_the_schema_forbids() {
        let g = guide(task_list());
        assert!(!prefix_ok(&g, "["), "root must be an object");
        assert!(!prefix_ok(&g, r#"{"task"#) || !complete(&g, r#"{"task": 1}"#));
        assert!(
            !prefix_ok(&g, r#"{"tasks": [{"id": "a", "role": "cook""#),
            "role outside enum"
        );
        assert!(!complete(&g, r#"{"tasks": []}"#), "minItems 1");
        assert!(
            !complete(&g, r#"{"tasks": [{"role": "coder"}]}"#),
            "id is required"
        );
        assert!(
            !prefix_ok(&g, r#"{"tasks": [{"id": "a", "extra"#),
            "no additional properties"
        );
        assert!(
            !prefix_ok(&g, r#"{"tasks": [{"id": "a", "id""#),
            "no duplicate keys"
        );
        assert!(
            !prefix_ok(
                &g,
                r#"{"tasks": [{"id": "a", "role": "coder", "priority": 1.5"#
            ),
            "integer"
        );
        assert!(!prefix_ok(&g, r#"{"tasks": [{"id": 5"#), "id is a string");
    }

    #[test]
    fn generation_must_end() {
        let g = guide(json!({"type": "string"}));
        let long = format!("\"{}", "a".repeat(MAX_STRING));
        assert!(prefix_ok(&g, &long));
        assert!(!prefix_ok(&g, &format!("{long}a")));
        let g = guide(json!({"type": "array", "items": {"type": "integer"}}));
        let many = format!("[{}", vec!["1"; MAX_ITEMS].join(","));
        assert!(prefix_ok(&g, &many));
        assert!(!prefix_ok(&g, &format!("{many},")));
        let g = guide(json!({"type": "object"}));
        assert!(prefix_ok(&g, &format!("{{{}", " ".repeat(MAX_WHITESPACE))));
        assert!(!prefix_ok(
            &g,
            &format!("{{{}", " ".repeat(MAX_WHITESPACE + 1))
        ));
    }

    #[test]
    fn unions_refs_and_literals() {
        let g = guide(json!({"type": ["string", "null"]}));
        assert!(complete(&g, "null"));
        assert!(complete(&g, "\"x\""));
        assert!(!prefix_ok(&g, "1"));
        let g = guide(json!({
            "$defs": {"Step": {"type": "object", "properties": {"done": {"type": "boolean"}}, "required": ["done"]}},
            "type": "array",
            "items": {"$ref": "#/$defs/Step"}
        }));
        assert!(complete(&g, r#"[{"done": true}, {"done": false}]"#));
        assert!(!prefix_ok(&g, r#"[{"done": tru3"#));
        let g = guide(json!({}));
        assert!(complete(
            &g,
            r#"{"anything": [1, -2.5e3, "x", null, {"nested": false}]}"#
        ));
    }

    #[test]
    fn numbers_end_at_the_container() {
        let g = guide(
            json!({"type": "object", "properties": {"n": {"type": "number"}, "m": {"type": "integer"}}}),
        );
        assert!(complete(&g, r#"{"n": 12.5, "m": -3}"#));
        assert!(complete(&g, r#"{"n":0}"#));
        assert!(!prefix_ok(&g, r#"{"n": 01"#));
    }

    #[test]
    fn max_length_counts_characters_not_bytes() {
        let g = guide(json!({"type": "string", "maxLength": 3}));
        assert!(complete(&g, "\"héé\""), "three characters, five bytes");
        assert!(complete(&g, r#""a\nb""#), "an escape is one character");
        assert!(!prefix_ok(&g, "\"abcd"));
        assert!(
            !prefix_ok(&g, r#""ab\t\"#),
            "no room for a fourth character"
        );
        assert!(!prefix_ok(&g, r#""abc\"#), "no room for an escape");
    }

    /// A regression: a model once wrote lone continuation bytes, which
    /// counted as no characters and broke both UTF-8 and `maxLength`.
    #[test]
    fn strings_stay_valid_utf8() {
        let mut g = guide(json!({"type": "string", "maxLength": 2}));
        assert!(g.accepts(b"\"a"));
        assert!(!g.accepts(b"\"a\x80"), "a continuation byte with no lead");
        assert!(!g.accepts(b"\"\xC0\xAF"), "an overlong form");
        assert!(!g.accepts(b"\"\xED\xA0\x80"), "a surrogate");
        assert!(!g.accepts(b"\"\xC3\""), "a character cut off by the quote");
        assert!(g.accepts("\"é".as_bytes()));
        assert!(!g.accepts("\"ééé".as_bytes()), "three characters");
        g.advance(b"\"a\xE2\x82");
        let tail = g.closing().expect("a closing");
        let mut doc = b"\"a\xE2\x82".to_vec();
        doc.extend(tail);
        let text = String::from_utf8(doc).expect("valid UTF-8");
        assert_eq!(text.chars().count(), 4, "{text}");
        let keys = guide(json!({"type": "object"}));
        assert!(!keys.accepts(b"{\"\x80"), "keys too");
        assert!(!keys.accepts(b"{\"a\\x"), "no unknown escapes in keys");
    }

    /// Every prefix of a valid document can be closed, and the closed
    /// document passes the full schema.
    #[test]
    fn closing_completes_any_prefix_validly() {
        let schema = task_list();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let g = guide(schema);
        let doc = r#"{"tasks": [{"id": "t1", "role": "tester", "depends_on": ["a", "b"], "priority": -12}, {"id": "t2", "role": "coder"}]}"#;
        for end in 0..doc.len() {
            let mut prefix = g.clone();
            prefix.advance(&doc.as_bytes()[..end]);
            let tail = prefix
                .closing()
                .unwrap_or_else(|| panic!("no closing after {:?}", &doc[..end]));
            let closed = format!("{}{}", &doc[..end], String::from_utf8(tail).unwrap());
            let value: Value =
                serde_json::from_str(&closed).unwrap_or_else(|e| panic!("{closed}: {e}"));
            assert!(
                validator.is_valid(&value),
                "{closed} does not match the schema"
            );
        }
    }
}
