//! Who may talk to the dashboard: the one-time token (in `?token=` or the per-port cookie the page
//! gets on its first load), the Host header (only `127.0.0.1:PORT` or `localhost:PORT`, against DNS
//! rebinding), and no cross-site requests (Origin and Sec-Fetch-Site). It also owns the security
//! headers every answer carries. It decides from the request head alone and must not read bodies or
//! log the token.

use http::header::{HeaderMap, HeaderValue};
use http::StatusCode;

/// The dashboard's secret and where it listens.
#[derive(Clone)]
pub struct Gate {
    token: String,
    port: u16,
}

/// Why a request is refused: its status and a sentence for whoever sent it.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 403, 405 or 421.
    pub status: StatusCode,
    /// What happened and what to do.
    pub message: &'static str,
}

impl Gate {
    /// A gate with a fresh random token: 32 bytes from the OS, hex.
    pub fn new(port: u16) -> Result<Gate, getrandom::Error> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw)?;
        let token = raw.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Gate { token, port })
    }

    #[cfg(test)]
    pub fn with_token(token: &str, port: u16) -> Gate {
        Gate {
            token: token.into(),
            port,
        }
    }

    /// The address to open, token included.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/?token={}", self.port, self.token)
    }

    /// The cookie's name: per port, since browsers share cookies between ports of one host.
    fn cookie_name(&self) -> String {
        format!("airlock_dashboard_{}", self.port)
    }

    /// The `Set-Cookie` value that carries the token after the first load.
    pub fn set_cookie(&self) -> String {
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            self.cookie_name(),
            self.token
        )
    }

    /// Checks one request head. `query` is the URI's query string.
    pub fn check(
        &self,
        method: &http::Method,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(), Refusal> {
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        let ours = [
            format!("127.0.0.1:{}", self.port),
            format!("localhost:{}", self.port),
        ];
        if !host.is_some_and(|h| ours.iter().any(|o| o.eq_ignore_ascii_case(h))) {
            return Err(Refusal {
                status: StatusCode::MISDIRECTED_REQUEST,
                message:
                    "this is the Airlock dashboard, which answers only to http://127.0.0.1:PORT \
                          or http://localhost:PORT; open the URL `airlock dashboard` printed",
            });
        }
        if let Some(origin) = headers.get(http::header::ORIGIN) {
            let ok = origin.to_str().is_ok_and(|o| {
                ours.iter()
                    .any(|h| o.eq_ignore_ascii_case(&format!("http://{h}")))
            });
            if !ok {
                return Err(cross_site());
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            if !matches!(site.to_str(), Ok("same-origin" | "none")) {
                return Err(cross_site());
            }
        }
        if method != http::Method::GET && method != http::Method::HEAD {
            return Err(Refusal {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: "the dashboard only shows things: it answers GET requests only",
            });
        }
        let presented = query_token(query).or_else(|| self.cookie_token(headers));
        if !presented.is_some_and(|t| same(t.as_bytes(), self.token.as_bytes())) {
            return Err(Refusal {
                status: StatusCode::FORBIDDEN,
                message:
                    "this request has no valid dashboard token: open the URL with ?token=… that \
                          `airlock dashboard` printed (each run makes a new one)",
            });
        }
        Ok(())
    }

    fn cookie_token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        let name = self.cookie_name();
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

fn cross_site() -> Refusal {
    Refusal {
        status: StatusCode::FORBIDDEN,
        message: "cross-site request refused: only the dashboard's own page may call it",
    }
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v)
}

/// Compares in time that does not depend on where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The headers every answer carries: no framing, no caching, no referrer, scripts only from here.
pub fn secure(headers: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    );
    set(headers, "x-frame-options", "DENY");
    set(headers, "cache-control", "no-store");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "cross-origin-resource-policy", "same-origin");
    set(headers, "cross-origin-opener-policy", "same-origin");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn head(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const T: &str = "abc123";

    #[test]
    fn the_token_is_needed_in_the_query_or_the_cookie() {
        let g = Gate::with_token(T, 8080);
        let h = head(&[("host", "127.0.0.1:8080")]);
        assert_eq!(g.check(&Method::GET, &h, Some("token=abc123")), Ok(()));
        assert_eq!(g.check(&Method::GET, &h, Some("x=1&token=abc123")), Ok(()));
        assert_eq!(g.check(&Method::GET, &h, None).unwrap_err().status, 403);
        assert_eq!(
            g.check(&Method::GET, &h, Some("token=abc124"))
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            g.check(&Method::GET, &h, Some("token=abc12"))
                .unwrap_err()
                .status,
            403
        );
        let c = head(&[
            ("host", "localhost:8080"),
            ("cookie", "a=b; airlock_dashboard_8080=abc123"),
        ]);
        assert_eq!(g.check(&Method::GET, &c, None), Ok(()));
        // Another port's dashboard cookie is not this one's.
        let other = head(&[
            ("host", "localhost:8080"),
            ("cookie", "airlock_dashboard_9090=abc123"),
        ]);
        assert_eq!(g.check(&Method::GET, &other, None).unwrap_err().status, 403);
        assert!(g.set_cookie().contains("HttpOnly") && g.set_cookie().contains("SameSite=Strict"));
    }

    #[test]
    fn another_host_is_misdirected_even_with_the_token() {
        let g = Gate::with_token(T, 8080);
        for host in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "localhost.evil:8080",
        ] {
            let h = head(&[("host", host)]);
            assert_eq!(
                g.check(&Method::GET, &h, Some("token=abc123"))
                    .unwrap_err()
                    .status,
                421,
                "{host}"
            );
        }
        assert_eq!(
            g.check(&Method::GET, &HeaderMap::new(), Some("token=abc123"))
                .unwrap_err()
                .status,
            421
        );
    }

    #[test]
    fn cross_site_requests_and_writes_are_refused() {
        let g = Gate::with_token(T, 8080);
        let q = Some("token=abc123");
        let ok = head(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(g.check(&Method::GET, &ok, q), Ok(()));
        let typed = head(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "none")]);
        assert_eq!(g.check(&Method::GET, &typed, q), Ok(()));
        let evil = head(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(g.check(&Method::GET, &evil, q).unwrap_err().status, 403);
        let site = head(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]);
        assert_eq!(g.check(&Method::GET, &site, q).unwrap_err().status, 403);
        let same_site = head(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]);
        assert_eq!(
            g.check(&Method::GET, &same_site, q).unwrap_err().status,
            403
        );
        let h = head(&[("host", "127.0.0.1:8080")]);
        assert_eq!(g.check(&Method::POST, &h, q).unwrap_err().status, 405);
    }

    #[test]
    fn tokens_are_fresh_and_long() {
        let (a, b) = (Gate::new(1).unwrap(), Gate::new(1).unwrap());
        assert_eq!(a.token.len(), 64);
        assert_ne!(a.token, b.token);
        assert!(a.url().starts_with("http://127.0.0.1:1/?token="));
    }
}
