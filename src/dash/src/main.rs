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
//!   `analytics` (usage over time), `events` (the live feed), `alerts_page` (the
//!   companion's status, its rules and dead letters) and `alerts`
//!   (`quota-dash alerts`, the companion that delivers events to webhooks
//!   and email).

mod alerts;
mod alerts_page;
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
use std::time::Duration;

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
        .merge(alerts_page::routes())
        .merge(tree::routes())
        .fallback(web::not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(web::panicked))
        .layer(axum::middleware::from_fn_with_state(app.clone(), web::guard))
        .with_state(app)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("alerts") {
        let _ = rustls::crypto::ring::default_provider().install_default();
        std::process::exit(alerts::main(&args[1..]));
    }
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
    accept(listener, routes(app), header_timeout()).await
}

/// At most this many connections are open at once; the next ones wait in
/// the listen queue until one closes (live feeds are capped lower, in events.rs).
const MAX_CONNECTIONS: usize = 512;

/// How long a client may take to send a request's head: a connection that
/// sends half a request and stops is closed then, not kept forever.
fn header_timeout() -> Duration {
    // Tests shorten it (not an option for people).
    std::env::var("QUOTA_DASH_HEADER_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// Serves HTTP/1.1 connections: each with a header-read timeout, and no
/// more than [`MAX_CONNECTIONS`] at once.
async fn accept(listener: tokio::net::TcpListener, router: Router, timeout: Duration) -> Result<(), String> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Err("the server stopped".to_string());
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors and the like: wait a little, go on.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(timeout);
            let _ = http.serve_connection(TokioIo::new(stream), service).with_upgrades().await;
        });
    }
}
