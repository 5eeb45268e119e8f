//! Shell quoting of the command lines dualcheck prints (reproduction lines,
//! environment files): `shlex`, so that a line pasted into `sh` gives back
//! exactly the words it was made of.

/// `s` as one shell word: unchanged when every character is one a shell
/// leaves alone (letters, digits, `-_./=:,+@%`: what fault lists, flags and
/// paths are made of, so the lines stay readable), quoted by `shlex` otherwise.
/// A NUL byte cannot be passed in a POSIX argument at all; it is dropped
/// (no command dualcheck prints can carry one).
pub fn quote(s: &str) -> String {
    let clean: String;
    let s = if s.contains('\0') {
        clean = s.replace('\0', "");
        &clean
    } else {
        s
    };
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        return s.to_string();
    }
    shlex::try_quote(s)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| format!("'{}'", s.replace('\'', "'\\''")))
}

/// The words as one shell line, each quoted as [`quote`] does.
pub fn quote_line<S: AsRef<str>>(words: &[S]) -> String {
    words.iter().map(|w| quote(w.as_ref())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_line_splits_back_into_its_words() {
        let words = [
            "dualcheck",
            "run",
            "--cmd",
            "sh -c 'echo $HOME'",
            "",
            "a\"b",
            "x=y,z",
            "ünï",
        ];
        let line = quote_line(&words);
        assert_eq!(shlex::split(&line).unwrap(), words);
    }

    #[test]
    fn plain_words_stay_plain() {
        assert_eq!(quote("kafka-partition,pg-kill"), "kafka-partition,pg-kill");
        assert_eq!(quote("--seed"), "--seed");
    }
}
