//! Text that goes into XML and HTML: names and messages are user and guest text, so every one
//! is escaped here, clipped to a bound, and cleaned of what XML 1.0 forbids.

use std::borrow::Cow;

/// What stands in for a character XML 1.0 forbids (C0 controls other than tab, newline and
/// carriage return; C1 controls; U+FFFE, U+FFFF).
const REPLACEMENT: char = '\u{FFFD}';

/// `text` escaped for element content in XML 1.0 and HTML: `&`, `<`, `>`, quotes, and carriage
/// returns (which parsers would fold into newlines) as references; forbidden characters
/// replaced by U+FFFD.
pub(super) fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text, false);
    out
}

/// `text` escaped for a double- or single-quoted attribute value: as [`text`], and tabs and
/// newlines as references too, so that a parser's attribute normalisation keeps them.
pub(super) fn attr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text, true);
    out
}

fn escape_into(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            '\u{FFFE}' | '\u{FFFF}' => out.push(REPLACEMENT),
            c if c.is_control() => out.push(REPLACEMENT),
            c => out.push(c),
        }
    }
}

/// `text` cut to at most `max` characters, with `…` and the number of characters left off
/// appended when it was longer: reports bound every string they show.
pub(super) fn clip(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some((end, _)) => {
            let left = text[end..].chars().count();
            Cow::Owned(format!("{}… ({left} more characters)", &text[..end]))
        }
    }
}

/// `word` as a CSS class token: ASCII letters, digits and `-` kept (lowercased), anything else
/// made `-`, at most 32 characters; `other` when nothing is left.
pub(super) fn class(word: &str) -> String {
    let token: String = word
        .chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if token.chars().any(|c| c.is_ascii_alphanumeric()) {
        token
    } else {
        "other".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_become_references() {
        assert_eq!(
            text(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn forbidden_characters_are_replaced_and_line_breaks_survive_attributes() {
        assert_eq!(
            text("a\u{0}b\u{1b}c\u{85}d\u{FFFF}"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}d\u{FFFD}"
        );
        assert_eq!(text("a\tb\nc\rd"), "a\tb\nc&#13;d");
        assert_eq!(attr("a\tb\nc\rd"), "a&#9;b&#10;c&#13;d");
    }

    #[test]
    fn clip_counts_characters_not_bytes() {
        assert_eq!(clip("héllo", 5), "héllo");
        assert_eq!(clip("héllo wörld", 5), "héllo… (6 more characters)");
        assert_eq!(clip("", 0), "");
    }

    #[test]
    fn class_tokens_keep_only_safe_characters() {
        assert_eq!(class("completed-with-error"), "completed-with-error");
        assert_eq!(class("\" onload=\"x"), "--onload--x");
        assert_eq!(class("<>"), "other");
        assert_eq!(class(&"a".repeat(100)).len(), 32);
    }
}
