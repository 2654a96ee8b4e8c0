//! Sign-in (local auth mode): a plain form that works before any script has loaded.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let error = move || {
        query.read().get("error").map(|e| match e.as_str() {
            "wrong" => "Wrong user name or password.",
            "too_many" => "Too many failed attempts for this name from here: each one more waits twice as long. Wait a little, then try again.",
            _ => "Sign-in is not available right now.",
        })
    };
    let next = move || query.read().get("next").unwrap_or_else(|| "/".into());
    view! {
        <section class="panel login" data-testid="login">
            <h2>"Sign in"</h2>
            {move || error().map(|e| view! { <p class="source-error" role="alert" data-testid="login-error">{e}</p> })}
            <form method="post" action="/auth/login">
                <label>"User name" <input name="username" autocomplete="username" required/></label>
                <label>"Password" <input name="password" type="password" autocomplete="current-password" required/></label>
                <input type="hidden" name="next" value=next/>
                <button type="submit" data-testid="login-submit">"Sign in"</button>
            </form>
            <p class="detail">"Viewers see everything; operators may also change the rollout."</p>
        </section>
    }
}
