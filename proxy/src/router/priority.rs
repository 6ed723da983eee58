//! Route precedence: the sluice `priority` field, then Kong's derived order (`get_priority` in
//! Kong's `kong/router/transform.lua`), and Kong's splitting of a route with several paths into one
//! internal route per path group. The request-dependent tie-breakers (protocol family, then name)
//! live in the router, because they are not a property of the route alone.

use proxy_config::Route;

/// How a route ranks, highest first. Field order is comparison order (derived `Ord`).
///
/// Kong packs the same information into a 64-bit integer (weight in bits 61–63, plain-host bit 60,
/// header count 52–59, regex bit 51, regex_priority 19–50, prefix length 0–18); comparing the
/// fields keeps the order without the packing (and without its overflow on negative
/// `regex_priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Priority {
    /// sluice's explicit `priority`: any value outranks "unset" (`None < Some`).
    pub explicit: Option<u64>,
    /// Number of present fields among methods, hosts, headers, snis, paths.
    pub weight: u8,
    /// Hosts present and none of them a wildcard.
    pub plain_hosts_only: bool,
    /// Number of header names (Kong caps it at 255).
    pub header_count: u8,
    /// The path group is the regex group.
    pub regex: bool,
    /// `regex_priority`, counted only for the regex group.
    pub regex_priority: i64,
    /// Length of the plain prefixes of the group (all equal), 0 for regex or no paths.
    pub prefix_len: usize,
}

/// The paths of one internal route: all regex paths of a route, or its plain paths of one length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathGroup<'a> {
    /// The route has no paths.
    Any,
    /// Plain prefixes, all of the same length, with their 1-based positions in `paths`.
    Plain(Vec<(usize, &'a str)>),
    /// Regex paths (the `~` still on), with their 1-based positions in `paths`.
    Regex(Vec<(usize, &'a str)>),
}

/// Kong's grouping: regex paths in one group, plain paths grouped by byte length, groups in order
/// of first appearance.
pub(crate) fn group_paths(paths: &[String]) -> Vec<PathGroup<'_>> {
    if paths.is_empty() {
        return vec![PathGroup::Any];
    }
    let mut groups: Vec<PathGroup<'_>> = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let position = i + 1;
        let regex = is_regex(path);
        let existing = groups.iter_mut().find(|g| match g {
            PathGroup::Regex(_) => regex,
            PathGroup::Plain(members) => !regex && members.first().is_some_and(|(_, p)| p.len() == path.len()),
            PathGroup::Any => false,
        });
        match existing {
            Some(PathGroup::Regex(members) | PathGroup::Plain(members)) => members.push((position, path)),
            _ if regex => groups.push(PathGroup::Regex(vec![(position, path)])),
            _ => groups.push(PathGroup::Plain(vec![(position, path)])),
        }
    }
    groups
}

/// Whether a route path is a regex (Kong's `~` marker).
pub(crate) fn is_regex(path: &str) -> bool {
    path.starts_with(proxy_config::patterns::REGEX_PATH_PREFIX)
}

/// Kong's header-count cap when sorting.
const MAX_HEADER_COUNT: usize = 255;

/// The priority of one internal route (a route restricted to one path group).
pub(crate) fn priority(route: &Route, group: &PathGroup<'_>) -> Priority {
    let present = [
        !route.methods.is_empty(),
        !route.hosts.is_empty(),
        !route.headers.is_empty(),
        !route.snis.is_empty(),
        !route.paths.is_empty(),
    ];
    let weight = present.iter().filter(|p| **p).count() as u8;
    let plain_hosts_only = !route.hosts.is_empty() && route.hosts.iter().all(|h| !h.contains('*'));
    let header_count = route.headers.len().min(MAX_HEADER_COUNT) as u8;
    let (regex, prefix_len) = match group {
        PathGroup::Any => (false, 0),
        PathGroup::Regex(_) => (true, 0),
        PathGroup::Plain(members) => (false, members.first().map_or(0, |(_, p)| p.len())),
    };
    Priority {
        explicit: route.priority,
        weight,
        plain_hosts_only,
        header_count,
        regex,
        regex_priority: if regex { route.regex_priority } else { 0 },
        prefix_len,
    }
}
