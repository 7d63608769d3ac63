//! Cookie mode for the browser over HTTP: cookie attributes, cookies accepted like bearer
//! tokens, the CSRF defence on unsafe requests, renewal and logout through cookies, the
//! page's security headers, and CORS for allowed origins only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};
use support::{TestApp, spawn_app_with};

/// A server that allows one other origin's single-page app.
async fn app() -> TestApp {
    spawn_app_with(|config| {
        config.cors_origins = vec!["http://app.localhost:3000".parse().unwrap()];
    })
    .await
}

/// The browser's cookie jar after a login, as `name=value` pairs.
struct Jar {
    access: String,
    refresh: String,
    csrf: String,
}

impl Jar {
    fn all(&self) -> String {
        format!(
            "__Host-tessera-access={}; __Secure-tessera-refresh={}; __Host-tessera-csrf={}",
            self.access, self.refresh, self.csrf
        )
    }
}

fn cookie_value(set_cookies: &[String], name: &str) -> String {
    set_cookies
        .iter()
        .find_map(|cookie| cookie.strip_prefix(&format!("{name}=")))
        .map(|rest| rest.split(';').next().unwrap().to_owned())
        .unwrap()
}

impl TestApp {
    async fn browser_login(&self, username: &str) -> (Jar, Vec<String>) {
        self.http
            .post(format!("{}/auth/signup", self.base))
            .json(&json!({"username": username, "password": "correct horse"}))
            .send()
            .await
            .unwrap();
        let response = self
            .http
            .post(format!("{}/auth/browser/login", self.base))
            .json(&json!({"username": username, "password": "correct horse"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        let body: Value = response.json().await.unwrap();
        let jar = Jar {
            access: cookie_value(&set_cookies, "__Host-tessera-access"),
            refresh: cookie_value(&set_cookies, "__Secure-tessera-refresh"),
            csrf: cookie_value(&set_cookies, "__Host-tessera-csrf"),
        };
        assert_eq!(body["csrf_token"], jar.csrf.as_str());
        assert!(body.get("access_token").is_none());
        (jar, set_cookies)
    }

    /// `127.0.0.1:PORT`, as browsers send it in `Host`.
    fn host(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    fn request(&self, method: reqwest::Method, path: &str, jar: &Jar) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(COOKIE, jar.all())
            .header(HOST, self.host())
    }
}

#[tokio::test]
async fn a_browser_login_sets_cookies_script_cannot_read() {
    let app = app().await;

    let (_, set_cookies) = app.browser_login("alice").await;

    let access = set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-tessera-access="))
        .unwrap();
    let refresh = set_cookies
        .iter()
        .find(|c| c.starts_with("__Secure-tessera-refresh="))
        .unwrap();
    let csrf = set_cookies
        .iter()
        .find(|c| c.starts_with("__Host-tessera-csrf="))
        .unwrap();
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/;"] {
        assert!(access.contains(attribute), "{access}");
    }
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/auth/browser;",
    ] {
        assert!(refresh.contains(attribute), "{refresh}");
    }
    assert!(!csrf.contains("HttpOnly") && csrf.contains("Secure"));
}

#[tokio::test]
async fn the_access_cookie_works_like_a_bearer_token_for_safe_requests() {
    let app = app().await;
    let (jar, _) = app.browser_login("bob").await;

    let me = app
        .request(reqwest::Method::GET, "/userinfo", &jar)
        .send()
        .await
        .unwrap();

    assert_eq!(me.status(), StatusCode::OK);
    let body: Value = me.json().await.unwrap();
    assert_eq!(body["username"], "bob");
}

#[tokio::test]
async fn unsafe_cookie_requests_need_the_csrf_token_and_this_origin() {
    let app = app().await;
    let (jar, _) = app.browser_login("carol").await;
    let note = json!({"title": "t"});
    let own_origin = app.base.clone();

    let without_token = app
        .request(reqwest::Method::POST, "/api/notes", &jar)
        .header(ORIGIN, &own_origin)
        .json(&note)
        .send()
        .await
        .unwrap();
    let foreign_origin = app
        .request(reqwest::Method::POST, "/api/notes", &jar)
        .header("x-csrf-token", &jar.csrf)
        .header(ORIGIN, "http://evil.example")
        .json(&note)
        .send()
        .await
        .unwrap();
    let wrong_token = app
        .request(reqwest::Method::POST, "/api/notes", &jar)
        .header("x-csrf-token", "guessed")
        .header(ORIGIN, &own_origin)
        .json(&note)
        .send()
        .await
        .unwrap();
    let proper = app
        .request(reqwest::Method::POST, "/api/notes", &jar)
        .header("x-csrf-token", &jar.csrf)
        .header(ORIGIN, &own_origin)
        .json(&note)
        .send()
        .await
        .unwrap();

    for refused in [without_token, foreign_origin, wrong_token] {
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "csrf_refused");
    }
    assert_eq!(proper.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn renewal_and_logout_work_through_cookies() {
    let app = app().await;
    let (jar, _) = app.browser_login("dave").await;

    let refreshed = app
        .request(reqwest::Method::POST, "/auth/browser/refresh", &jar)
        .header("x-csrf-token", &jar.csrf)
        .header(ORIGIN, &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let set_cookies: Vec<String> = refreshed
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .collect();
    let renewed = Jar {
        access: cookie_value(&set_cookies, "__Host-tessera-access"),
        refresh: cookie_value(&set_cookies, "__Secure-tessera-refresh"),
        csrf: cookie_value(&set_cookies, "__Host-tessera-csrf"),
    };
    assert_ne!(renewed.refresh, jar.refresh);

    let forged_logout = app
        .request(reqwest::Method::POST, "/auth/browser/logout", &renewed)
        .header(ORIGIN, &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(forged_logout.status(), StatusCode::FORBIDDEN);
    let logout = app
        .request(reqwest::Method::POST, "/auth/browser/logout", &renewed)
        .header("x-csrf-token", &renewed.csrf)
        .header(ORIGIN, &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let cleared = logout.headers().get_all(SET_COOKIE).iter().count();
    assert_eq!(cleared, 3);
    let after = app
        .request(reqwest::Method::GET, "/userinfo", &renewed)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
    let session = app
        .request(reqwest::Method::GET, "/auth/browser/session", &renewed)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_page_is_served_with_strict_security_headers() {
    let app = app().await;

    let page = app.http.get(format!("{}/", app.base)).send().await.unwrap();

    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"));
    assert!(csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains("<html"));
}

#[tokio::test]
async fn cors_answers_allowed_origins_only_and_never_with_credentials() {
    let app = app().await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/userinfo", app.base))
            .header(ORIGIN, origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };

    let allowed = preflight("http://app.localhost:3000").await.unwrap();
    let refused = preflight("http://evil.example").await.unwrap();

    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://app.localhost:3000"
    );
    assert!(
        allowed
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
