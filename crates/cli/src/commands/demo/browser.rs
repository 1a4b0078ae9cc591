//! The person at the browser, for `heph demo`: opens the verification link
//! `heph auth login` printed, signs in on the built-in issuer's page and
//! approves the code — the same three requests a browser sends for the
//! page's HTML forms, with the CSRF cookie kept by hand.
//!
//! It speaks only plain HTTP to the demo's own hub on 127.0.0.1, follows no
//! redirect, and every request has a deadline. It knows the page only as a
//! browser does: form fields by name, the title, the error paragraph.

use std::time::Duration;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a page read.
const MAX_PAGE: u64 = 1 << 20;
/// The issuer's CSRF cookie.
const CSRF_COOKIE: &str = "__Host-heph_csrf";

/// A fetched page.
struct Page {
    status: u16,
    /// The CSRF cookie the answer set, if it set one.
    cookie: Option<String>,
    html: String,
}

impl Page {
    /// `200 "Sign in a device"`.
    fn describe(&self) -> String {
        format!(
            "{} \"{}\"",
            self.status,
            title(&self.html).unwrap_or_default()
        )
    }

    /// Why a page that should have moved on did not.
    fn refusal(&self, what: &str) -> String {
        let mut text = format!("{what} answered {}", self.describe());
        if let Some(error) = error_text(&self.html) {
            text.push_str(&format!(": {error}"));
        }
        text
    }
}

/// A browser with one cookie.
struct Browser {
    agent: ureq::Agent,
    cookie: Option<String>,
}

impl Browser {
    fn new() -> Self {
        heph_auth::install_crypto_provider();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_redirects(0)
            .user_agent(concat!("heph-demo/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Self {
            agent,
            cookie: None,
        }
    }

    fn read(
        &mut self,
        url: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Page, String> {
        let mut resp = resp.map_err(|e| format!("{url} did not answer ({e})"))?;
        let status = resp.status().as_u16();
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(csrf_from_set_cookie);
        let html = resp
            .body_mut()
            .with_config()
            .limit(MAX_PAGE)
            .read_to_string()
            .map_err(|e| format!("cannot read the page {url} ({e})"))?;
        if let Some(c) = &cookie {
            self.cookie = Some(c.clone());
        }
        Ok(Page {
            status,
            cookie,
            html,
        })
    }

    fn get(&mut self, url: &str) -> Result<Page, String> {
        let mut req = self.agent.get(url);
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", format!("{CSRF_COOKIE}={c}"));
        }
        let resp = req.call();
        self.read(url, resp)
    }

    fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Result<Page, String> {
        let mut req = self.agent.post(url);
        if let Some(c) = &self.cookie {
            req = req.header("Cookie", format!("{CSRF_COOKIE}={c}"));
        }
        let resp = req.send_form(form.iter().copied());
        self.read(url, resp)
    }
}

/// Opens `link` (a `verification_uri_complete`), signs in as `username`
/// and approves. Returns one line per request, for the transcript, and
/// the user name the approval page says is signed in.
pub fn approve(
    link: &str,
    username: &str,
    password: &str,
) -> Result<(Vec<String>, String), String> {
    let origin = origin_of(link).ok_or_else(|| format!("{link:?} is not an http(s) link"))?;
    let mut browser = Browser::new();
    let mut lines = Vec::new();

    let page = browser.get(link)?;
    if page.status != 200 || page.cookie.is_none() {
        return Err(page.refusal("the verification page"));
    }
    lines.push(format!("GET  {link}  → {}", page.describe()));
    let csrf = input_value(&page.html, "csrf").ok_or("the verification page has no csrf field")?;
    let code =
        input_value(&page.html, "user_code").ok_or("the verification page has no code field")?;
    let action = form_action(&page.html).ok_or("the verification page has no form")?;

    let url = format!("{origin}{action}");
    let page = browser.post(
        &url,
        &[
            ("csrf", &csrf),
            ("user_code", &code),
            ("username", username),
            ("password", password),
        ],
    )?;
    if page.status != 200 {
        return Err(page.refusal("the sign-in form"));
    }
    let who = signed_in_as(&page.html).unwrap_or_default();
    lines.push(format!(
        "POST {url}  (code {code}, user name {username}, the password)  → {}, signed in as {who}",
        page.describe()
    ));
    let ticket =
        input_value(&page.html, "ticket").ok_or("the approval page has no ticket field")?;
    let action = form_action(&page.html).ok_or("the approval page has no form")?;

    let url = format!("{origin}{action}");
    let page = browser.post(
        &url,
        &[
            ("csrf", &csrf),
            ("ticket", &ticket),
            ("decision", "approve"),
        ],
    )?;
    if page.status != 200 {
        return Err(page.refusal("the approval form"));
    }
    lines.push(format!(
        "POST {url}  (decision approve)  → {}",
        page.describe()
    ));
    Ok((lines, who))
}

/// `http://127.0.0.1:7447` of `http://127.0.0.1:7447/device?user_code=…`.
fn origin_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    (host_len > 0).then(|| &url[..url.len() - rest.len() + host_len])
}

/// The CSRF token of a `Set-Cookie` value, when it is the issuer's cookie.
fn csrf_from_set_cookie(header: &str) -> Option<String> {
    let first = header.split(';').next()?.trim();
    let (name, value) = first.split_once('=')?;
    (name == CSRF_COOKIE && !value.is_empty()).then(|| value.to_owned())
}

/// Undoes the page's HTML escaping.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The text between `start` and the next `end` after it.
fn between<'a>(html: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = html.find(start)? + start.len();
    let len = html[from..].find(end)?;
    Some(&html[from..from + len])
}

/// The value of the `<input name="…" value="…">` called `name`.
fn input_value(html: &str, name: &str) -> Option<String> {
    between(html, &format!("name=\"{name}\" value=\""), "\"").map(unescape)
}

/// The first form's `action`.
fn form_action(html: &str) -> Option<String> {
    let form = &html[html.find("<form")?..];
    between(form, "action=\"", "\"")
        .filter(|a| a.starts_with('/'))
        .map(unescape)
}

/// The page's heading.
fn title(html: &str) -> Option<String> {
    between(html, "<h1>", "</h1>").map(unescape)
}

/// The error paragraph of a page that refused.
fn error_text(html: &str) -> Option<String> {
    between(html, "<p class=\"error\">", "</p>").map(unescape)
}

/// Who the approval page says is signed in.
fn signed_in_as(html: &str) -> Option<String> {
    between(html, "Signed in as <strong>", "</strong>").map(unescape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let check =
            |url: &str, expected: Option<&str>| assert_eq!(origin_of(url), expected, "{url}");
        check(
            "http://127.0.0.1:7447/device?user_code=AB",
            Some("http://127.0.0.1:7447"),
        );
        check("https://hub.example", Some("https://hub.example"));
        check("https://hub.example?x=1", Some("https://hub.example"));
        check("ftp://hub.example/", None);
        check("http:///device", None);
    }

    #[test]
    fn the_csrf_cookie_is_read_from_set_cookie() {
        assert_eq!(
            csrf_from_set_cookie("__Host-heph_csrf=abc_DEF-1; Path=/; Secure; HttpOnly"),
            Some("abc_DEF-1".into())
        );
        assert_eq!(csrf_from_set_cookie("other=1; Path=/"), None);
        assert_eq!(csrf_from_set_cookie("__Host-heph_csrf=; Path=/"), None);
    }

    #[test]
    fn forms_are_read_like_a_browser_reads_them() {
        let html = "<h1>Approve this device?</h1><p>Signed in as <strong>d&amp;mo</strong>.</p>\
<form method=\"post\" action=\"/device/decision\"><input type=\"hidden\" name=\"csrf\" value=\"c1\">\
<input type=\"hidden\" name=\"ticket\" value=\"t&quot;2\"></form>";
        assert_eq!(title(html).as_deref(), Some("Approve this device?"));
        assert_eq!(signed_in_as(html).as_deref(), Some("d&mo"));
        assert_eq!(form_action(html).as_deref(), Some("/device/decision"));
        assert_eq!(input_value(html, "csrf").as_deref(), Some("c1"));
        assert_eq!(input_value(html, "ticket").as_deref(), Some("t\"2"));
        assert_eq!(input_value(html, "password"), None);
        let refused = Page {
            status: 401,
            cookie: None,
            html: "<h1>Sign in a device</h1>\n<p class=\"error\">The user name or password is incorrect.</p>".into(),
        };
        assert_eq!(
            refused.refusal("the sign-in form"),
            "the sign-in form answered 401 \"Sign in a device\": The user name or password is incorrect."
        );
    }
}
