//! The `spark.properties` file: `java.util.Properties.store` format, which is what the driver
//! reads back with `Properties.load` (`--properties-file`).

use std::collections::BTreeMap;
use std::fmt::Write;

/// Renders `props` as a Java properties file: one comment line naming the ConfigMap, then one
/// `key=value` line per entry, sorted by key.
///
/// Escaping is `Properties.store`'s: `\`, `=`, `:`, `#`, `!`, tab, newline, carriage return and
/// form feed are backslash-escaped in keys and values; spaces are escaped everywhere in keys and
/// at the start of values. Characters outside printable ASCII are written as `\uXXXX` (UTF-16
/// code units), as `store(OutputStream)` does, so the file is plain ASCII and loads the same
/// whatever charset the reader assumes. Unlike Spark there is no timestamp comment line: the
/// same app must render the same ConfigMap every time.
pub fn render(props: &BTreeMap<String, String>, config_map_name: &str) -> String {
    let mut out = String::new();
    out.push('#');
    escape_comment(
        &mut out,
        &format!("Java properties built from Kubernetes config map with name: {config_map_name}"),
    );
    out.push('\n');
    for (key, value) in props {
        escape(&mut out, key, true);
        out.push('=');
        escape(&mut out, value, false);
        out.push('\n');
    }
    out
}

fn escape(out: &mut String, s: &str, is_key: bool) {
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{c}' => out.push_str("\\f"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => unicode_escape(out, c),
        }
    }
}

/// Comments only need their non-ASCII and line breaks neutralised.
fn escape_comment(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            ' '..='~' => out.push(c),
            _ => unicode_escape(out, c),
        }
    }
}

fn unicode_escape(out: &mut String, c: char) {
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        // Writing to a String cannot fail.
        let _ = write!(out, "\\u{unit:04X}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(key: &str, value: &str) -> String {
        let props = BTreeMap::from([(key.to_string(), value.to_string())]);
        let text = render(&props, "cm");
        text.lines().nth(1).unwrap_or_default().to_string()
    }

    #[test]
    fn escapes_like_java() {
        assert_eq!(
            one("spark.master", "k8s://https://127.0.0.1:16443"),
            r"spark.master=k8s\://https\://127.0.0.1\:16443"
        );
        assert_eq!(one("a b", " x y"), r"a\ b=\ x y");
        assert_eq!(one("k=v", "a#b!c"), r"k\=v=a\#b\!c");
        assert_eq!(one("p", "C:\\dir\ttab\nnl"), r"p=C\:\\dir\ttab\nnl");
        assert_eq!(one("u", "é😀"), r"u=\u00E9\uD83D\uDE00");
        assert_eq!(one("ctl", "\u{1}"), r"ctl=\u0001");
    }

    #[test]
    fn header_and_order() {
        let props = BTreeMap::from([
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), String::new()),
        ]);
        assert_eq!(
            render(&props, "spark-drv-x-conf-map"),
            "#Java properties built from Kubernetes config map with name: spark-drv-x-conf-map\na=\nb=2\n"
        );
    }
}
