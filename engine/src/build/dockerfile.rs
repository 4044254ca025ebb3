//! Dockerfile syntax: lines, continuations, comments and the `escape` directive into
//! instructions grouped by stage, plus the word rules the classic builder applies to
//! arguments (variable expansion, quoting, key=value pairs). Pure: no filesystem, no
//! engine; the builder interprets the instructions.

use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// An instruction's arguments: JSON (exec) form or the raw text after the flags.
#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    Json(Vec<String>),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// Upper case: `RUN`, `COPY`, ...
    pub keyword: String,
    /// `--name=value` flags before the arguments.
    pub flags: BTreeMap<String, String>,
    pub args: Args,
    /// The instruction as written (continuations joined), for `Step i/n : ...`.
    pub original: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// The `FROM` instruction.
    pub from: Instruction,
    /// `AS name`, lower-cased as Docker compares stage names.
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dockerfile {
    /// `ARG`s before the first `FROM` (usable in `FROM` lines).
    pub global_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    /// Every instruction in order, the `FROM`s included (what `Step i/n` counts).
    pub fn step_count(&self) -> usize {
        self.global_args.len()
            + self
                .stages
                .iter()
                .map(|s| 1 + s.instructions.len())
                .sum::<usize>()
    }
}

const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parses a Dockerfile. Errors use Docker's wording where it has one.
pub fn parse(text: &str) -> Result<Dockerfile> {
    let mut escape = '\\';
    let mut lines = text.lines().peekable();
    // Parser directives: `# key=value` lines at the very top.
    while let Some(l) = lines.peek() {
        let t = l.trim();
        let Some(d) = t.strip_prefix('#') else { break };
        match d.trim().split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("escape") => {
                escape = match v.trim() {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(Error::invalid(format!(
                            "invalid escape token '{other}' does not match ` or \\"
                        )));
                    }
                };
            }
            Some((k, _)) if k.trim().chars().all(|c| c.is_ascii_alphanumeric()) => {}
            _ => break,
        }
        lines.next();
    }

    let mut logical: Vec<String> = Vec::new();
    let mut cur: Option<String> = None;
    for raw in lines {
        let trimmed = raw.trim_start();
        // Comment and blank lines vanish, even inside a continuation.
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let t = raw.trim_end();
        let (body, continues) = match t.strip_suffix(escape) {
            Some(b) => (b, true),
            None => (t, false),
        };
        // Joined as Docker joins them: the escape and newline go, whitespace stays.
        let acc = cur.get_or_insert_with(String::new);
        acc.push_str(if acc.is_empty() {
            body.trim_start()
        } else {
            body
        });
        if !continues {
            logical.extend(cur.take());
        }
    }
    logical.extend(cur.take());

    let mut df = Dockerfile::default();
    for line in logical {
        let ins = instruction(&line)?;
        match ins.keyword.as_str() {
            "FROM" => {
                let words = match &ins.args {
                    Args::Text(t) => t.split_whitespace().map(str::to_string).collect(),
                    Args::Json(v) => v.clone(),
                };
                let name = match words.as_slice() {
                    [_] => None,
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
                        Some(name.to_ascii_lowercase())
                    }
                    _ => {
                        return Err(Error::invalid(format!(
                            "FROM requires either one or three arguments: {line}"
                        )));
                    }
                };
                df.stages.push(Stage {
                    from: ins,
                    name,
                    instructions: Vec::new(),
                });
            }
            kw => match df.stages.last_mut() {
                Some(s) => s.instructions.push(ins),
                None if kw == "ARG" => df.global_args.push(ins),
                None => {
                    return Err(Error::invalid(format!(
                        "no build stage in current context: {line}"
                    )));
                }
            },
        }
    }
    if df.stages.is_empty() {
        return Err(Error::invalid(
            "the Dockerfile (Dockerfile) cannot be empty".to_string(),
        ));
    }
    Ok(df)
}

fn instruction(line: &str) -> Result<Instruction> {
    let line = line.trim();
    let (kw, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let keyword = kw.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(Error::invalid(format!(
            "dockerfile parse error: unknown instruction: {kw}"
        )));
    }
    let mut rest = rest.trim_start();
    let mut flags = BTreeMap::new();
    // Flags come first; RUN's and CMD's arguments may start with `--` of their own only
    // after a flag we know, so only `--word=...` / `--word` tokens are taken.
    if matches!(
        keyword.as_str(),
        "FROM" | "COPY" | "ADD" | "HEALTHCHECK" | "RUN"
    ) {
        while let Some(f) = rest.strip_prefix("--") {
            let end = f.find(char::is_whitespace).unwrap_or(f.len());
            let tok = &f[..end];
            let (k, v) = tok.split_once('=').unwrap_or((tok, "true"));
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                break;
            }
            flags.insert(k.to_ascii_lowercase(), v.to_string());
            rest = f[end..].trim_start();
        }
    }
    let args = if rest.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => Args::Json(v),
            Err(_) => Args::Text(rest.to_string()),
        }
    } else {
        Args::Text(rest.to_string())
    };
    Ok(Instruction {
        keyword,
        flags,
        args,
        original: format!("{kw} {}", line[kw.len()..].trim())
            .trim()
            .to_string(),
    })
}

/// Expands `$VAR`, `${VAR}`, `${VAR:-default}` and `${VAR:+alt}` from `vars`; `\$` is a
/// literal `$`, and nothing is expanded inside single quotes (which stay, as Docker's
/// expansion leaves quoting to the word splitting that follows).
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut in_single = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() && chars[i + 1] == '$' => {
                // Kept escaped: the word splitting turns `\$` into `$`.
                out.push_str("\\$");
                i += 2;
                continue;
            }
            '\'' => in_single = !in_single,
            '$' if !in_single && i + 1 < chars.len() => {
                if chars[i + 1] == '{' {
                    if let Some(end) = chars[i + 2..].iter().position(|&c| c == '}') {
                        let inner: String = chars[i + 2..i + 2 + end].iter().collect();
                        out.push_str(&braced(&inner, vars));
                        i += end + 3;
                        continue;
                    }
                } else if chars[i + 1] == '_' || chars[i + 1].is_ascii_alphabetic() {
                    let mut j = i + 1;
                    while j < chars.len() && (chars[j] == '_' || chars[j].is_ascii_alphanumeric()) {
                        j += 1;
                    }
                    let name: String = chars[i + 1..j].iter().collect();
                    out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

fn braced(inner: &str, vars: &BTreeMap<String, String>) -> String {
    if let Some((name, word)) = inner.split_once(":-") {
        return match vars.get(name).filter(|v| !v.is_empty()) {
            Some(v) => v.clone(),
            None => expand(word, vars),
        };
    }
    if let Some((name, word)) = inner.split_once(":+") {
        return match vars.get(name).filter(|v| !v.is_empty()) {
            Some(_) => expand(word, vars),
            None => String::new(),
        };
    }
    vars.get(inner).cloned().unwrap_or_default()
}

/// Docker's word processing (as moby's shell lexer does it): splits on unquoted
/// whitespace, removes quotes, and with `vars` expands variables while it goes (never
/// inside single quotes), so an expanded value is never split or re-quoted. Outside
/// quotes a backslash escapes the next character; inside double quotes only `"`, `$` and
/// `\` are escaped and other backslashes stay.
pub fn lex(s: &str, vars: Option<&BTreeMap<String, String>>) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut quote: Option<char> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if have {
                    out.push(std::mem::take(&mut cur));
                    have = false;
                }
                i += 1;
                continue;
            }
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (None, '\\') => {
                if let Some(n) = next {
                    cur.push(n);
                    i += 1;
                }
            }
            (Some(_), '\\') => match next {
                Some(n @ ('"' | '$' | '\\')) => {
                    cur.push(n);
                    i += 1;
                }
                _ => cur.push('\\'),
            },
            (_, '$') if vars.is_some() => {
                let (value, used) = variable(&chars[i..], vars.unwrap_or(&BTreeMap::new()));
                cur.push_str(&value);
                i += used;
                have = true;
                continue;
            }
            (_, c) => cur.push(c),
        }
        have = true;
        i += 1;
    }
    if have {
        out.push(cur);
    }
    out
}

/// The value of the `$NAME` or `${...}` at the start of `chars`, and how many characters
/// it took; a `$` that starts no variable stays a `$`.
fn variable(chars: &[char], vars: &BTreeMap<String, String>) -> (String, usize) {
    match chars.get(1) {
        Some('{') => {
            let mut depth = 0usize;
            for (j, c) in chars.iter().enumerate().skip(1) {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            let inner: String = chars[2..j].iter().collect();
                            return (braced(&inner, vars), j + 1);
                        }
                    }
                    _ => {}
                }
            }
            ("$".into(), 1)
        }
        Some(c) if *c == '_' || c.is_ascii_alphabetic() => {
            let end = chars[1..]
                .iter()
                .position(|c| !(*c == '_' || c.is_ascii_alphanumeric()))
                .map_or(chars.len(), |p| p + 1);
            let name: String = chars[1..end].iter().collect();
            (vars.get(&name).cloned().unwrap_or_default(), end)
        }
        _ => ("$".into(), 1),
    }
}

/// Words without expansion.
pub fn words(s: &str) -> Vec<String> {
    lex(s, None)
}

/// `KEY=VALUE ...` pairs (ENV, LABEL); the legacy `KEY VALUE` form when the first word has
/// no `=` (ENV and LABEL only: the rest of the line is the value).
pub fn pairs(
    s: &str,
    vars: &BTreeMap<String, String>,
    keyword: &str,
) -> Result<Vec<(String, String)>> {
    let ws = lex(s, Some(vars));
    match ws.first() {
        None => Err(Error::invalid(format!(
            "{keyword} requires at least one argument"
        ))),
        Some(first) if !first.contains('=') => {
            let rest: Vec<String> = ws[1..].to_vec();
            if rest.is_empty() {
                return Err(Error::invalid(format!(
                    "{keyword} names can not be blank or {keyword} needs two arguments"
                )));
            }
            Ok(vec![(first.clone(), rest.join(" "))])
        }
        Some(_) => ws
            .into_iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(Error::invalid(format!(
                    "Syntax error - can't find = in \"{w}\". Must be of the form: name=value"
                ))),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn stages_continuations_comments_and_flags() {
        let df = parse(
            "# escape=\\\n\
             ARG BASE=busybox\n\
             FROM $BASE AS Build\n\
             # a comment\n\
             RUN echo one \\\n\
             # inside a continuation\n\
                 && echo two\n\
             \n\
             COPY --chown=1:2 --from=build a b /dst/\n\
             CMD [\"sh\", \"-c\", \"echo hi\"]\n\
             from build\n\
             ENTRYPOINT echo [not json\n",
        )
        .unwrap();
        assert_eq!(df.global_args.len(), 1);
        assert_eq!(df.stages.len(), 2);
        assert_eq!(df.stages[0].name.as_deref(), Some("build"));
        let s = &df.stages[0].instructions;
        assert_eq!(s[0].args, Args::Text("echo one && echo two".into()));
        assert_eq!(s[0].original, "RUN echo one && echo two");
        assert_eq!(s[1].flags["chown"], "1:2");
        assert_eq!(s[1].flags["from"], "build");
        assert_eq!(s[1].args, Args::Text("a b /dst/".into()));
        assert_eq!(
            s[2].args,
            Args::Json(vec!["sh".into(), "-c".into(), "echo hi".into()])
        );
        assert_eq!(
            df.stages[1].instructions[0].args,
            Args::Text("echo [not json".into())
        );
        assert_eq!(df.step_count(), 7);
    }

    #[test]
    fn backtick_escape_and_errors() {
        let df = parse("# escape=`\nFROM scratch\nRUN a `\n  b\n").unwrap();
        assert_eq!(
            df.stages[0].instructions[0].args,
            Args::Text("a   b".into())
        );
        assert!(
            parse("RUN x\n")
                .unwrap_err()
                .to_string()
                .contains("no build stage")
        );
        assert!(
            parse("FROM a\nFOO b\n")
                .unwrap_err()
                .to_string()
                .contains("unknown instruction: FOO")
        );
        assert!(parse("\n# only\n").is_err());
        assert!(parse("FROM a b\n").is_err());
    }

    #[test]
    fn expansion() {
        let v = vars(&[("A", "x y"), ("EMPTY", ""), ("P", "/opt")]);
        assert_eq!(expand("$A-${A}", &v), "x y-x y");
        assert_eq!(
            expand("${MISSING:-dflt} ${EMPTY:-e} ${P:+set} ${MISSING:+no}", &v),
            "dflt e set "
        );
        assert_eq!(expand("'$A' \\$A $1", &v), "'$A' \\$A $1");
        assert_eq!(expand("${P}/bin:$PATH", &v), "/opt/bin:");
    }

    #[test]
    fn words_and_pairs() {
        assert_eq!(words(r#"a "b c" 'd e' f\ g"#), ["a", "b c", "d e", "f g"]);
        assert_eq!(words(r#"K="" L=x"#), ["K=", "L=x"]);
        assert_eq!(
            pairs(r#"A=1 B="two words" C=a\ b"#, &BTreeMap::new(), "ENV").unwrap(),
            [
                ("A".to_string(), "1".to_string()),
                ("B".into(), "two words".into()),
                ("C".into(), "a b".into())
            ]
        );
        assert_eq!(
            pairs("PATH /usr/bin /bin", &BTreeMap::new(), "ENV").unwrap(),
            [("PATH".to_string(), "/usr/bin /bin".to_string())]
        );
        assert!(pairs("A=1 B", &BTreeMap::new(), "ENV").is_err());
        assert!(pairs("", &BTreeMap::new(), "LABEL").is_err());
        // Expansion happens per word: a value with spaces or quotes stays one value.
        let v = vars(&[("O", "--a=1 --b"), ("VERSION", "2")]);
        assert_eq!(
            pairs("NODE_OPTIONS=$O", &v, "ENV").unwrap(),
            [("NODE_OPTIONS".to_string(), "--a=1 --b".to_string())]
        );
        assert_eq!(
            pairs(
                r#"desc="Bob's image" version=$VERSION p="C:\dir""#,
                &v,
                "LABEL"
            )
            .unwrap(),
            [
                ("desc".to_string(), "Bob's image".to_string()),
                ("version".into(), "2".into()),
                ("p".into(), "C:\\dir".into())
            ]
        );
        assert_eq!(lex("${MISSING:-${VERSION}}x '$O'", Some(&v)), ["2x", "$O"]);
    }
}
