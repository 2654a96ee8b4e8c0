//! Live refresh of a server-rendered region, with none of the region's code in the browser: the
//! page is fetched again at the interval the server states on the region (`data-refresh-secs`)
//! and the fresh region takes the old one's place. The values are rendered once, on the server,
//! the same way for the first load and for every refresh.

use leptos::prelude::*;

/// The refresh for the region with id `region`. When the dashboard does not answer, the region
/// keeps its last values and the line this island renders says so and since when.
#[island]
pub fn LiveRefresh(region: String) -> impl IntoView {
    #[cfg(feature = "hydrate")]
    client::schedule(region.clone(), None);
    view! { <p class="live-error" role="alert" data-testid="live-error" id=format!("{region}-error") hidden></p> }
}

#[cfg(feature = "hydrate")]
mod client {
    use std::time::Duration;

    use leptos::prelude::{document, set_timeout};

    /// Seconds between refreshes when the region does not state them (it always should).
    const DEFAULT_SECS: u64 = 10;

    pub fn schedule(region: String, failing_since: Option<String>) {
        let secs = document()
            .get_element_by_id(&region)
            .and_then(|e| e.get_attribute("data-refresh-secs"))
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(DEFAULT_SECS)
            .max(1);
        set_timeout(
            move || {
                leptos::task::spawn_local(async move {
                    let failing_since = match refresh(&region).await {
                        Ok(()) => {
                            show(&region, None);
                            None
                        }
                        Err(why) => {
                            let since = failing_since.unwrap_or_else(crate::components::client::now_utc);
                            show(
                                &region,
                                Some(format!(
                                    "{why}; the values below are from the last refresh. Failing since {since}."
                                )),
                            );
                            Some(since)
                        }
                    };
                    schedule(region, failing_since);
                })
            },
            Duration::from_secs(secs),
        );
    }

    async fn refresh(region: &str) -> Result<(), String> {
        crate::components::client::swap(&crate::components::client::here(), &[region]).await
    }

    fn show(region: &str, error: Option<String>) {
        if let Some(line) = document().get_element_by_id(&format!("{region}-error")) {
            line.set_text_content(error.as_deref());
            if error.is_some() {
                let _ = line.remove_attribute("hidden");
            } else {
                let _ = line.set_attribute("hidden", "");
            }
        }
    }
}
