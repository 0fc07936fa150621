//! The one rule for echoing input in an error message: at most a short excerpt of it, so a
//! 64 MB word in a filter file makes a one-line error, not a 64 MB one. Messages say where the
//! input is (a column, `file:line:column`) next to the excerpt.

use std::{borrow::Cow, fmt};

/// Characters of an echoed piece of input shown in full; a longer one is cut.
pub const MAX_CHARS: usize = 48;

/// Characters kept of a piece of input that is cut.
const KEPT_CHARS: usize = 32;

/// Longest error line tap prints, in bytes: the last guard, for messages that quote input the
/// excerpt rule did not reach (a library's message).
pub const MAX_LINE: usize = 4096;

/// `text` as an error message may echo it: whole when it has at most [`MAX_CHARS`]
/// characters, else its first characters, `…` and its length.
#[must_use]
pub fn excerpt(text: &str) -> Excerpt<'_> {
    Excerpt(text)
}

/// See [`excerpt`].
#[derive(Debug, Clone, Copy)]
pub struct Excerpt<'a>(&'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.char_indices().nth(MAX_CHARS).is_none() {
            f.write_str(self.0)
        } else {
            let cut = self
                .0
                .char_indices()
                .nth(KEPT_CHARS)
                .map_or(self.0.len(), |(i, _)| i);
            write!(
                f,
                "{}… ({} characters)",
                &self.0[..cut],
                self.0.chars().count()
            )
        }
    }
}

/// `text` with every run of non-blank characters longer than [`MAX_CHARS`] cut as [`excerpt`]
/// cuts it: for a message built around pieces of input (a filter's "unknown port 'x'").
#[must_use]
pub fn words(text: &str) -> Cow<'_, str> {
    if !text
        .split(char::is_whitespace)
        .any(|w| w.chars().nth(MAX_CHARS).is_some())
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(MAX_LINE.min(text.len()));
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push_str(&excerpt(&rest[..word_end]).to_string());
        rest = &rest[word_end..];
        let blank_end = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        out.push_str(&rest[..blank_end]);
        rest = &rest[blank_end..];
    }
    Cow::Owned(out)
}

/// `line` cut to at most [`MAX_LINE`] bytes (on a character boundary), marked when cut.
#[must_use]
pub fn line(line: &str) -> Cow<'_, str> {
    if line.len() <= MAX_LINE {
        return Cow::Borrowed(line);
    }
    let mut cut = MAX_LINE - 32;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}… ({} bytes)", &line[..cut], line.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_echoed_whole() {
        assert_eq!(excerpt("udp").to_string(), "udp");
        let exactly = "x".repeat(MAX_CHARS);
        assert_eq!(excerpt(&exactly).to_string(), exactly);
    }

    #[test]
    fn long_input_is_cut_with_its_length() {
        let long = "a".repeat(64 << 20);
        let shown = excerpt(&long).to_string();
        assert_eq!(shown, format!("{}… (67108864 characters)", "a".repeat(32)));
        // Characters, not bytes: never a cut inside one.
        let wide = "é".repeat(100);
        assert_eq!(
            excerpt(&wide).to_string(),
            format!("{}… (100 characters)", "é".repeat(32))
        );
    }

    #[test]
    fn long_words_in_a_message_are_cut() {
        let name = "b".repeat(1000);
        let text = format!("unknown port '{name}'  here");
        assert_eq!(
            words(&text),
            format!("unknown port '{}… (1002 characters)  here", "b".repeat(31))
        );
        assert!(matches!(words("unknown port 'ssh2'"), Cow::Borrowed(_)));
    }

    #[test]
    fn lines_are_bounded() {
        let long = "é".repeat(MAX_LINE);
        let cut = line(&long);
        assert!(cut.len() <= MAX_LINE, "{}", cut.len());
        assert!(cut.ends_with(&format!("… ({} bytes)", long.len())));
        assert_eq!(line("short"), "short");
    }

    /// Bounded fuzzing of the filter parser with long input: whatever the words, however long,
    /// an error is one short line, and an expression past the limit is refused unparsed.
    mod filter_fuzz {
        use proptest::prelude::*;

        use crate::filter::{FilterError, MAX_EXPRESSION_LEN, image};

        const WORDS: &[&str] = &[
            "host", "port", "net", "or", "and", "not", "(", ")", "tcp", "udp", "vlan", "src", "!",
            "/", "\\", "[", "ether", "proto", "é", "10.0.0.1", "::1", "0x",
        ];

        fn long_word() -> impl Strategy<Value = String> {
            (prop::sample::select(WORDS), 50usize..20_000).prop_map(|(w, n)| w.repeat(n))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 64, ..ProptestConfig::default() })]

            #[test]
            fn long_tokens_make_short_errors(
                before in prop::collection::vec(prop::sample::select(WORDS), 0..6),
                word in long_word(),
                after in prop::collection::vec(prop::sample::select(WORDS), 0..6),
            ) {
                let text = format!("{} {word} {}", before.join(" "), after.join(" "));
                if let Err(e) = image(&text) {
                    let line = e.to_string();
                    prop_assert!(line.len() < 1200, "{} bytes: {}", line.len(), &line[..200]);
                }
            }

            #[test]
            fn past_the_limit_nothing_is_parsed(extra in 1usize..4096, word in prop::sample::select(WORDS)) {
                let text = format!("{word} ").repeat((MAX_EXPRESSION_LEN + extra) / (word.len() + 1) + 1);
                prop_assert!(text.len() > MAX_EXPRESSION_LEN);
                let refused = matches!(image(&text), Err(FilterError::TooLong { .. }));
                prop_assert!(refused);
            }
        }
    }
}
