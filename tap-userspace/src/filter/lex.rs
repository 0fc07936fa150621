//! Tokens of a pcap-filter expression.
//!
//! Like libpcap's scanner, a word runs over letters, digits and `_ . : -`, so addresses
//! (`192.0.2.1`, `2001:db8::1`, `aa:bb:cc:dd:ee:ff`), port ranges (`1000-2000`) and service names
//! (`ftp-data`) are one token each; the parser decides what a word is. `\word` escapes a keyword
//! (`proto \tcp`). Any other character is a token of its own that the parser rejects, naming it.

/// Kind of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok {
    LParen,
    RParen,
    /// `!` (not).
    Bang,
    /// `&&`.
    AndAnd,
    /// `||`.
    OrOr,
    /// `/` (prefix length).
    Slash,
    /// A word: keyword, number, address or name.
    Word,
    /// `\word`: a name, never a keyword; `text` is the part after the backslash.
    Escaped,
    /// Anything else (`[`, `=`, `<`, `&`, ...): not part of the supported language.
    Other,
}

/// One token and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Token<'a> {
    pub tok: Tok,
    pub text: &'a str,
    /// 1-based column (in characters) of the token's first character.
    pub column: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// Consumes the characters that satisfy `pred`, moving `end` (byte offset) and `column`.
fn take_while(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    pred: impl Fn(char) -> bool,
    end: &mut usize,
    column: &mut usize,
) {
    while let Some(&(i, next)) = chars.peek() {
        if !pred(next) {
            break;
        }
        chars.next();
        *column += 1;
        *end = i + next.len_utf8();
    }
}

/// Splits `input` into tokens; never fails (unknown characters become [`Tok::Other`]).
pub(super) fn tokenize(input: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    let mut column = 0;
    while let Some((start, c)) = chars.next() {
        column += 1;
        let token_column = column;
        if c.is_whitespace() {
            continue;
        }
        let mut end = start + c.len_utf8();
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '/' => Tok::Slash,
            '!' => {
                if chars.peek().is_some_and(|&(_, n)| n == '=') {
                    let (i, n) = chars.next().expect("peeked");
                    column += 1;
                    end = i + n.len_utf8();
                    Tok::Other
                } else {
                    Tok::Bang
                }
            }
            '&' | '|' => {
                if chars.peek().is_some_and(|&(_, n)| n == c) {
                    let (i, n) = chars.next().expect("peeked");
                    column += 1;
                    end = i + n.len_utf8();
                    if c == '&' { Tok::AndAnd } else { Tok::OrOr }
                } else {
                    Tok::Other
                }
            }
            '\\' => {
                // libpcap: a backslash and the run of characters up to a blank, '!' or a paren.
                let escapable = |n: char| !n.is_whitespace() && !matches!(n, '!' | '(' | ')');
                if chars.peek().is_some_and(|&(_, n)| escapable(n)) {
                    take_while(&mut chars, escapable, &mut end, &mut column);
                    tokens.push(Token {
                        tok: Tok::Escaped,
                        text: &input[start + 1..end],
                        column: token_column,
                    });
                    continue;
                }
                Tok::Other
            }
            c if is_word_char(c) => {
                take_while(&mut chars, is_word_char, &mut end, &mut column);
                Tok::Word
            }
            _ => Tok::Other,
        };
        tokens.push(Token {
            tok,
            text: &input[start..end],
            column: token_column,
        });
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<(Tok, &str, usize)> {
        tokenize(s)
            .into_iter()
            .map(|t| (t.tok, t.text, t.column))
            .collect()
    }

    #[test]
    fn words_and_operators() {
        assert_eq!(
            kinds("host 10.0.0.0/8&&!(port ftp-data)||x"),
            vec![
                (Tok::Word, "host", 1),
                (Tok::Word, "10.0.0.0", 6),
                (Tok::Slash, "/", 14),
                (Tok::Word, "8", 15),
                (Tok::AndAnd, "&&", 16),
                (Tok::Bang, "!", 18),
                (Tok::LParen, "(", 19),
                (Tok::Word, "port", 20),
                (Tok::Word, "ftp-data", 25),
                (Tok::RParen, ")", 33),
                (Tok::OrOr, "||", 34),
                (Tok::Word, "x", 36),
            ]
        );
    }

    #[test]
    fn escapes_and_junk() {
        assert_eq!(
            kinds("proto \\tcp tcp[13] != 0 & \\"),
            vec![
                (Tok::Word, "proto", 1),
                (Tok::Escaped, "tcp", 7),
                (Tok::Word, "tcp", 12),
                (Tok::Other, "[", 15),
                (Tok::Word, "13", 16),
                (Tok::Other, "]", 18),
                (Tok::Other, "!=", 20),
                (Tok::Word, "0", 23),
                (Tok::Other, "&", 25),
                (Tok::Other, "\\", 27),
            ]
        );
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(
            kinds("é host"),
            vec![(Tok::Other, "é", 1), (Tok::Word, "host", 3)]
        );
        assert_eq!(kinds("  \t "), vec![]);
    }
}
