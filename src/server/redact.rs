//! What an outside system's failure may say to a client or a log: never a URL. A Slack
//! incoming webhook's URL *is* its secret, a webhook URL often carries a token in its query,
//! and reqwest's error text names the URL it was sending to (`error sending request for url
//! (…)`). Every error from an HTTP call to an outside system is worded here, and every text an
//! outside system answered is passed through `without_urls` before it is stored or shown.
//!
//! Text the server did not write itself (the output of the commands the rollback runs) is passed
//! through `Secrets::redact`: every configured secret, and a database URL's password alone,
//! replaced by `***`.

/// reqwest's message without the URL: what went wrong, in words.
pub fn outside_error(e: reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    if e.is_connect() {
        return "connection refused or failed".into();
    }
    let e = e.without_url();
    let mut text = e.to_string();
    // The causes (hyper, the TLS library) may name the host or the URL again.
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    without_urls(&text)
}

/// `text` with every `scheme://…` run replaced by `<url>` (up to a space, a quote, a bracket or
/// an angle bracket).
pub fn without_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters (and + - .) just before `://`.
        let scheme_len = rest[..at]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .map(char::len_utf8)
            .sum::<usize>();
        let start = at - scheme_len;
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '(' | '<' | '>' | '`' | ']' | '['))
            .map_or(rest.len(), |e| at + e);
        out.push_str(&rest[..start]);
        out.push_str("<url>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_go_whatever_their_scheme_and_surroundings() {
        assert_eq!(
            without_urls("error sending request for url (https://hooks.slack.com/services/T0/B0/secret): boom"),
            "error sending request for url (<url>): boom"
        );
        assert_eq!(without_urls("\"http://u:p@h/x?token=1\" and ws://h"), "\"<url>\" and <url>");
        assert_eq!(without_urls("no url here: a://"), "no url here: <url>");
        assert_eq!(without_urls("plain text"), "plain text");
        assert_eq!(without_urls("ünïcode https://x/ü tail"), "ünïcode <url> tail");
    }

    #[tokio::test]
    async fn a_failed_call_does_not_name_its_url() {
        // Nothing listens on port 1: the connection fails at once.
        let secret = "http://127.0.0.1:1/services/T000/B000/XXXXsecretXXXX";
        let e = reqwest::Client::new().post(secret).send().await.unwrap_err();
        assert!(e.to_string().contains("XXXXsecretXXXX"), "reqwest's own text names it: {e}");
        let said = outside_error(e);
        assert!(!said.contains("secret") && !said.contains("127.0.0.1"), "{said}");
        // A URL that does not parse as a host fails before connecting: still not named.
        let e = reqwest::Client::new().get("http://exa mple.invalid/secretpath").send().await.unwrap_err();
        assert!(!outside_error(e).contains("secretpath"));
    }
}

/// Every configured secret's value (`Config::secret_values`), longest first, for `redact`.
#[derive(Debug, Clone, Default)]
pub struct Secrets(std::sync::Arc<Vec<String>>);

/// Shorter values are not searched for (a one-letter password would blank every such letter);
/// start-up warns about them instead.
pub const SHORTEST_SECRET: usize = 4;

impl Secrets {
    pub fn new(values: impl IntoIterator<Item = String>) -> Secrets {
        let mut all: Vec<String> = Vec::new();
        for v in values {
            if let Some(p) = url_password(&v) {
                all.push(percent_decoded(&p));
                all.push(p);
            }
            all.push(v);
        }
        all.retain(|v| v.len() >= SHORTEST_SECRET);
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Secrets(std::sync::Arc::new(all))
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_string(), |t, s| if t.contains(s.as_str()) { t.replace(s.as_str(), "***") } else { t })
    }
}

/// `%40` as `@` and so on (what a program that parsed the URL prints); invalid escapes kept.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The password of `scheme://user:password@host…`, as written.
fn url_password(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let password = &userinfo[userinfo.find(':')? + 1..];
    (!password.is_empty()).then(|| password.to_string())
}

#[cfg(test)]
mod secrets_tests {
    use super::*;

    #[test]
    fn every_secret_and_a_urls_password_are_masked_longest_first() {
        let s = Secrets::new([
            "postgres://rollout:pa55word-x@db.internal:5432/diary".to_string(),
            "hook-token-123".to_string(),
            "hook-token-123-and-more".to_string(),
            "abc".to_string(),
        ]);
        let out = s.redact(
            "connecting to postgres://rollout:pa55word-x@db.internal:5432/diary failed; password pa55word-x \
             rejected; hook-token-123-and-more / hook-token-123; abc stays",
        );
        assert_eq!(out, "connecting to *** failed; password *** rejected; *** / ***; abc stays");
        assert_eq!(url_password("postgres://u@h/db"), None);
        assert_eq!(url_password("postgres://u:p%40ss@h/db").as_deref(), Some("p%40ss"));
        let encoded = Secrets::new(["postgres://u:p%40ss-word@h/db".to_string()]);
        assert_eq!(encoded.redact("auth failed for p@ss-word and p%40ss-word"), "auth failed for *** and ***");
        assert_eq!(Secrets::default().redact("nothing"), "nothing");
    }
}
