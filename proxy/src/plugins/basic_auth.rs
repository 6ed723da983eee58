//! Kong's `basic-auth` (PRIORITY 1100, access): `Proxy-Authorization`, then `Authorization`,
//! `Basic base64(username:password)`, checked against consumers' `basicauth_credentials`. No
//! credentials: 401 "Unauthorized"; wrong ones: 401 "Unauthorized"; both with
//! `WWW-Authenticate: Basic realm="<realm>"`. `hide_credentials` strips the header upstream.

use base64::Engine;
use http::header::{HeaderValue, AUTHORIZATION, PROXY_AUTHORIZATION, WWW_AUTHENTICATE};
use proxy_config::plugins::BasicAuthConfig;

use super::consumers::{Consumers, Credential};
use super::key_auth::challenge;
use super::{AccessCtx, BuildError, Phases, Plugin};
use crate::respond::PluginReply;

#[derive(Debug)]
pub(crate) struct BasicAuth {
    anonymous: Option<String>,
    hide_credentials: bool,
    challenge: HeaderValue,
}

impl BasicAuth {
    pub(crate) const NAME: &'static str = "basic-auth";

    pub(crate) fn new(c: &BasicAuthConfig) -> Result<Self, BuildError> {
        Ok(BasicAuth {
            anonymous: c.anonymous.clone().filter(|a| !a.is_empty()),
            hide_credentials: c.hide_credentials,
            challenge: challenge("Basic", Some(&c.realm))?,
        })
    }

    fn refuse(&self) -> Box<PluginReply> {
        let mut r = PluginReply::new(401, "Unauthorized");
        r.headers.insert(WWW_AUTHENTICATE, self.challenge.clone());
        Box::new(r)
    }

    fn find(&self, req: &mut AccessCtx<'_>) -> Result<Credential, Box<PluginReply>> {
        let consumers: &Consumers = req.consumers;
        // Kong reads Proxy-Authorization first; a header that does not verify lets the next one try.
        for name in [PROXY_AUTHORIZATION, AUTHORIZATION] {
            let Some(v) = req.parts.headers.get(&name) else { continue };
            if let Some(cred) = credentials(v).and_then(|(u, p)| consumers.by_password(&u, p.as_bytes()).cloned()) {
                if self.hide_credentials {
                    req.parts.headers.remove(name);
                }
                return Ok(cred);
            }
        }
        Err(self.refuse())
    }
}

/// `Basic <base64(user:password)>` → (user, password).
fn credentials(v: &HeaderValue) -> Option<(String, String)> {
    let s = v.to_str().ok()?.trim();
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

impl Plugin for BasicAuth {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn priority(&self) -> u32 {
        1100
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        Consumers::authenticate(req, self.anonymous.as_deref(), true, |req| self.find(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_parse() {
        let v = HeaderValue::from_static("Basic dXNlcjpwYTpzcw==");
        assert_eq!(credentials(&v), Some(("user".into(), "pa:ss".into())));
        assert_eq!(credentials(&HeaderValue::from_static("Bearer x")), None);
        assert_eq!(credentials(&HeaderValue::from_static("Basic !!")), None);
    }
}
