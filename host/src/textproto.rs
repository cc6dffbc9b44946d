//! A small reader for protobuf's text format, the format of TF Serving's
//! `--model_config_file` and `--batching_parameters_file`.
//!
//! It is schema-less: it turns text into a tree of named fields and leaves
//! the meaning of each field (and any type checks) to the caller. That keeps
//! it reusable for every TF Serving config file without generated code.
//!
//! Accepted syntax:
//!
//! - `name: value` and `name value` for scalars; `name { ... }`,
//!   `name: { ... }` and `name < ... >` for messages;
//! - scalars: identifiers and numbers (`true`, `latest`, `-3`, `1.5e3`,
//!   `0x1f`), and strings in `"..."` or `'...'` with C escapes (`\n`, `\t`,
//!   `\\`, `\"`, `\'`, `\xHH`, octal `\ooo`); adjacent strings concatenate;
//! - lists: `name: [1, 2, 3]` or `name [{ ... }, { ... }]`, read as one field
//!   per element, exactly like repeating the field;
//! - `#` comments to the end of the line, and optional `,` or `;` after
//!   each field.
//!
//! Errors carry the line and column (both from 1) where the text stops
//! making sense.

use std::fmt;

/// A message: its fields in file order. A repeated field appears once per
/// value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub fields: Vec<(String, Value)>,
}

/// A field's value: a scalar, kept as written (strings unescaped), or a
/// nested message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Scalar(String),
    Message(Message),
}

impl Message {
    /// The field `name`; if it is given more than once, the last value, as
    /// protobuf does for a singular field.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every value of the field `name`, in file order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Scalar(s) => Some(s),
            Value::Message(_) => None,
        }
    }

    /// A non-negative integer, decimal or `0x` hexadecimal.
    pub fn as_u64(&self) -> Option<u64> {
        let s = self.as_str()?;
        let s = s.strip_prefix('+').unwrap_or(s);
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => s.parse().ok(),
        }
    }

    /// `true`/`false` as protobuf's text format spells them (also `t`/`f`,
    /// `True`/`False`, `1`/`0`).
    pub fn as_bool(&self) -> Option<bool> {
        match self.as_str()? {
            "true" | "True" | "t" | "1" => Some(true),
            "false" | "False" | "f" | "0" => Some(false),
            _ => None,
        }
    }

    pub fn as_message(&self) -> Option<&Message> {
        match self {
            Value::Message(m) => Some(m),
            Value::Scalar(_) => None,
        }
    }
}

/// Where and why the text could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses a whole text-format document as the fields of one top-level message.
pub fn parse(text: &str) -> Result<Message, ParseError> {
    let mut parser = Parser {
        lexer: Lexer::new(text),
        peeked: None,
    };
    let message = parser.fields(None)?;
    Ok(message)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// Identifier or number: anything unquoted that is not punctuation.
    Word(String),
    Str(String),
    Punct(char),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("`{w}`"),
            Token::Str(_) => "a string".into(),
            Token::Punct(c) => format!("`{c}`"),
            Token::End => "the end of the text".into(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pos {
    line: usize,
    column: usize,
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

fn error_at(pos: Pos, message: impl Into<String>) -> ParseError {
    ParseError {
        line: pos.line,
        column: pos.column,
        message: message.into(),
    }
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            pos: Pos { line: 1, column: 1 },
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.column = 1;
        } else {
            self.pos.column += 1;
        }
        Some(c)
    }

    fn skip_blank(&mut self) {
        while let Some(&c) = self.chars.peek() {
            if c == '#' {
                while self.chars.peek().is_some_and(|&c| c != '\n') {
                    self.bump();
                }
            } else if c.is_whitespace() {
                self.bump();
            } else {
                break;
            }
        }
    }

    /// The next token and where it starts.
    fn next(&mut self) -> Result<(Token, Pos), ParseError> {
        self.skip_blank();
        let start = self.pos;
        let Some(&c) = self.chars.peek() else {
            return Ok((Token::End, start));
        };
        let token = match c {
            '{' | '}' | '<' | '>' | ':' | ',' | ';' | '[' | ']' => {
                self.bump();
                Token::Punct(c)
            }
            '"' | '\'' => {
                let mut s = self.string()?;
                // Adjacent strings concatenate, as in C and protobuf.
                loop {
                    self.skip_blank();
                    match self.chars.peek() {
                        Some('"' | '\'') => s.push_str(&self.string()?),
                        _ => break,
                    }
                }
                Token::Str(s)
            }
            c if is_word_char(c) => {
                let mut w = String::new();
                while let Some(&c) = self.chars.peek() {
                    if !is_word_char(c) {
                        break;
                    }
                    w.push(c);
                    self.bump();
                }
                Token::Word(w)
            }
            other => {
                return Err(error_at(start, format!("unexpected character {other:?}")));
            }
        };
        Ok((token, start))
    }

    /// A quoted string, unescaped. Starts at the opening quote.
    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let Some(quote) = self.bump() else {
            return Err(error_at(start, "expected a string"));
        };
        let mut bytes = Vec::new();
        loop {
            let at = self.pos;
            let Some(c) = self.bump() else {
                return Err(error_at(start, "string is not closed"));
            };
            match c {
                '\n' => return Err(error_at(start, "string is not closed on its line")),
                c if c == quote => break,
                '\\' => {
                    let Some(e) = self.bump() else {
                        return Err(error_at(start, "string is not closed"));
                    };
                    match e {
                        'n' => bytes.push(b'\n'),
                        't' => bytes.push(b'\t'),
                        'r' => bytes.push(b'\r'),
                        'a' => bytes.push(0x07),
                        'b' => bytes.push(0x08),
                        'f' => bytes.push(0x0c),
                        'v' => bytes.push(0x0b),
                        '\\' | '\'' | '"' | '?' => bytes.push(e as u8),
                        'x' | 'X' => {
                            let mut value = 0u32;
                            let mut digits = 0;
                            while digits < 2 {
                                match self.chars.peek().and_then(|c| c.to_digit(16)) {
                                    Some(d) => {
                                        value = value * 16 + d;
                                        digits += 1;
                                        self.bump();
                                    }
                                    None => break,
                                }
                            }
                            if digits == 0 {
                                return Err(error_at(at, "\\x needs hexadecimal digits"));
                            }
                            bytes.push(value as u8);
                        }
                        '0'..='7' => {
                            let mut value = e.to_digit(8).unwrap_or_default();
                            for _ in 0..2 {
                                match self.chars.peek().and_then(|c| c.to_digit(8)) {
                                    Some(d) => {
                                        value = value * 8 + d;
                                        self.bump();
                                    }
                                    None => break,
                                }
                            }
                            if value > 0xff {
                                return Err(error_at(at, "octal escape is larger than \\377"));
                            }
                            bytes.push(value as u8);
                        }
                        other => {
                            return Err(error_at(at, format!("unknown escape \\{other}")));
                        }
                    }
                }
                c => {
                    let mut buf = [0u8; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        String::from_utf8(bytes).map_err(|_| error_at(start, "string is not valid UTF-8"))
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.')
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<(Token, Pos)>,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&(Token, Pos), ParseError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next()?);
        }
        // Just filled above.
        self.peeked
            .as_ref()
            .ok_or_else(|| error_at(self.lexer.pos, "internal parser error"))
    }

    fn next(&mut self) -> Result<(Token, Pos), ParseError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lexer.next(),
        }
    }

    /// Fields up to `close` (or the end of the text for the top level).
    fn fields(&mut self, close: Option<(char, Pos)>) -> Result<Message, ParseError> {
        let mut message = Message::default();
        loop {
            let (token, pos) = self.next()?;
            let name = match token {
                Token::End => match close {
                    None => return Ok(message),
                    Some((c, open)) => {
                        return Err(error_at(
                            pos,
                            format!(
                                "missing `{c}` to close the message opened at {}:{}",
                                open.line, open.column
                            ),
                        ));
                    }
                },
                Token::Punct(c) if Some(c) == close.map(|(c, _)| c) => return Ok(message),
                Token::Word(w) if is_field_name(&w) => w,
                other => {
                    return Err(error_at(
                        pos,
                        format!("expected a field name, found {}", other.describe()),
                    ));
                }
            };
            let colon = matches!(self.peek()?.0, Token::Punct(':'));
            if colon {
                self.next()?;
            }
            let (token, pos) = self.next()?;
            match token {
                Token::Punct('[') => {
                    self.list(&name, &mut message, pos)?;
                }
                token => {
                    let value = self.value(token, pos, colon, &name)?;
                    message.fields.push((name, value));
                }
            }
            if matches!(self.peek()?.0, Token::Punct(',' | ';')) {
                self.next()?;
            }
        }
    }

    /// One value whose first token is `token`.
    fn value(
        &mut self,
        token: Token,
        pos: Pos,
        colon: bool,
        name: &str,
    ) -> Result<Value, ParseError> {
        match token {
            Token::Punct('{') => Ok(Value::Message(self.fields(Some(('}', pos)))?)),
            Token::Punct('<') => Ok(Value::Message(self.fields(Some(('>', pos)))?)),
            Token::Word(w) if colon => Ok(Value::Scalar(w)),
            Token::Str(s) if colon => Ok(Value::Scalar(s)),
            Token::Word(_) | Token::Str(_) => Err(error_at(
                pos,
                format!("expected `:` after the field name `{name}`"),
            )),
            other => Err(error_at(
                pos,
                format!("expected a value for `{name}`, found {}", other.describe()),
            )),
        }
    }

    /// `[a, b, ...]` after its `[`: one field per element.
    fn list(&mut self, name: &str, message: &mut Message, open: Pos) -> Result<(), ParseError> {
        if matches!(self.peek()?.0, Token::Punct(']')) {
            self.next()?;
            return Ok(());
        }
        loop {
            let (token, pos) = self.next()?;
            if token == Token::End {
                return Err(error_at(
                    pos,
                    format!(
                        "missing `]` to close the list opened at {}:{}",
                        open.line, open.column
                    ),
                ));
            }
            let value = self.value(token, pos, true, name)?;
            message.fields.push((name.to_string(), value));
            let (token, pos) = self.next()?;
            match token {
                Token::Punct(',') => {}
                Token::Punct(']') => return Ok(()),
                other => {
                    return Err(error_at(
                        pos,
                        format!(
                            "expected `,` or `]` in the list `{name}`, found {}",
                            other.describe()
                        ),
                    ));
                }
            }
        }
    }
}

fn is_field_name(w: &str) -> bool {
    w.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(s: &str) -> Value {
        Value::Scalar(s.into())
    }

    #[test]
    fn tf_serving_model_config() {
        let text = r#"
            # Two models, as in TF Serving's docs.
            model_config_list {
              config {
                name: 'hf-vit'
                base_path: "/models/hf-vit"
                model_platform: "tensorflow"
                model_version_policy { specific { versions: 1 versions: 2 } }
                version_labels { key: "stable" value: 1 }
                version_labels { key: "canary" value: 2 }
              }
              config: {
                name: "other", base_path: "/models/other";
                model_version_policy < latest < num_versions: 2 > >
              }
            }
        "#;
        let root = parse(text).expect("parses");
        let list = root.get("model_config_list").and_then(Value::as_message);
        let configs: Vec<&Message> = list
            .expect("list")
            .get_all("config")
            .filter_map(Value::as_message)
            .collect();
        assert_eq!(configs.len(), 2);
        assert_eq!(
            configs[0].get("name").and_then(Value::as_str),
            Some("hf-vit")
        );
        let specific = configs[0]
            .get("model_version_policy")
            .and_then(Value::as_message)
            .and_then(|p| p.get("specific"))
            .and_then(Value::as_message)
            .expect("specific");
        let versions: Vec<u64> = specific
            .get_all("versions")
            .filter_map(Value::as_u64)
            .collect();
        assert_eq!(versions, vec![1, 2]);
        let labels: Vec<(&str, u64)> = configs[0]
            .get_all("version_labels")
            .filter_map(Value::as_message)
            .filter_map(|l| Some((l.get("key")?.as_str()?, l.get("value")?.as_u64()?)))
            .collect();
        assert_eq!(labels, vec![("stable", 1), ("canary", 2)]);
        let latest = configs[1]
            .get("model_version_policy")
            .and_then(Value::as_message)
            .and_then(|p| p.get("latest"))
            .and_then(Value::as_message)
            .expect("latest");
        assert_eq!(latest.get("num_versions").and_then(Value::as_u64), Some(2));
    }

    #[test]
    fn scalars_lists_and_escapes() {
        let root = parse(
            "a: [1, 2, 0x10] b: [] c: 'x\\'y\\n\\x41\\101\\\\' \"z\" d: -1.5e3 e: true f: [{ g: 1 }, < g: 2 >]",
        )
        .expect("parses");
        let a: Vec<u64> = root.get_all("a").filter_map(Value::as_u64).collect();
        assert_eq!(a, vec![1, 2, 16]);
        assert_eq!(root.get_all("b").count(), 0);
        assert_eq!(root.get("c"), Some(&scalar("x'y\nAA\\z")));
        assert_eq!(root.get("d").and_then(Value::as_str), Some("-1.5e3"));
        assert_eq!(root.get("d").and_then(Value::as_u64), None);
        assert_eq!(root.get("e").and_then(Value::as_bool), Some(true));
        let g: Vec<u64> = root
            .get_all("f")
            .filter_map(Value::as_message)
            .filter_map(|m| m.get("g")?.as_u64())
            .collect();
        assert_eq!(g, vec![1, 2]);
    }

    #[test]
    fn last_value_wins_for_get_and_empty_text_is_an_empty_message() {
        let root = parse("n: 1\nn: 2").expect("parses");
        assert_eq!(root.get("n").and_then(Value::as_u64), Some(2));
        assert_eq!(root.get("missing"), None);
        assert_eq!(parse("  # nothing\n").expect("parses"), Message::default());
        let m = parse("batching { max_batch_size { value: 8 } }").expect("parses");
        let inner = m
            .get("batching")
            .and_then(Value::as_message)
            .and_then(|b| b.get("max_batch_size"))
            .and_then(Value::as_message)
            .and_then(|v| v.get("value"))
            .and_then(Value::as_u64);
        assert_eq!(inner, Some(8));
        assert_eq!(scalar("x").as_message(), None);
        assert_eq!(Value::Message(Message::default()).as_str(), None);
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            ("a {\n  b: 1\n", (3, 1), "missing `}`"),
            ("a: 'abc", (1, 4), "not closed"),
            ("a 1", (1, 3), "expected `:`"),
            ("a: }", (1, 4), "expected a value"),
            ("{ a: 1 }", (1, 1), "expected a field name"),
            ("a: [1 2]", (1, 7), "expected `,` or `]`"),
            ("a: 1\n  b: 'x\\q'", (2, 8), "unknown escape"),
            ("a: 1 @", (1, 6), "unexpected character"),
            ("a < b: 1 }", (1, 10), "expected a field name"),
            ("a: [1,", (1, 7), "missing `]`"),
        ];
        for (text, (line, column), want) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
            assert!(e.message.contains(want), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("{line}:{column}: ")));
        }
    }
}
