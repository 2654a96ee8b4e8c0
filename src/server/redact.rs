//! What an outside system's failure may say to a client or a log: never a URL. A Slack
//! incoming webhook's URL *is* its secret, a webhook URL often carries a token in its query,
//! and reqwest's error text names the URL it was sending to (`error sending request for url
//! (…)`). Every error from an HTTP call to an outside system is worded here, and every text an
//! outside system answered is passed through `without_urls` before it is stored or shown.

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
