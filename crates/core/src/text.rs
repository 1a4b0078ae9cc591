//! Text that came from elsewhere (a hub, an identity provider, a token's
//! claims) made safe to print on a terminal: the one home of the rule, so
//! every place that shows such text strips the same characters.
//!
//! A terminal obeys control characters: ESC starts sequences that clear
//! the screen, set the window title or rewrite what was printed, and CR or
//! a newline can forge a line such as `hint: …`. Bidirectional-override
//! characters reorder what the eye reads. [`is_unsafe`] names them all;
//! [`one_line`] removes them (for a value shown inside a sentence) and
//! [`has_unsafe`] lets a caller refuse a value it must show verbatim (a user
//! code the user types). Pure: no I/O.

use std::borrow::Cow;

/// Whether `c` must never reach a terminal from untrusted text: a C0 or C1
/// control character (newline and tab included), DEL, or a bidirectional
/// embedding, override or isolate.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `text` holds a character [`is_unsafe`] names.
pub fn has_unsafe(text: &str) -> bool {
    text.chars().any(is_unsafe)
}

/// `text` without the characters [`is_unsafe`] names, cut to `max` characters.
pub fn one_line(text: &str, max: usize) -> Cow<'_, str> {
    if !has_unsafe(text) && text.chars().count() <= max {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().filter(|&c| !is_unsafe(c)).take(max).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(one_line(input, 20), expected, "{input:?}");
    }

    #[test]
    fn control_and_bidi_characters_are_removed() {
        check("WDJB-MJHT", "WDJB-MJHT");
        check("\x1b[2J\x1b]0;pwned\x07CODE", "[2J]0;pwnedCODE");
        check("a\r\nhint: run this", "ahint: run this");
        check("tab\there\u{7f}\u{9b}31m", "tabhere31m");
        check("abc\u{202E}fed", "abcfed");
        check("\u{2066}x\u{2069}", "x");
        check("é ü 名前", "é ü 名前");
        check("0123456789abcdefghijKLMN", "0123456789abcdefghij");
        assert!(has_unsafe("a\u{1b}b") && !has_unsafe("plain text"));
    }
}
