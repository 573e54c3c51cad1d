//! The authorize stage's credential gate (`[credentials.<provider>]`): the key the app presents is
//! fingerprinted for the record (never kept); `deny_personal` refuses keys not on the org's list
//! (403 `personal_key_blocked`); `inject` replaces whatever the app sent with the named secret from
//! the credential store, in the header the provider reads (503 `credential_missing` if it was never
//! set). The secret is written into the outgoing request only. It must not log a key.

use http::header::{self, HeaderValue};
use http::StatusCode;

use super::exchange::{Exchange, CREDENTIAL_HEADERS};
use super::guard::RecordGuard;
use super::Pipeline;
use crate::credentials::fingerprint;
use crate::policy::credentials::CredentialMode;
use crate::policy::ApiKind;
use crate::providers::{self, dialect::AirlockError};

impl Pipeline {
    /// The credential gate: `Some` refuses the request.
    pub(super) fn apply_credentials(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Option<AirlockError> {
        let query = ex.target.path_and_query.split_once('?').map(|(_, q)| q);
        let presented = providers::credential_value(&ex.head.headers, query);
        let print = presented.as_deref().map(fingerprint);
        if let Some(fp) = &print {
            let fp = fp.clone();
            guard.note(|r| r.credential_fingerprint = Some(fp));
        }
        let rule = self
            .credential_rules
            .get(&ex.target.provider.to_ascii_lowercase())?;
        let provider = &ex.target.provider;
        match rule.mode {
            CredentialMode::Passthrough => None,
            CredentialMode::DenyPersonal => {
                if print
                    .as_ref()
                    .is_some_and(|f| rule.allowed_fingerprints.contains(f))
                {
                    return None;
                }
                let shown = print
                    .as_deref()
                    .map(|f| format!("its fingerprint {}…", &f[..f.len().min(19)]))
                    .unwrap_or_else(|| "the request carries no key".into());
                let mut err = AirlockError::new(
                    StatusCode::FORBIDDEN,
                    "personal_key_blocked",
                    format!(
                        "Airlock policy allows only the organisation's keys for {provider} ({shown} is not one of \
                         them); use the key your administrator gave you"
                    ),
                );
                err.should_retry = Some(false);
                Some(err)
            }
            CredentialMode::Inject => {
                let name = rule.secret.as_deref().unwrap_or_default();
                let Some(secret) = self.credential_store.as_ref().and_then(|s| s.get(name)) else {
                    let mut err = AirlockError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "credential_missing",
                        format!(
                            "Airlock should send the organisation's credential {name:?} to {provider}, but it was \
                             never set on this machine; an administrator sets it with `sudo airlock credentials set {name}`"
                        ),
                    );
                    err.should_retry = Some(false);
                    return Some(err);
                };
                let headers = &mut ex.head.headers;
                for h in &CREDENTIAL_HEADERS {
                    if *h != header::COOKIE && *h != header::PROXY_AUTHORIZATION {
                        headers.remove(h);
                    }
                }
                let (name_of, value) = match ex.target.api {
                    ApiKind::Anthropic => ("x-api-key", secret.expose().to_string()),
                    ApiKind::Gemini | ApiKind::CodeAssist => {
                        ("x-goog-api-key", secret.expose().to_string())
                    }
                    ApiKind::Azure => ("api-key", secret.expose().to_string()),
                    ApiKind::Openai | ApiKind::Ollama => {
                        ("authorization", format!("Bearer {}", secret.expose()))
                    }
                };
                let Ok(mut v) = HeaderValue::from_str(&value) else {
                    return Some(AirlockError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "credential_missing",
                        format!("the organisation's credential {name:?} is not a valid header value; set it again"),
                    ));
                };
                v.set_sensitive(true);
                headers.insert(header::HeaderName::from_static(name_of), v);
                if let Some((path, q)) = ex.target.path_and_query.split_once('?') {
                    let rest = providers::without_query_key(q);
                    ex.target.path_and_query = if rest.is_empty() {
                        path.to_string()
                    } else {
                        format!("{path}?{rest}")
                    };
                }
                guard.note(|r| r.credential = format!("injected:{name}"));
                None
            }
        }
    }
}
