//! The knock page's HTML: one small document per answer, no JavaScript, no external
//! resources, readable on a phone (a viewport tag and one inline style). Every text from
//! outside goes through [`escape`]; the token is never written back.

use std::fmt::Write as _;
use std::net::IpAddr;

/// The form: the address that will be permitted, the token field and the button, and a notice
/// above them (the answer to a refused attempt), if any.
pub fn form(client: IpAddr, notice: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(notice) = notice {
        let _ = write!(body, "<p class=\"notice\">{}</p>", escape(notice));
    }
    let _ = write!(
        body,
        "<p>Your address: <b id=\"address\">{client}</b></p>\
         <form method=\"post\" action=\"/knock\">\
         <label for=\"token\">Token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" \
         autocapitalize=\"none\" autocorrect=\"off\" spellcheck=\"false\" required>\
         <button type=\"submit\">Let me in</button>\
         </form>\
         <p class=\"small\">Calls and registrations from this address will be let through for \
         a while.</p>"
    );
    document("Let me in", &body)
}

/// The answer after a knock that was let in.
pub fn permitted(message: &str) -> String {
    document(
        "Permitted",
        &format!(
            "<p class=\"ok\" id=\"result\">{}</p><p class=\"small\">You can close this page.</p>",
            escape(message)
        ),
    )
}

/// A page with a title and one message (refusals that are not answered with the form).
pub fn message(title: &str, message: &str) -> String {
    document(
        title,
        &format!("<p class=\"notice\" id=\"result\">{}</p>", escape(message)),
    )
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{title} - ipcountry</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>\n",
        title = escape(title),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f4f4f4;color:#222}\
main{max-width:26rem;margin:0 auto;padding:1.5rem 1rem}\
h1{font-size:1.6rem;margin:0 0 1rem}\
label{display:block;font-weight:600;margin:1rem 0 .3rem}\
input{box-sizing:border-box;width:100%;font-size:1.2rem;padding:.7rem;border:1px solid #888;border-radius:.4rem}\
button{margin-top:1rem;width:100%;font-size:1.3rem;padding:.8rem;border:0;border-radius:.4rem;background:#1a6b3a;color:#fff}\
.notice{background:#fde8e8;border-left:4px solid #b00;padding:.7rem}\
.ok{background:#e6f4ea;border-left:4px solid #1a6b3a;padding:.7rem;font-size:1.2rem}\
.small{font-size:.9rem;color:#555}";

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_shows_the_address_and_has_no_script() {
        let page = form("203.0.113.45".parse().unwrap(), Some("<b>no</b>"));
        assert!(page.contains("<b id=\"address\">203.0.113.45</b>"));
        assert!(page.contains("name=\"token\""));
        assert!(page.contains("Let me in"));
        assert!(page.contains("&lt;b&gt;no&lt;/b&gt;"), "{page}");
        assert!(!page.to_ascii_lowercase().contains("<script"));
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a&<>\"'\r"), "a&amp;&lt;&gt;&quot;&#39;\u{fffd}");
    }
}
