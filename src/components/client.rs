//! What the islands do over the network, with the browser's own fetch: send a change through the
//! REST API (the same door as `curl`, so both answer alike) and put fresh server-rendered regions
//! in place of the shown ones. No server-function client and no page data decoded in the
//! browser: the values are rendered once, on the server, for the first load and after a change.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// `POST url` with `body` as JSON: the answer decoded, or the API's sentence for a refusal
/// (`{"error": …}`), or what went wrong on the way.
pub async fn post<B: Serialize, T: DeserializeOwned>(url: &str, body: &B) -> Result<T, String> {
    let json = serde_json::to_string(body).map_err(|e| e.to_string())?;
    #[cfg(feature = "hydrate")]
    {
        let (status, text) = browser::fetch(url, Some(&json)).await?;
        if (200..300).contains(&status) {
            serde_json::from_str(&text).map_err(|_| "The dashboard's answer could not be read".to_string())
        } else {
            Err(refusal(&text))
        }
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (url, json);
        Err("only the browser sends changes".to_string())
    }
}

/// The sentence of a refusal body `{"error": "…", "code": …}`.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn refusal(text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Refusal {
        error: String,
    }
    serde_json::from_str::<Refusal>(text).map(|r| r.error).unwrap_or_else(|_| "The dashboard refused the change".into())
}

/// Reads the page at `url` and puts each of its elements with the ids `regions` in place of the
/// shown one (an unchanged region is left alone; a changed one keeps what was typed into it).
pub async fn swap(url: &str, regions: &[&str]) -> Result<(), String> {
    #[cfg(feature = "hydrate")]
    {
        let (status, html) = browser::fetch(url, None).await?;
        if !(200..300).contains(&status) {
            return Err(format!("The dashboard answered HTTP {status}"));
        }
        browser::replace(&html, regions)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = (url, regions);
        Ok(())
    }
}

/// Since when, and why, an island's periodic redraw has been failing (None while it works).
pub type Failing = leptos::prelude::RwSignal<Option<(String, String)>>;

/// Runs `redraw` every `secs` seconds while the island is shown, one at a time (a slow answer is
/// not overtaken by the next tick); the returned signal says since when and why it fails, so the
/// island can say its region shows the last values.
pub fn redraw_every<F, Fut>(secs: u64, redraw: F) -> Failing
where
    F: Fn() -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + 'static,
{
    use leptos::prelude::*;
    let failing: Failing = RwSignal::new(None);
    let busy = StoredValue::new(false);
    Effect::new(move |_| {
        let _ = set_interval_with_handle(
            move || {
                if busy.get_value() {
                    return;
                }
                busy.set_value(true);
                leptos::task::spawn_local(async move {
                    match redraw().await {
                        Ok(()) => failing.set(None),
                        Err(why) if failing.with_untracked(Option::is_none) => failing.set(Some((now_utc(), why))),
                        Err(_) => {}
                    }
                    busy.set_value(false);
                });
            },
            std::time::Duration::from_secs(secs),
        );
    });
    failing
}

/// The page's own address, to read its regions again.
pub fn here() -> String {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window().and_then(|w| w.location().href().ok()).unwrap_or_default()
    }
    #[cfg(not(feature = "hydrate"))]
    String::new()
}

/// Now, as the pages write times: `2026-12-02 14:05:09 UTC`.
pub fn now_utc() -> String {
    #[cfg(feature = "hydrate")]
    {
        let iso: String = js_sys::Date::new_0().to_iso_string().into();
        format!("{} {} UTC", iso.get(..10).unwrap_or(""), iso.get(11..19).unwrap_or(""))
    }
    #[cfg(not(feature = "hydrate"))]
    String::new()
}

#[cfg(feature = "hydrate")]
mod browser {
    use leptos::prelude::document;
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{
        DomParser, Element, Event, EventInit, Headers, HtmlInputElement, HtmlSelectElement, RequestInit, Response,
        SupportedType,
    };

    /// `GET url`, or `POST` with a JSON body: the status and the body.
    pub async fn fetch(url: &str, json: Option<&str>) -> Result<(u16, String), String> {
        let window = web_sys::window().ok_or("no window")?;
        let init = RequestInit::new();
        if let Some(json) = json {
            init.set_method("POST");
            let headers = Headers::new().map_err(|_| "no headers")?;
            headers.append("content-type", "application/json").map_err(|_| "no headers")?;
            init.set_headers(&headers);
            init.set_body(&JsValue::from_str(json));
        }
        let answer = JsFuture::from(window.fetch_with_str_and_init(url, &init))
            .await
            .map_err(|_| "The dashboard did not answer")?;
        let resp: Response = answer.unchecked_into();
        let body = resp.text().map_err(|_| "no body")?;
        let text = JsFuture::from(body).await.map_err(|_| "The answer was cut off")?.as_string().unwrap_or_default();
        Ok((resp.status(), text))
    }

    pub fn replace(html: &str, regions: &[&str]) -> Result<(), String> {
        let parsed = DomParser::new()
            .and_then(|p| p.parse_from_string(html, SupportedType::TextHtml))
            .map_err(|_| "The page could not be read")?;
        for region in regions {
            let fresh = parsed.get_element_by_id(region).ok_or("The page came back without its values")?;
            let current = document().get_element_by_id(region).ok_or("The region is gone")?;
            if current.outer_html() != fresh.outer_html() {
                let typed = typed_in(&current);
                current.replace_with_with_node_1(&fresh).map_err(|_| "The values could not be shown")?;
                retype(&typed);
            }
        }
        Ok(())
    }

    /// What a person has typed into the region's text fields and chosen in its selects (by id):
    /// a redrawn region keeps it.
    fn typed_in(region: &Element) -> Vec<(String, String)> {
        let Ok(fields) = region.query_selector_all("input[id], select[id]") else { return Vec::new() };
        (0..fields.length())
            .filter_map(|i| {
                let field = fields.item(i)?;
                if let Some(f) = field.dyn_ref::<HtmlInputElement>() {
                    (f.type_() == "text" && !f.value().is_empty()).then(|| (f.id(), f.value()))
                } else {
                    let s = field.dyn_ref::<HtmlSelectElement>()?;
                    (!s.value().is_empty()).then(|| (s.id(), s.value()))
                }
            })
            .collect()
    }

    /// The typed values put back, each text announced with a bubbling `input` event so that the
    /// page's listeners (a button enabled by a typed reason) see them as before; a choice is
    /// kept when the redrawn select still offers it.
    fn retype(typed: &[(String, String)]) {
        for (id, value) in typed {
            let Some(field) = document().get_element_by_id(id) else { continue };
            if let Some(select) = field.dyn_ref::<HtmlSelectElement>() {
                if select.value().is_empty() {
                    select.set_value(value);
                }
                continue;
            }
            if let Some(field) = field.dyn_ref::<HtmlInputElement>().filter(|f| f.value().is_empty()) {
                field.set_value(value);
                let init = EventInit::new();
                init.set_bubbles(true);
                if let Ok(ev) = Event::new_with_event_init_dict("input", &init) {
                    let _ = field.dispatch_event(&ev);
                }
            }
        }
    }
}
