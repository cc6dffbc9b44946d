//! Protocol-buffer text format, as TF Serving's config files are written
//! (`--batching_parameters_file`, `--model_config_file`), parsed into a
//! generic tree; each config module reads the fields it knows.

use std::fmt;

/// A message: its fields in file order (repeated fields appear repeatedly).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    pub fields: Vec<(String, Value)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number, identifier (enum, bool) or unescaped string.
    Scalar(String),
    Message(Message),
}

impl Message {
    /// The last occurrence, as protobuf does for a non-repeated field.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

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

    pub fn as_u64(&self) -> Option<u64> {
        self.as_str()?.parse().ok()
    }

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

#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}:{}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for ParseError {}

pub fn parse(text: &str) -> Result<Message, ParseError> {
    let mut p = Parser {
        chars: text.chars().collect(),
        at: 0,
    };
    let m = p.fields(None)?;
    Ok(m)
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn error(&self, message: impl Into<String>) -> ParseError {
        let before = &self.chars[..self.at.min(self.chars.len())];
        let line = before.iter().filter(|c| **c == '\n').count() + 1;
        let column = before.iter().rev().take_while(|c| **c != '\n').count() + 1;
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.at += 1;
                }
            } else if c.is_whitespace() {
                self.at += 1;
            } else {
                break;
            }
        }
    }

    /// Fields until `close` (or the end of the text at top level).
    fn fields(&mut self, close: Option<char>) -> Result<Message, ParseError> {
        let mut message = Message::default();
        loop {
            self.skip_space();
            match (self.peek(), close) {
                (None, None) => return Ok(message),
                (None, Some(c)) => return Err(self.error(format!("missing closing {c:?}"))),
                (Some(c), Some(want)) if c == want => {
                    self.at += 1;
                    return Ok(message);
                }
                _ => {}
            }
            let name = self.identifier()?;
            self.skip_space();
            let colon = self.peek() == Some(':');
            if colon {
                self.at += 1;
                self.skip_space();
            }
            match self.peek() {
                Some('[') => {
                    self.at += 1;
                    loop {
                        self.skip_space();
                        if self.peek() == Some(']') {
                            self.at += 1;
                            break;
                        }
                        let v = self.value()?;
                        message.fields.push((name.clone(), v));
                        self.skip_space();
                        match self.peek() {
                            Some(',') => self.at += 1,
                            Some(']') => {}
                            _ => return Err(self.error("expected ',' or ']' in a list")),
                        }
                    }
                }
                Some('{') | Some('<') => {
                    let v = self.value()?;
                    message.fields.push((name, v));
                }
                _ if colon => {
                    let v = self.value()?;
                    message.fields.push((name, v));
                }
                _ => return Err(self.error(format!("expected ':' or '{{' after {name:?}"))),
            }
            self.skip_space();
            if matches!(self.peek(), Some(',') | Some(';')) {
                self.at += 1;
            }
        }
    }

    fn identifier(&mut self) -> Result<String, ParseError> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+'))
        {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.error("expected a field name or value"));
        }
        Ok(self.chars[start..self.at].iter().collect())
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            Some('{') => {
                self.at += 1;
                Ok(Value::Message(self.fields(Some('}'))?))
            }
            Some('<') => {
                self.at += 1;
                Ok(Value::Message(self.fields(Some('>'))?))
            }
            Some(q @ ('"' | '\'')) => {
                let mut s = String::new();
                // Adjacent string literals concatenate.
                while self.peek() == Some(q) {
                    self.at += 1;
                    s.push_str(&self.string(q)?);
                    self.skip_space();
                }
                Ok(Value::Scalar(s))
            }
            _ => Ok(Value::Scalar(self.identifier()?)),
        }
    }

    fn string(&mut self, quote: char) -> Result<String, ParseError> {
        let mut s = String::new();
        loop {
            match self.peek() {
                None | Some('\n') => return Err(self.error("unterminated string")),
                Some(c) if c == quote => {
                    self.at += 1;
                    return Ok(s);
                }
                Some('\\') => {
                    self.at += 1;
                    let c = self.peek().ok_or_else(|| self.error("unterminated escape"))?;
                    self.at += 1;
                    s.push(match c {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                }
                Some(c) => {
                    self.at += 1;
                    s.push(c);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tf_serving_model_config() {
        let m = parse(
            r#"
            # two models
            model_config_list {
              config { name: "hf-vit" base_path: "/models/hf-vit" model_platform: "tensorflow"
                       model_version_policy { specific { versions: 1 versions: 2 } }
                       version_labels { key: 'stable' value: 1 } }
              config: < name: "other", base_path: "/m" >
            }"#,
        )
        .expect("parses");
        let list = m.get("model_config_list").and_then(Value::as_message).expect("list");
        let configs: Vec<_> = list.get_all("config").filter_map(Value::as_message).collect();
        assert_eq!(configs.len(), 2);
        assert_eq!(configs[0].get("name").and_then(Value::as_str), Some("hf-vit"));
        assert_eq!(configs[1].get("base_path").and_then(Value::as_str), Some("/m"));
        let specific = configs[0]
            .get("model_version_policy")
            .and_then(Value::as_message)
            .and_then(|p| p.get("specific"))
            .and_then(Value::as_message)
            .expect("specific");
        let versions: Vec<u64> = specific.get_all("versions").filter_map(Value::as_u64).collect();
        assert_eq!(versions, vec![1, 2]);
    }

    #[test]
    fn lists_and_errors_with_positions() {
        let m = parse("allowed_batch_sizes: [2, 4, 8]").expect("parses");
        let sizes: Vec<u64> = m.get_all("allowed_batch_sizes").filter_map(Value::as_u64).collect();
        assert_eq!(sizes, vec![2, 4, 8]);
        let e = parse("a {\n  b: 1\n").expect_err("unclosed");
        assert_eq!(e.line, 3);
        let e = parse("a b").expect_err("no colon");
        assert!(e.message.contains("expected ':'"), "{e}");
    }
}
