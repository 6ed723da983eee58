//! Kong's `acl` (PRIORITY 950, access): allows or denies the authenticated consumer by the groups
//! of its `acls` (so it runs after the auth plugins). No consumer: 401 "Unauthorized"; a consumer
//! not allowed: 403 "You cannot consume this service" (PERMISSION_DENIED for gRPC). Unless
//! `hide_groups_header`, the consumer's groups go upstream in `X-Consumer-Groups`.

use proxy_config::plugins::AclConfig;

use super::consumers::X_CONSUMER_GROUPS;
use super::{AccessCtx, Phases, Plugin};
use crate::respond::PluginReply;

#[derive(Debug)]
pub(crate) struct Acl {
    allow: Vec<Box<str>>,
    deny: Vec<Box<str>>,
    hide_groups_header: bool,
}

impl Acl {
    pub(crate) const NAME: &'static str = "acl";

    pub(crate) fn new(c: &AclConfig) -> Self {
        let boxed = |v: &[String]| v.iter().map(|s| s.as_str().into()).collect();
        Acl { allow: boxed(&c.allow), deny: boxed(&c.deny), hide_groups_header: c.hide_groups_header }
    }

    /// Kong's rule: with `deny`, a consumer in any denied group is refused; with `allow`, a
    /// consumer in none of the allowed groups is.
    fn allows(&self, groups: &[Box<str>]) -> bool {
        let any = |list: &[Box<str>]| groups.iter().any(|g| list.contains(g));
        if self.deny.is_empty() {
            any(&self.allow)
        } else {
            !any(&self.deny)
        }
    }
}

impl Plugin for Acl {
    fn name(&self) -> &'static str {
        Self::NAME
    }
    fn priority(&self) -> u32 {
        950
    }
    fn phases(&self) -> Phases {
        Phases::ACCESS
    }
    fn access(&self, req: &mut AccessCtx<'_>) -> Result<(), Box<PluginReply>> {
        let consumer = req.state.consumer.as_ref().and_then(|c| req.consumers.get(c.index));
        let Some(consumer) = consumer else { return Err(Box::new(PluginReply::new(401, "Unauthorized"))) };
        if !self.allows(&consumer.groups) {
            return Err(Box::new(PluginReply::new(403, "You cannot consume this service")));
        }
        match (&consumer.groups_header, self.hide_groups_header) {
            (Some(v), false) => {
                req.parts.headers.insert(X_CONSUMER_GROUPS, v.clone());
            }
            _ => {
                req.parts.headers.remove(X_CONSUMER_GROUPS);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_and_deny_lists() {
        let groups: Vec<Box<str>> = vec!["gold".into(), "eu".into()];
        let allow = |a: &[&str], d: &[&str]| {
            let c: AclConfig = serde_json::from_value(serde_json::json!({"allow": a, "deny": d})).unwrap();
            Acl::new(&c).allows(&groups)
        };
        assert!(allow(&["gold"], &[]));
        assert!(!allow(&["silver"], &[]));
        assert!(!allow(&[], &["eu"]));
        assert!(allow(&[], &["us"]));
        assert!(!Acl::new(&serde_json::from_value(serde_json::json!({"allow": ["x"]})).unwrap()).allows(&[]));
    }
}
