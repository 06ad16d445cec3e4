//! Playing the browser against a fake: from an authorization URL to the
//! callback it sends the browser to.

use std::collections::BTreeMap;

/// Where a browser ends up after an authorization URL: the callback's URL,
/// whether it was POSTed (form_post) and its parameters.
#[derive(Debug, Clone)]
pub struct Callback {
    pub post: bool,
    pub url: String,
    pub params: BTreeMap<String, String>,
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let rest = tag.split(&format!("{name}=\"")).nth(1)?;
    Some(unescape(rest.split('"').next()?))
}

/// GET `url` (no redirects followed) and read the fake's answer as the
/// callback: a 302's `Location`, or a form_post page's form.
pub async fn follow(client: &reqwest::Client, url: &str) -> Result<Callback, String> {
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    if status.is_redirection() {
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or("a redirect without Location")?
            .to_owned();
        let parsed = url::Url::parse(&location).map_err(|e| e.to_string())?;
        let params = parsed.query_pairs().into_owned().collect();
        return Ok(Callback {
            post: false,
            url: location,
            params,
        });
    }
    let body = resp.text().await.unwrap_or_default();
    let Some(form) = body.split("<form method=\"post\"").nth(1) else {
        return Err(format!("the provider answered {status}: {body}"));
    };
    let form = form.split("</form>").next().unwrap_or("");
    let action = attr(form.split('>').next().unwrap_or(""), "action").ok_or("no action")?;
    let params = form
        .split("<input ")
        .skip(1)
        .filter_map(|tag| Some((attr(tag, "name")?, attr(tag, "value")?)))
        .collect();
    Ok(Callback {
        post: true,
        url: action,
        params,
    })
}
