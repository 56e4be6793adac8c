//! quota-dash: quota's dashboard. A web server that shows and changes trees
//! through the quota commands only, so it works on the module and on the Lua
//! library alike.
//!
//! - `options`: the command line (where Redis is, where to listen, the token).
//! - `quota`: the only way to Redis, a closed set of commands.
//! - `web`: the page frame, form answers, formatting, and the guard (token,
//!   same-origin writes, loopback Host names).
//! - one module per section: `trees` (find a tree), `tree` (the tree and the
//!   node inspector), `edit` (every write form), `plans`, `prices`,
//!   `analytics` (usage over time), `events` (the live feed).

mod analytics;
mod edit;
mod events;
mod options;
mod plans;
mod prices;
mod quota;
mod tree;
mod trees;
mod web;

use std::sync::Arc;

use axum::Router;
use axum::response::Redirect;
use axum::routing::get;

use crate::options::Parsed;
use crate::web::{App, Inner};

fn routes(app: App) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/trees") }))
        .route("/login", get(web::login_form).post(web::login))
        .route("/logout", axum::routing::post(web::logout))
        .route("/assets/{name}", get(web::asset))
        .merge(trees::routes())
        .merge(plans::routes())
        .merge(prices::routes())
        .merge(edit::routes())
        .merge(analytics::routes())
        .merge(events::routes())
        .merge(tree::routes())
        .layer(axum::middleware::from_fn_with_state(app.clone(), web::guard))
        .with_state(app)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match options::parse(&args, std::env::var("QUOTA_DASH_TOKEN").ok()) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{}", options::USAGE);
            return;
        }
        Err(e) => {
            eprintln!("quota-dash: {e}");
            std::process::exit(2);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Err(e) = web::init_secret() {
        eprintln!("quota-dash: {e}");
        std::process::exit(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quota-dash: cannot start: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(serve(*options)) {
        eprintln!("quota-dash: {e}");
        std::process::exit(1);
    }
}

async fn serve(o: options::Options) -> Result<(), String> {
    let quota = quota::Quota::connect(&o).await?;
    let listener =
        tokio::net::TcpListener::bind(o.listen).await.map_err(|e| format!("cannot listen on {}: {e}", o.listen))?;
    let shown = listener.local_addr().map_or(o.listen.to_string(), |a| a.to_string());
    println!(
        "quota-dash: http://{shown}/ for {} ({}{}{})",
        quota.server,
        quota.backend.name(),
        if o.read_only { ", read-only" } else { "" },
        if o.token.is_some() { ", token required" } else { "" }
    );
    let app = App(Arc::new(Inner { quota, token: o.token, feeds: Default::default() }));
    axum::serve(listener, routes(app)).await.map_err(|e| format!("the server stopped: {e}"))
}
