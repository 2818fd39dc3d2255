//! Web-ACL benchmarks: a 100-rule ACL over a JSON sign-in, and IP-set lookups against a linear scan.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method, Uri};

use authward::config::{EmbeddedSources, Mode, load_from};
use authward::store::memory::{MemoryLimits, MemoryStore};
use authward::waf::Context;
use authward::waf::field::RequestView;
use authward::waf::ipset::IpSet;

/// 100 rules of every common kind, none of which matches the benign sign-in (so all 100 are evaluated).
fn acl_yaml() -> String {
    let mut y = String::from(
        "upstream: {url: 'http://127.0.0.1:1'}\nprofiles:\n  - name: login\n    operation: sign_in\n    match: {methods: [POST], path: {exact: /api/login}}\n    fields: {username: {json: /username}, password: {json: /password}}\nweb_acl:\n  rules:\n",
    );
    for i in 0..100 {
        let stmt = match i % 10 {
            0 => "{sqli: {field: {json_body: {}}, transforms: [url_decode, html_entity_decode]}}".to_string(),
            1 => "{xss: {field: {json_body: {}}, transforms: [url_decode, html_entity_decode]}}".to_string(),
            2 => format!(
                "{{byte_match: {{field: uri_path, position: contains, values: [/wp-admin{i}, /.env{i}, /phpmyadmin{i}], transforms: [lowercase]}}}}"
            ),
            3 => format!(
                "{{regex: {{field: {{single_header: user-agent}}, pattern: '(?i)(sqlmap|nikto|masscan){i}', transforms: [lowercase]}}}}"
            ),
            4 => format!(
                "{{regex_set: {{field: all_query_args, patterns: ['union{i}', 'select{i}', 'sleep\\({i}'], transforms: [url_decode, lowercase]}}}}"
            ),
            5 => format!("{{ip_set: {{cidrs: [10.{i}.0.0/16, 192.0.2.{i}/32, '2001:db8:{i}::/48']}}}}"),
            6 => format!(
                "{{size_constraint: {{field: {{single_header: cookie}}, comparison: gt, size: {}}}}}",
                8192 + i
            ),
            7 => format!("{{label_match: {{namespace: 'authward:profile:nope{i}'}}}}"),
            8 => format!(
                "{{and: [{{byte_match: {{field: method, position: exactly, value: PUT}}}}, {{byte_match: {{field: {{headers: {{part: keys}}}}, position: exactly, value: x-evil-{i}}}}}]}}"
            ),
            _ => format!(
                "{{byte_match: {{field: {{json_body: {{pointer: /username}}}}, position: exactly, values: [root{i}, administrator{i}], transforms: [lowercase, trim]}}}}"
            ),
        };
        let _ = writeln!(
            y,
            "    - {{name: r{i}, priority: {i}, action: block, statement: {stmt}}}"
        );
    }
    y
}

fn bench_acl(c: &mut Criterion) {
    let mut sources = EmbeddedSources::default();
    sources
        .files
        .insert(PathBuf::from("acl.yaml"), acl_yaml().into_bytes());
    let config = load_from(std::path::Path::new("acl.yaml"), Mode::Check, &sources).expect("bench config");
    assert_eq!(config.web_acl.rules().len(), 100);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = MemoryStore::new(MemoryLimits::default(), authward::clock::system());
    let method = Method::POST;
    let uri: Uri = "/api/login".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert(
        "user-agent",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1"
            .parse()
            .unwrap(),
    );
    headers.insert("accept", "application/json".parse().unwrap());
    headers.insert("cookie", "session=abc; theme=dark".parse().unwrap());
    let body =
        br#"{"username":"alice@example.com","password":"correct horse battery staple","remember":true}"#;
    let path = authward::context::normalize_path(uri.path());
    let matched = config
        .profiles
        .candidates(&method, &path, &headers)
        .and_then(|c| c.resolve(None, &headers, body).ok().flatten());
    let client_ip: IpAddr = "203.0.113.50".parse().unwrap();
    c.bench_function("waf/100_rules_json_sign_in", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let view = RequestView {
                        method: &method,
                        uri: &uri,
                        headers: &headers,
                        body: Some(body),
                        body_oversize: false,
                        body_len: None,
                        profile: matched.as_ref().map(|m| &m.fields),
                        json: matched.as_ref().and_then(|m| m.json.as_ref()).map(|j| j.value()),
                        ja4: None,
                    };
                    let cx = Context {
                        client_ip,
                        geo: &config.geo,
                        store: &store,
                        explain: false,
                    };
                    let mut labels = Vec::new();
                    let v = config.web_acl.evaluate(&view, &cx, &mut labels).await;
                    assert!(v.terminating.is_none());
                    black_box(v);
                }
                start.elapsed()
            })
        })
    });
}

fn bench_ipset(c: &mut Criterion) {
    // 100 000 CIDRs of mixed lengths, IPv4 and IPv6.
    let mut nets = Vec::with_capacity(100_000);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..100_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let net: ipnet::IpNet = if i % 4 == 0 {
            format!("2001:{:x}:{:x}::/48", (x >> 16) as u16, x as u16)
                .parse()
                .unwrap()
        } else {
            format!("{}/{}", std::net::Ipv4Addr::from(x as u32), 16 + (x >> 40) % 17)
                .parse::<ipnet::IpNet>()
                .unwrap()
                .trunc()
        };
        nets.push(net);
    }
    let set = IpSet::new(nets.clone());
    let probes: Vec<IpAddr> = (0..1024u32)
        .map(|i| IpAddr::from(std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761))))
        .collect();
    let mut i = 0;
    c.bench_function("waf/ip_set_100k_cidrs_lookup", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            set.contains(black_box(probes[i]))
        })
    });
    let mut j = 0;
    c.bench_function("waf/ip_set_100k_cidrs_linear_scan_baseline", |b| {
        b.iter(|| {
            j = (j + 1) % probes.len();
            nets.iter().any(|n| n.contains(&black_box(probes[j])))
        })
    });
}

criterion_group!(benches, bench_acl, bench_ipset);
criterion_main!(benches);
