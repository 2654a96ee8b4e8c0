//! The HTML shell, the root component and the routes.

use leptos::prelude::*;
use leptos_meta::HashedStylesheet;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{SsrMode, StaticSegment};

use crate::components::user_box::UserBox;
use crate::pages::audit::AuditPage;
use crate::pages::autopilot::AutopilotPage;
use crate::pages::login::LoginPage;
use crate::pages::overview::OverviewPage;
use crate::pages::reports::ReportsPage;
use crate::pages::rollback::RollbackPage;
use crate::pages::rollout::RolloutPage;

pub fn shell(options: LeptosOptions) -> impl IntoView {
    // The page's Content-Security-Policy, with the nonce its scripts carry, is set by the
    // server's middleware from the response itself (server/csp.rs), not here.
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                // One title for every page, in the shell: no leptos_meta context in the browser's
                // wasm (about 6 KiB of gzip in the main module).
                <title>"Split insulin doses: rollout"</title>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <HashedStylesheet options=options.clone() id="leptos"/>
                <HydrationScripts options islands=true/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    // Islands: the pages are rendered on the server only; the browser runs the code of the few
    // interactive parts (the islands: the rollout, autopilot and rollback controls, each a wasm
    // chunk of its own, and the overview's live refresh), so the router and every read-only page
    // stay out of the wasm. Links are plain navigations.
    view! {
        <Router>
            <header class="top">
                <span class="brand">"rollout-dashboard"</span>
                <span class="subtitle">"Split insulin doses"</span>
                <nav class="pages"><a href="/">"Overview"</a><a href="/rollout">"Rollout control"</a><a href="/autopilot">"Autopilot"</a><a href="/rollback">"Rollback"</a><a href="/reports">"Reports"</a><a href="/audit">"Audit"</a></nav>
                <span class="spacer"></span>
                <UserBox/>
            </header>
            <main>
                <Routes fallback=|| view! { <p>"Page not found."</p><PageHydrated/> }>
                    // Async: the page arrives complete, values included, before any script runs.
                    <Route path=StaticSegment("") view=|| view! { <OverviewPage/><PageHydrated/> } ssr=SsrMode::Async/>
                    <Route path=StaticSegment("login") view=|| view! { <LoginPage/><PageHydrated/> } ssr=SsrMode::Async/>
                    <Route path=StaticSegment("rollout") view=|| view! { <RolloutPage/><PageHydrated/> } ssr=SsrMode::Async/>
                    <Route path=StaticSegment("autopilot") view=|| view! { <AutopilotPage/><PageHydrated/> } ssr=SsrMode::Async/>
                    <Route path=StaticSegment("audit") view=|| view! { <AuditPage/><PageHydrated/> } ssr=SsrMode::Async/>
                    <Route path=StaticSegment("rollback") view=|| view! { <RollbackPage/><PageHydrated/> } ssr=SsrMode::Async/>
                    <Route path=StaticSegment("reports") view=|| view! { <ReportsPage/><PageHydrated/> } ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// Marks the page once the browser has taken over its interactive parts: islands hydrate in
/// document order, each waiting for its chunk, and this one comes last, so that tests and people
/// can tell the controls work.
#[island]
fn PageHydrated() -> impl IntoView {
    #[cfg(feature = "hydrate")]
    if let Some(body) = document().body() {
        let _ = body.set_attribute("data-hydrated", "true");
    }
}
