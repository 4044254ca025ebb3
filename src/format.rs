//! Output helpers: a small subset of Docker's Go templates (`{{.Field}}`, `{{.A.B}}`,
//! `{{json .X}}`, `{{index .M "k"}}`, a leading `table`), and inspect printing.

use crate::errors::{CliError, CliResult};
use serde_json::Value;

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim().trim_start_matches('.');
    if path.is_empty() {
        return Some(v);
    }
    path.split('.').try_fold(v, |cur, key| cur.get(key))
}

fn render_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "<no value>".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => format!(
            "[{}]",
            a.iter()
                .map(|x| render_value(Some(x)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Some(Value::Object(o)) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, x)| format!("{k}:{}", render_value(Some(x))))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Some(other) => other.to_string(),
    }
}

fn eval(expr: &str, v: &Value) -> CliResult<String> {
    let e = expr.trim();
    if let Some(rest) = e.strip_prefix("json ") {
        return Ok(
            serde_json::to_string(&lookup(v, rest).cloned().unwrap_or(Value::Null))
                .unwrap_or_default(),
        );
    }
    if let Some(rest) = e.strip_prefix("index ") {
        let mut parts = rest.split_whitespace();
        let base = parts.next().unwrap_or(".");
        let key = parts.next().unwrap_or("").trim_matches('"');
        return Ok(render_value(lookup(v, base).and_then(|b| b.get(key))));
    }
    if e.starts_with('.') {
        return Ok(render_value(lookup(v, e)));
    }
    Err(CliError::Usage(format!(
        "template: unsupported expression {{{{{e}}}}}"
    )))
}

/// Renders one value through a template.
pub fn render(template: &str, v: &Value) -> CliResult<String> {
    let t = template.strip_prefix("table ").unwrap_or(template);
    let t = t.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| CliError::Usage("template: unclosed action".into()))?;
        out.push_str(&eval(&after[..end], v)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

pub fn print_inspect(items: &[Value], format: Option<&str>) -> CliResult<()> {
    match format {
        Some(f) => {
            for it in items {
                println!("{}", render(f, it)?);
            }
        }
        None => println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(items.to_vec())).unwrap_or_default()
        ),
    }
    Ok(())
}

/// A listing command's output: each row through `--format` when given, else the table.
pub fn print_listing(
    format: Option<&str>,
    columns: &[(&str, &str)],
    rows: &[Value],
) -> CliResult<()> {
    match format {
        Some(f) => {
            for r in rows {
                println!("{}", render(f, r)?);
            }
        }
        None => print_rows(columns, rows),
    }
    Ok(())
}

/// Prints JSON rows as a table of the given (header, field) columns.
pub fn print_rows(columns: &[(&str, &str)], rows: &[Value]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|(_, k)| r[*k].as_str().unwrap_or("").to_string())
                .collect()
        })
        .collect();
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    print_table(&header, &cells);
}

/// Prints rows as a left-aligned table with three spaces between columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates() {
        let v = json!({"Id": "abc", "State": {"Status": "running", "Pid": 7},
                       "Config": {"Labels": {"a.b": "x"}}, "List": [1, 2]});
        assert_eq!(
            render("{{.Id}} {{.State.Status}}", &v).unwrap(),
            "abc running"
        );
        assert_eq!(render("{{ .State.Pid }}", &v).unwrap(), "7");
        assert_eq!(
            render("{{json .State}}", &v).unwrap(),
            r#"{"Pid":7,"Status":"running"}"#
        );
        assert_eq!(
            render(r#"{{index .Config.Labels "a.b"}}"#, &v).unwrap(),
            "x"
        );
        assert_eq!(render("{{.Missing}}", &v).unwrap(), "<no value>");
        assert_eq!(render("{{.List}}", &v).unwrap(), "[1 2]");
        assert!(render("{{.Id", &v).is_err());
    }
}
