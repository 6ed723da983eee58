use super::*;

fn parse(s: &str) -> ListenSpec {
    match s.parse::<ListenSpec>() {
        Ok(spec) => spec,
        Err(e) => panic!("'{s}' should parse: {e}"),
    }
}

fn one(s: &str) -> ListenEntry {
    let spec = parse(s);
    assert_eq!(spec.entries.len(), 1, "{s}");
    spec.entries.into_iter().next().unwrap()
}

fn parse_err(s: &str) -> (String, EntryError) {
    match ListenSpec::parse_env("KONG_PROXY_LISTEN", s) {
        Ok(spec) => panic!("'{s}' should be rejected, parsed as {spec:?}"),
        Err(e) => {
            let msg = e.to_string();
            let problem = e.entry_error().cloned().unwrap_or_else(|| panic!("not an entry error: {msg}"));
            (msg, problem)
        }
    }
}

#[test]
fn off_and_defaults() {
    assert!(parse("off").is_off());
    assert!(parse("  off  ").is_off());
    // Kong: a first entry `off` switches the listener off whatever follows.
    assert!(parse("off, 0.0.0.0:8000").is_off());
    assert_eq!(parse("off").to_string(), "off");

    let d = parse(kong_default_proxy_listen());
    assert_eq!(d.entries.len(), 2);
    let (plain, tls) = (&d.entries[0], &d.entries[1]);
    assert_eq!((plain.addr.clone(), plain.port), (ListenAddr::V4(Ipv4Addr::UNSPECIFIED), 8000));
    assert!(plain.reuseport && !plain.ssl && !plain.http2);
    assert_eq!(plain.backlog, Some(16384));
    assert_eq!(tls.port, 8443);
    assert!(tls.ssl && tls.http2 && tls.reuseport);
    assert_eq!(tls.backlog, Some(16384));

    let s = parse(kong_default_status_listen());
    assert_eq!(s.entries, vec![ListenEntry::new(ListenAddr::V4(Ipv4Addr::UNSPECIFIED), 8100)]);
}

#[test]
fn every_flag() {
    let e =
        one("0.0.0.0:8000 ssl http2 proxy_protocol deferred bind reuseport backlog=100 ipv6only=off so_keepalive=on");
    assert!(e.ssl && e.http2 && e.proxy_protocol && e.deferred && e.bind && e.reuseport);
    assert_eq!(e.backlog, Some(100));
    assert_eq!(e.ipv6only, Some(false));
    assert_eq!(e.so_keepalive, Some(KeepAlive::On));

    let bare = one("0.0.0.0:8000");
    assert_eq!(bare, ListenEntry::new(ListenAddr::V4(Ipv4Addr::UNSPECIFIED), 8000));

    // each flag alone sets exactly itself
    for (flag, check) in [
        ("ssl", (|e: &ListenEntry| e.ssl) as fn(&ListenEntry) -> bool),
        ("http2", |e| e.http2),
        ("proxy_protocol", |e| e.proxy_protocol),
        ("deferred", |e| e.deferred),
        ("bind", |e| e.bind),
        ("reuseport", |e| e.reuseport),
    ] {
        let e = one(&format!("1.2.3.4:80 {flag}"));
        assert!(check(&e), "{flag}");
        let mut expected = e.clone();
        expected.ssl = false;
        expected.http2 = false;
        expected.proxy_protocol = false;
        expected.deferred = false;
        expected.bind = false;
        expected.reuseport = false;
        assert_eq!(expected, ListenEntry::new(ListenAddr::V4(Ipv4Addr::new(1, 2, 3, 4)), 80), "{flag}");
    }

    assert_eq!(one("[::]:80 ipv6only=on").ipv6only, Some(true));
    assert_eq!(one("[::]:80 so_keepalive=off").so_keepalive, Some(KeepAlive::Off));
}

#[test]
fn flags_in_any_order() {
    let a = one("127.0.0.1:8443 ssl http2 reuseport backlog=5");
    let b = one("127.0.0.1:8443   backlog=5 reuseport\thttp2 ssl");
    assert_eq!(a, b);
}

#[test]
fn keepalive_triples() {
    let secs = |s| Some(Duration::from_secs(s));
    let cases: [(&str, KeepAlive); 7] = [
        ("30m::10", KeepAlive::Params { idle: secs(1800), interval: None, count: Some(10) }),
        ("30:10:5", KeepAlive::Params { idle: secs(30), interval: secs(10), count: Some(5) }),
        (":10s:", KeepAlive::Params { idle: None, interval: secs(10), count: None }),
        ("::3", KeepAlive::Params { idle: None, interval: None, count: Some(3) }),
        ("1h30m:1m:", KeepAlive::Params { idle: secs(5400), interval: secs(60), count: None }),
        ("1m30::", KeepAlive::Params { idle: secs(90), interval: None, count: None }),
        ("2h:15s:127", KeepAlive::Params { idle: secs(7200), interval: secs(15), count: Some(127) }),
    ];
    for (text, expected) in cases {
        assert_eq!(one(&format!("0.0.0.0:1 so_keepalive={text}")).so_keepalive, Some(expected), "{text}");
    }
}

#[test]
fn addresses() {
    assert_eq!(one("001.002.003.004:80").addr, ListenAddr::V4(Ipv4Addr::new(1, 2, 3, 4)));
    assert_eq!(one("001.002.003.004:80").to_string(), "1.2.3.4:80");
    assert_eq!(one("255.255.255.255:1").addr, ListenAddr::V4(Ipv4Addr::BROADCAST));
    assert_eq!(one("[::]:8000").addr, ListenAddr::V6(Ipv6Addr::UNSPECIFIED));
    assert_eq!(one("[::1]:8000").addr, ListenAddr::V6(Ipv6Addr::LOCALHOST));
    let full = one("[0000:0000:0000:0000:0000:0000:0000:0001]:80");
    assert_eq!(full.addr, ListenAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(full.to_string(), "[::1]:80");
    assert_eq!(one("*:8000").addr, ListenAddr::Name("*".into()));
    assert_eq!(one("localhost:8000").addr, ListenAddr::Name("localhost".into()));
    assert_eq!(one("proxy.example.com:8000").addr, ListenAddr::Name("proxy.example.com".into()));
    assert_eq!(one("0.0.0.0:0").port, 0);
    assert_eq!(one("0.0.0.0:65535").port, 65535);
    assert_eq!(one("0.0.0.0:08000").port, 8000);
}

#[test]
fn whitespace_and_several_entries() {
    let spec = parse("  0.0.0.0:8000 http2 ,\t[::]:8443   ssl http2 ,  *:9000  ");
    assert_eq!(spec.entries.len(), 3);
    assert!(spec.entries[0].http2 && !spec.entries[0].ssl);
    assert_eq!(spec.entries[1].addr, ListenAddr::V6(Ipv6Addr::UNSPECIFIED));
    assert!(spec.entries[1].ssl);
    assert_eq!(spec.entries[2].addr_port(), "*:9000");
    assert_eq!(spec.to_string(), "0.0.0.0:8000 http2, [::]:8443 ssl http2, *:9000");
}

#[test]
fn errors_name_their_token() {
    let cases: &[(&str, &str)] = &[
        ("0.0.0.0:8000 bogus", "unknown flag 'bogus'"),
        ("0.0.0.0:8000 SSL", "unknown flag 'SSL'"),
        ("0.0.0.0:8000 http2=on", "unknown flag 'http2=on'"),
        ("0.0.0.0:8000-8010", "port ranges are not supported: '8000-8010'"),
        ("0.0.0.0", "missing port in '0.0.0.0'"),
        ("0.0.0.0:", "missing port in '0.0.0.0:'"),
        ("[::1]", "missing port in '[::1]'"),
        ("localhost", "missing port in 'localhost'"),
        ("8000", "missing port in '8000'"),
        ("0.0.0.0:http", "invalid port 'http'"),
        ("0.0.0.0:65536", "invalid port '65536'"),
        ("0.0.0.0:+80", "invalid port '+80'"),
        ("0.0.0.0:123456789012345678901234", "invalid port '123456789012345678901234'"),
        ("256.0.0.1:80", "invalid address '256.0.0.1'"),
        ("1.2.3:80", "invalid address '1.2.3'"),
        ("1.2.3.4.5:80", "invalid address '1.2.3.4.5'"),
        ("1..3.4:80", "invalid address '1..3.4'"),
        (":8000", "invalid address '': empty address"),
        ("[::g]:80", "invalid address '[::g]'"),
        ("[::1:80", "invalid address '[::1:80'"),
        ("exa$mple:80", "invalid address 'exa$mple'"),
        ("unix:/tmp/sock", "invalid port '/tmp/sock'"),
        ("::1:8000", "IPv6 address must be in brackets, like '[::]:8000': '::1:8000'"),
        ("0.0.0.0:1 ssl ssl", "duplicate flag 'ssl'"),
        ("0.0.0.0:1 reuseport http2 reuseport", "duplicate flag 'reuseport'"),
        ("0.0.0.0:1 backlog=1 backlog=2", "duplicate flag 'backlog=2'"),
        ("0.0.0.0:1 ipv6only=on ipv6only=on", "duplicate flag 'ipv6only=on'"),
        ("0.0.0.0:1 so_keepalive=on so_keepalive=off", "duplicate flag 'so_keepalive=off'"),
        ("0.0.0.0:1 backlog=", "invalid backlog 'backlog='"),
        ("0.0.0.0:1 backlog", "invalid backlog 'backlog'"),
        ("0.0.0.0:1 backlog=0", "invalid backlog 'backlog=0'"),
        ("0.0.0.0:1 backlog=-1", "invalid backlog 'backlog=-1'"),
        ("0.0.0.0:1 backlog=2147483648", "invalid backlog 'backlog=2147483648'"),
        ("0.0.0.0:1 backlog=1k", "invalid backlog 'backlog=1k'"),
        ("0.0.0.0:1 ipv6only=yes", "invalid ipv6only 'ipv6only=yes'"),
        ("0.0.0.0:1 ipv6only", "invalid ipv6only 'ipv6only'"),
        ("0.0.0.0:1 so_keepalive=maybe", "invalid so_keepalive 'so_keepalive=maybe'"),
        ("0.0.0.0:1 so_keepalive=::", "invalid so_keepalive 'so_keepalive=::'"),
        ("0.0.0.0:1 so_keepalive=1:2", "invalid so_keepalive 'so_keepalive=1:2'"),
        ("0.0.0.0:1 so_keepalive=1:2:3:4", "invalid so_keepalive 'so_keepalive=1:2:3:4'"),
        ("0.0.0.0:1 so_keepalive=10x::", "idle '10x' is not a time"),
        ("0.0.0.0:1 so_keepalive=30m1h::", "idle '30m1h' is not a time"),
        ("0.0.0.0:1 so_keepalive=10ms::", "idle '10ms' is not a time"),
        ("0.0.0.0:1 so_keepalive=0::", "idle '0' must be between 1s and 32767s"),
        ("0.0.0.0:1 so_keepalive=:1d:", "interval '1d' must be between 1s and 32767s"),
        ("0.0.0.0:1 so_keepalive=::128", "count '128' must be a number from 1 to 127"),
        ("0.0.0.0:1 so_keepalive=::0", "count '0' must be a number from 1 to 127"),
        ("0.0.0.0:8000, 0.0.0.0:8000 ssl", "duplicate listen address '0.0.0.0:8000'"),
        ("0.0.0.0:8000,", "empty entry"),
        ("0.0.0.0:8000,,0.0.0.0:8001", "empty entry"),
        ("0.0.0.0:8000, off", "missing port in 'off'"),
    ];
    for (input, needle) in cases {
        let (msg, _) = parse_err(input);
        assert!(msg.starts_with("invalid KONG_PROXY_LISTEN entry '"), "{input}: {msg}");
        assert!(msg.contains(needle), "{input}: expected '{needle}' in: {msg}");
    }
}

#[test]
fn error_message_shape_and_kinds() {
    let (msg, problem) = parse_err("0.0.0.0:8000 bogus");
    assert_eq!(msg, "invalid KONG_PROXY_LISTEN entry '0.0.0.0:8000 bogus': unknown flag 'bogus'");
    assert_eq!(problem, EntryError::UnknownFlag("bogus".into()));

    let (msg, problem) = parse_err("0.0.0.0:8000 http2, 0.0.0.0:8443 http2 ssl bogus");
    assert_eq!(msg, "invalid KONG_PROXY_LISTEN entry '0.0.0.0:8443 http2 ssl bogus': unknown flag 'bogus'");
    assert_eq!(problem, EntryError::UnknownFlag("bogus".into()));

    assert_eq!(parse_err("0.0.0.0:8000-8010").1, EntryError::PortRange("8000-8010".into()));

    for empty in ["", "   "] {
        let e = ListenSpec::parse_env("KONG_STATUS_LISTEN", empty).unwrap_err();
        assert!(matches!(e, ListenError::EmptyValue { .. }), "{e}");
        assert!(e.to_string().contains("KONG_STATUS_LISTEN"), "{e}");
    }
    // FromStr has no variable name to give
    let e = "1.2.3.4:1 nope".parse::<ListenSpec>().unwrap_err();
    assert_eq!(e.to_string(), "invalid listen entry '1.2.3.4:1 nope': unknown flag 'nope'");
}

#[test]
fn duplicate_port_zero_is_allowed() {
    assert_eq!(parse("127.0.0.1:0, 127.0.0.1:0 ssl").entries.len(), 2);
}

#[test]
fn display_round_trips() {
    let inputs = [
        "off",
        kong_default_proxy_listen(),
        kong_default_status_listen(),
        "0.0.0.0:8000 http2, 0.0.0.0:8443 http2 ssl",
        "001.002.003.004:80 ssl",
        "[::]:8000 ipv6only=off",
        "[fe80::1:2]:1 ipv6only=on reuseport",
        "[2001:db8::8a2e:370:7334]:443 ssl http2 proxy_protocol",
        "*:8000 deferred bind",
        "localhost:0 so_keepalive=on",
        "host-1.example.com.:65535 so_keepalive=off",
        "0.0.0.0:1 so_keepalive=30m::10",
        "0.0.0.0:1 so_keepalive=:10s:",
        "0.0.0.0:1 so_keepalive=::5",
        "0.0.0.0:1 so_keepalive=1h30m:90:",
        "0.0.0.0:1 so_keepalive=32767:1:127",
        "0.0.0.0:1 so_keepalive=9h::",
        "0.0.0.0:1 backlog=2147483647",
        "  1.1.1.1:1 reuseport ssl   , 2.2.2.2:2  backlog=7 http2 ",
        "0.0.0.0:1 so_keepalive=on proxy_protocol ipv6only=on backlog=3 reuseport bind deferred http2 ssl",
    ];
    for input in inputs {
        let parsed = parse(input);
        let shown = parsed.to_string();
        assert_eq!(parse(&shown), parsed, "{input} -> {shown}");
        // the canonical form is a fixed point
        assert_eq!(parse(&shown).to_string(), shown, "{input}");
    }

    // every combination of the six boolean flags and the valued ones, over three address kinds
    let bools = ["ssl", "http2", "proxy_protocol", "deferred", "bind", "reuseport"];
    let valued = ["", "backlog=9", "ipv6only=off", "so_keepalive=2m:3:4", "so_keepalive=off"];
    let addrs = ["9.8.7.6:1", "[::ffff:1.2.3.4]:2", "name.test:3"];
    let mut checked = 0;
    for mask in 0u32..(1 << bools.len()) {
        for (i, v) in valued.iter().enumerate() {
            let addr = addrs[(mask as usize + i) % addrs.len()];
            let mut flags: Vec<&str> =
                bools.iter().enumerate().filter(|(b, _)| mask & (1 << b) != 0).map(|(_, f)| *f).collect();
            if !v.is_empty() {
                flags.push(v);
            }
            flags.reverse(); // a non-canonical order
            let input = format!("{addr} {}", flags.join(" "));
            let parsed = parse(&input);
            assert_eq!(parse(&parsed.to_string()), parsed, "{input}");
            checked += 1;
        }
    }
    assert_eq!(checked, 64 * valued.len());
}

#[test]
fn nginx_seconds() {
    assert_eq!(parse_nginx_seconds("10"), Some(10));
    assert_eq!(parse_nginx_seconds("10s"), Some(10));
    assert_eq!(parse_nginx_seconds("30m"), Some(1800));
    assert_eq!(parse_nginx_seconds("1h1m1s"), Some(3661));
    assert_eq!(parse_nginx_seconds("1w"), Some(604_800));
    assert_eq!(parse_nginx_seconds("1y"), Some(31_536_000));
    assert_eq!(parse_nginx_seconds("1M"), Some(2_592_000));
    assert_eq!(parse_nginx_seconds(""), None);
    assert_eq!(parse_nginx_seconds("s"), None);
    assert_eq!(parse_nginx_seconds("1s1"), None);
    assert_eq!(parse_nginx_seconds("1m1h"), None);
    assert_eq!(parse_nginx_seconds("1h1h"), None);
    assert_eq!(parse_nginx_seconds("99999999999999999999"), None);
}

fn bind_one(s: &str) -> TcpListener {
    let e = one(s);
    match e.bind() {
        Ok(l) => l,
        Err(err) => panic!("bind {s}: {err}"),
    }
}

#[test]
fn bind_reuseport_twice_on_one_port() {
    let first = bind_one("127.0.0.1:0 reuseport backlog=16384");
    let port = first.local_addr().unwrap().port();
    assert_ne!(port, 0);
    let second = bind_one(&format!("127.0.0.1:{port} reuseport"));
    assert_eq!(second.local_addr().unwrap().port(), port);

    // without reuseport the same port is taken
    let e = one(&format!("127.0.0.1:{port}")).bind().unwrap_err();
    assert!(matches!(&e, ListenError::Socket { step: "bind", .. }), "{e}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[test]
fn bound_socket_has_options_and_is_nonblocking() {
    let l = bind_one("127.0.0.1:0 so_keepalive=30m:10s:5 deferred bind proxy_protocol ssl http2");
    let sock = socket2::SockRef::from(&l);
    assert!(sock.keepalive().unwrap());
    assert_eq!(sock.tcp_keepalive_time().unwrap(), Duration::from_secs(1800));
    assert_eq!(sock.tcp_keepalive_interval().unwrap(), Duration::from_secs(10));
    assert_eq!(sock.tcp_keepalive_retries().unwrap(), 5);
    assert!(sock.reuse_address().unwrap());
    assert!(!sock.reuse_port().unwrap());
    // non-blocking: accept with nobody connecting returns WouldBlock at once
    assert_eq!(l.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);

    let off = bind_one("127.0.0.1:0 so_keepalive=off reuseport");
    let sock = socket2::SockRef::from(&off);
    assert!(!sock.keepalive().unwrap());
    assert!(sock.reuse_port().unwrap());
    let on = bind_one("127.0.0.1:0 so_keepalive=on");
    assert!(socket2::SockRef::from(&on).keepalive().unwrap());
}

#[tokio::test]
async fn bound_socket_serves_tokio() {
    let std_listener = bind_one("127.0.0.1:0");
    let addr = std_listener.local_addr().unwrap();
    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
    let (accepted, connected) = tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
    let (_, peer) = accepted.unwrap();
    assert_eq!(peer, connected.unwrap().local_addr().unwrap());
}

#[test]
fn bind_names() {
    let star = one("*:0");
    assert_eq!(star.socket_addrs().unwrap(), vec![SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))]);
    let localhost = one("localhost:0");
    let addrs = localhost.socket_addrs().unwrap();
    assert!(!addrs.is_empty());
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    let l = localhost.bind().unwrap();
    assert!(l.local_addr().unwrap().ip().is_loopback());
    if addrs.iter().all(SocketAddr::is_ipv4) || has_ipv6_loopback() {
        let all = localhost.bind_all().unwrap();
        assert_eq!(all.len(), addrs.len());
    }
}

fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[test]
fn bind_ipv6_loopback() {
    if !has_ipv6_loopback() {
        println!("SKIPPED bind_ipv6_loopback: this machine has no IPv6 loopback (binding [::1]:0 failed)");
        return;
    }
    let l = bind_one("[::1]:0");
    let addr = l.local_addr().unwrap();
    assert_eq!(addr.ip(), std::net::IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert!(socket2::SockRef::from(&l).only_v6().unwrap());
    // Linux forces IPV6_V6ONLY on sockets bound to a specific IPv6 address, so the option is observable
    // on loopback only through a v4-mapped address: refused with ipv6only on (nginx's default) ...
    let e = one("[::ffff:127.0.0.1]:0").bind().unwrap_err();
    assert!(matches!(&e, ListenError::Socket { step: "bind", .. }), "{e}");
    let e = one("[::ffff:127.0.0.1]:0 ipv6only=on").bind().unwrap_err();
    assert!(matches!(&e, ListenError::Socket { step: "bind", .. }), "{e}");
    // ... and accepted with ipv6only=off
    let l = bind_one("[::ffff:127.0.0.1]:0 ipv6only=off reuseport");
    assert!(!socket2::SockRef::from(&l).only_v6().unwrap());
    let port = l.local_addr().unwrap().port();
    std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
}

#[test]
fn ipv6only_on_ipv4_is_ignored() {
    let l = bind_one("127.0.0.1:0 ipv6only=on");
    assert!(l.local_addr().unwrap().is_ipv4());
}
