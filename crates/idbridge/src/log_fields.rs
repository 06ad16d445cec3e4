//! How the text log writes field values: exactly like `tracing_subscriber`'s
//! default, except that control characters in any value or message are written
//! escaped (`\n`, `\r`, `\t`, `\u{0}`, `\u{1b}`, …; also U+2028 and U+2029, which
//! some viewers break lines on). Values often come from outside (a path segment,
//! an upstream's message); escaped, none of them can start a forged log line or
//! send a terminal escape sequence. The JSON format escapes by itself.

use std::borrow::Cow;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// The field formatter for `tracing_subscriber::fmt().fmt_fields(EscapedFields)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = Escaping<DefaultVisitor<'a>>;

    fn make_visitor(&self, target: Writer<'a>) -> Self::Visitor {
        Escaping(DefaultVisitor::new(target, true))
    }
}

/// `text` with every control character (and U+2028, U+2029) escaped the way a
/// Rust string literal writes it; borrowed when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    let needs = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A visitor that escapes every value before the inner one writes it.
pub struct Escaping<V>(V);

impl<V: Visit> Visit for Escaping<V> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.record_str(field, &escape(value));
        } else {
            // Written with `{:?}`, which escapes control characters already.
            self.0.record_str(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%value` and the message arrive here, written as they are: escape them.
        let text = format!("{value:?}");
        self.0
            .record_debug(field, &format_args!("{}", escape(&text)));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.record_error(field, &EscapedError::of(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.record_i64(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.record_u64(field, value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.0.record_i128(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.0.record_u128(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.record_f64(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.record_bool(field, value);
    }
}

impl<V: VisitOutput<fmt::Result>> VisitOutput<fmt::Result> for Escaping<V> {
    fn finish(self) -> fmt::Result {
        self.0.finish()
    }
}

impl<V: VisitFmt> VisitFmt for Escaping<V> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        self.0.writer()
    }
}

/// An error and its sources, each message escaped (so the inner visitor can
/// still write `error.sources=[…]`).
#[derive(Debug)]
struct EscapedError {
    message: String,
    source: Option<Box<EscapedError>>,
}

impl EscapedError {
    fn of(e: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            message: escape(&e.to_string()).into_owned(),
            source: e.source().map(|s| Box::new(Self::of(s))),
        }
    }
}

impl fmt::Display for EscapedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EscapedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn escape_writes_control_characters_as_escapes_and_leaves_the_rest() {
        assert_eq!(escape("plain 王小明🐼 \\n"), "plain 王小明🐼 \\n");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nb\r\tc"), "a\\nb\\r\\tc");
        assert_eq!(
            escape("\u{0}\u{1b}[31m\u{7f}\u{85}"),
            "\\0\\u{1b}[31m\\u{7f}\\u{85}"
        );
        assert_eq!(escape("x\u{2028}y"), "x\\u{2028}y");
    }

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What one event looks like with the default fields and with ours.
    fn both(event: impl Fn()) -> (String, String) {
        let run = |escaped: bool| {
            let buf = Buf::default();
            let out = buf.clone();
            let builder = tracing_subscriber::fmt()
                .with_ansi(false)
                .without_time()
                .with_writer(move || buf.clone());
            if escaped {
                tracing::subscriber::with_default(
                    builder.fmt_fields(EscapedFields).finish(),
                    &event,
                );
            } else {
                tracing::subscriber::with_default(builder.finish(), &event);
            }
            let bytes = out.0.lock().unwrap().clone();
            String::from_utf8(bytes).unwrap()
        };
        (run(false), run(true))
    }

    #[test]
    fn a_forged_line_stays_on_its_own_line() {
        let connector = "x\n2026-01-01T00:00:00.000000Z ERROR FORGED admin logged in";
        let (plain, escaped) = both(|| {
            tracing::warn!(stage = "callback", connector = %connector, upstream = ?connector, "callback for {connector}");
        });
        // The default writes the newline: a forged line of its own.
        assert!(
            plain
                .lines()
                .any(|l| l.starts_with("2026-01-01T00:00:00.000000Z ERROR")),
            "{plain}"
        );
        assert_eq!(escaped.lines().count(), 1, "{escaped}");
        assert!(
            escaped.contains(
                "callback for x\\n2026-01-01T00:00:00.000000Z ERROR FORGED admin logged in stage=\"callback\" connector=x\\n2026-01-01T00:00:00.000000Z ERROR FORGED admin logged in upstream=\"x\\n2026"
            ),
            "{escaped}"
        );
    }

    #[test]
    fn output_is_otherwise_identical() {
        let (plain, escaped) = both(|| {
            let e = std::io::Error::other("disk on fire");
            tracing::info!(n = 3, ok = true, f = 1.5, name = "王小明🐼", shown = %"a b", debug = ?vec!["x"], error = &e as &(dyn std::error::Error + 'static), "all kinds");
            let span = tracing::info_span!("req", path = %"/token");
            let _g = span.enter();
            tracing::warn!("inside a span");
        });
        assert_eq!(plain, escaped);
        assert!(escaped.contains("req{path=/token}"), "{escaped}");
    }

    #[test]
    fn span_fields_and_error_sources_are_escaped_too() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("outer\nline")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let (_, escaped) = both(|| {
            let span = tracing::info_span!("req", path = %"/a\nb");
            let _g = span.enter();
            let e = Outer(std::io::Error::other("inner\rsource"));
            tracing::warn!(error = &e as &(dyn std::error::Error + 'static), "failed");
        });
        assert_eq!(escaped.lines().count(), 1, "{escaped}");
        assert!(escaped.contains("req{path=/a\\nb}"), "{escaped}");
        assert!(escaped.contains("outer\\nline"), "{escaped}");
        assert!(escaped.contains("inner\\rsource"), "{escaped}");
    }
}
