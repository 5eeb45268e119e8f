//! Hiding passwords in what dualcheck prints and records: URLs, libpq
//! strings, properties. Every message or file that can carry a service's
//! address goes through [`redact`].

/// `s` with every password hidden: the password of each `scheme://user:PASSWORD@`
/// becomes `***`, and so does the value of every `password=` (or `password:`) field.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#` or whitespace; its last `@` ends the user info.
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    redact_fields(&out)
}

/// `password=VALUE` / `password: VALUE` (any case, as in libpq strings and
/// properties files) with the value replaced by `***`.
fn redact_fields(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(found) = lower[pos..].find("password") {
        let key_end = pos + found + "password".len();
        out.push_str(&s[pos..key_end]);
        let after = &s[key_end..];
        let sep_len = after.len() - after.trim_start_matches(['=', ':', ' ', '"']).len();
        let sep = &after[..sep_len];
        if sep.contains('=') || sep.contains(':') {
            out.push_str(sep);
            let value = &after[sep_len..];
            let value_len = value
                .find(|c: char| c.is_whitespace() || c == '&' || c == '"' || c == ',' || c == ';')
                .unwrap_or(value.len());
            if value_len > 0 {
                out.push_str("***");
            }
            pos = key_end + sep_len + value_len;
        } else {
            pos = key_end;
        }
    }
    out.push_str(&s[pos..]);
    out
}
